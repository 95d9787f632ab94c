"""Statistical properties of the synthetic economy on 20,000 entities.

Outcome rates and oracle AUC in their bands, outcomes calibrated to the true
probabilities, and a model trained on all sources pooled close to the oracle, while no
single source is enough. Everything is deterministic for the seed, so these tests do not
flake; they guard the generator's design against changes.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from sample_protocol.catalogue import get_source
from sample_protocol.synthetic import INDEX_IDS, Economy, generate_economy, roc_auc

N = 20_000
SEED = 2026

RATE_BANDS = {
    "conscientiousness": (0.02, 0.06),
    "financial_stability": (0.05, 0.10),
    "payment_discipline": (0.10, 0.20),
    "business_reputation": (0.15, 0.32),
}


@pytest.fixture(scope="module")
def economy() -> Economy:
    return generate_economy(N, SEED)


@pytest.fixture(scope="module")
def split() -> np.ndarray:
    return np.random.default_rng(0).random(N) < 0.3


def features(economy: Economy, codes: tuple[str, ...] | None = None) -> np.ndarray:
    """One row per entity (truth order): every model field of the sources, as numbers.

    Categories become their index in the contract's list, dates days since 1970, a missing
    row or value NaN, plus one 'present' column per source. Free-text fields are left out.
    """
    ids = economy.truth_for("conscientiousness")["bin"]
    columns: list[np.ndarray] = []
    for code, table in economy.sources.items():
        if codes is not None and code not in codes:
            continue
        pos = np.array(pc.fill_null(pc.index_in(ids, value_set=table["bin"]), -1))
        present = pos >= 0
        columns.append(present.astype(np.float64))
        for f in get_source(code).model_fields():
            col = table[f.name]
            if f.dtype == "string":
                continue
            if f.dtype == "category":
                col = pc.index_in(col, value_set=pa.array(f.categories))
            elif f.dtype == "date32":
                col = pc.cast(col, pa.int32())
            values = np.array(pc.cast(col, pa.float64()).fill_null(np.nan))
            out = np.full(len(ids), np.nan)
            out[present] = values[pos[present]]
            columns.append(out)
    return np.column_stack(columns).astype(np.float32)


def holdout_auc(x: np.ndarray, y: np.ndarray, test: np.ndarray) -> float:
    """AUC on the ``test`` rows of a gradient-boosting model fitted on the others.

    One thread: on a busy 2-core machine OpenMP's spinning threads can make a 3 s fit
    take half a minute.
    """
    with threadpool_limits(1):
        return _holdout_auc(x, y, test)


def _holdout_auc(x: np.ndarray, y: np.ndarray, test: np.ndarray) -> float:
    model = HistGradientBoostingClassifier(
        max_iter=300,
        learning_rate=0.05,
        max_leaf_nodes=7,
        min_samples_leaf=60,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=0,
    ).fit(x[~test], y[~test])
    return roc_auc(y[test], model.predict_proba(x[test])[:, 1])


def test_outcome_rates_and_oracle_auc_are_in_their_bands(economy: Economy) -> None:
    summary = economy.summary
    for index, (low, high) in RATE_BANDS.items():
        assert low <= summary.outcome_rates[index] <= high, index
        auc = summary.oracle_auc[index]
        assert auc is not None and 0.80 <= auc <= 0.95, index


def test_outcomes_are_calibrated_to_the_true_probabilities(economy: Economy) -> None:
    for index in INDEX_IDS:
        part = economy.truth_for(index)
        p = np.array(part["true_probability"])
        y = np.array(part["outcome"], dtype=np.float64)
        se = np.sqrt(np.sum(p * (1 - p))) / N
        assert abs(y.mean() - p.mean()) < 4 * se, index
        order = np.argsort(p)
        for chunk in np.array_split(order, 10):
            pb, yb = p[chunk], y[chunk]
            se_b = np.sqrt(np.sum(pb * (1 - pb))) / len(chunk)
            assert abs(yb.mean() - pb.mean()) < 4 * se_b + 0.005, (index, pb.mean())


@pytest.fixture(scope="module")
def pooled(economy: Economy, split: np.ndarray) -> dict[str, tuple[float, float]]:
    """Per index: (oracle AUC, pooled model AUC) on the held-out rows."""
    x = features(economy)
    out = {}
    for index in INDEX_IDS:
        part = economy.truth_for(index)
        y = np.array(part["outcome"])
        oracle = roc_auc(y[split], np.array(part["true_probability"])[split])
        out[index] = (oracle, holdout_auc(x, y, split))
    return out


def test_pooled_model_comes_within_a_few_points_of_the_oracle(
    pooled: dict[str, tuple[float, float]],
) -> None:
    for index, (oracle, model) in pooled.items():
        assert model < oracle + 0.01, index  # nobody beats the truth (beyond noise)
        assert model > 0.78, index
    gaps = {index: oracle - model for index, (oracle, model) in pooled.items()}
    assert max(gaps.values()) < 0.05, gaps


def test_each_source_informs_but_none_is_enough(
    economy: Economy, split: np.ndarray, pooled: dict[str, tuple[float, float]]
) -> None:
    index = "business_reputation"
    y = np.array(economy.truth_for(index)["outcome"])
    _, pooled_auc = pooled[index]
    for code in ("TAX", "UTILITIES", "LEGAL_STATS"):
        alone = holdout_auc(features(economy, (code,)), y, split)
        assert 0.6 < alone < pooled_auc - 0.005, code
