"""The pooled baseline and the price of privacy.

The pooled model sees every raw field of every source at once, which the law forbids
(a body's secret data may not leave it); it exists only to measure what the federated
design costs. :func:`price_of_privacy` splits the entities (stratified, 30% held out),
trains the federated models and the pooled one on the rest, and reports per index the
held-out AUC of each, with the oracle's (the true probability) when it is known.

Example::

    table, truth = economy_training_table(generate_economy(10_000, seed=1))
    price_of_privacy(table, truth)["financial_stability"].pooled_auc
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import train_test_split

from sample_protocol.catalogue import Catalogue
from sample_protocol.features import FeatureSpec
from sample_protocol.serde import Record

from ..evaluate import auc
from .combiner import train_federated
from .features import fit_features, outcome
from .selection import HGB_PARAMS, threads

__all__ = ["PooledModel", "PrivacyPrice", "price_of_privacy", "train_pooled"]

# The pooled baseline is the same gradient boosting as a preliminary model, allowed a
# few more iterations since it sees every field at once.
_POOLED_PARAMS: dict[str, Any] = {**HGB_PARAMS, "max_iter": 200}


@dataclass(frozen=True, slots=True)
class PooledModel:
    """One gradient-boosting model per index over all sources' fields (baseline only)."""

    spec: FeatureSpec
    models: dict[str, Any]

    def predict_proba(self, table: pa.Table) -> dict[str, npt.NDArray[np.float64]]:
        X = self.spec.transform(table, allow_missing=True)
        with threads(1):
            return {
                i: np.asarray(m.predict_proba(X)[:, 1], np.float64) for i, m in self.models.items()
            }


def train_pooled(
    table: pa.Table,
    catalogue: Catalogue | None = None,
    *,
    indexes: Iterable[str] | None = None,
    seed: int = 0,
    n_threads: int = 1,
) -> PooledModel:
    """Fit the pooled baseline of every index on all sources' model fields."""
    cat = catalogue or Catalogue.default()
    spec = fit_features(table, cat.sources)
    X = spec.transform(table)
    models: dict[str, Any] = {}
    with threads(n_threads):
        for index in tuple(indexes) if indexes is not None else cat.index_ids():
            model = HistGradientBoostingClassifier(**_POOLED_PARAMS, random_state=seed)
            models[index] = model.fit(X, outcome(table, index))
    return PooledModel(spec=spec, models=models)


@dataclass(frozen=True, slots=True)
class PrivacyPrice(Record):
    """Held-out AUC of the federated, pooled and oracle scores of one index."""

    index: str
    federated_auc: float
    pooled_auc: float
    oracle_auc: float | None
    n_train: int
    n_test: int


def price_of_privacy(
    table: pa.Table,
    truth_probabilities: Mapping[str, Any] | None = None,
    *,
    catalogue: Catalogue | None = None,
    test_size: float = 0.3,
    seed: int = 0,
    n_threads: int = 1,
) -> dict[str, PrivacyPrice]:
    """Per index: federated vs pooled vs oracle AUC on held-out entities.

    ``truth_probabilities`` maps index → true probability per row of ``table`` (e.g. from
    :func:`~nce_model_lab.training.features.economy_training_table`); without it the
    oracle AUC is ``None``.
    """
    cat = catalogue or Catalogue.default()
    indexes = cat.index_ids()
    rows = np.arange(table.num_rows)
    strata = outcome(table, indexes[-1])
    train_rows, test_rows = train_test_split(
        rows, test_size=test_size, stratify=strata, random_state=seed
    )
    train_rows.sort()
    test_rows.sort()
    train, test = table.take(pa.array(train_rows)), table.take(pa.array(test_rows))
    federated = train_federated(train, cat, seed=seed, n_threads=n_threads)
    pooled = train_pooled(train, cat, seed=seed, n_threads=n_threads)
    with threads(n_threads):
        fed_p = federated.predict_proba(test)
        pool_p = pooled.predict_proba(test)
    out: dict[str, PrivacyPrice] = {}
    for index in indexes:
        y = outcome(test, index)
        oracle = None
        if truth_probabilities is not None and index in truth_probabilities:
            truth = np.asarray(truth_probabilities[index], dtype=np.float64)[test_rows]
            oracle = round(auc(y, truth), 6)
        out[index] = PrivacyPrice(
            index=index,
            federated_auc=round(auc(y, fed_p[index]), 6),
            pooled_auc=round(auc(y, pool_p[index]), 6),
            oracle_auc=oracle,
            n_train=int(train_rows.shape[0]),
            n_test=int(test_rows.shape[0]),
        )
    return out
