"""``registry_combiner.scoring``: one index for a block, with a transparent stand-in model.

The stand-in is additive in its inputs (NaN counts as 0), so every contribution is known:
leaving a source out removes exactly its inputs' share of the log-odds.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from registry_combiner.scoring import MAX_REASONS, Block, IndexModel, score_index
from registry_combiner.store import FLAG_OVERRIDDEN, FLAG_PARTIAL
from sample_protocol.combiner_inputs import CombinerLayout
from sample_protocol.features import FeatureColumn, FeatureKind, FeatureSpec
from sample_protocol.records_release import CategoryCutoffs
from sample_protocol.scores import ScoreScale

SPEC = FeatureSpec(
    columns=(
        FeatureColumn("COURT", "cases", FeatureKind.NUMERIC),
        FeatureColumn("UTILITIES", "months", FeatureKind.NUMERIC),
    )
)
LAYOUT = CombinerLayout(
    index="financial_stability",
    preliminary_sources=("TAX", "LEGAL_STATS"),
    direct_spec=SPEC,
    direct_sources=("COURT", "UTILITIES"),
)
BITS = {"TAX": 0, "LEGAL_STATS": 1, "COURT": 2, "UTILITIES": 3}


class Additive:
    """p = sigmoid(-3 + sum(w * x)) over the inputs, NaN as 0 (missing flags weigh 0)."""

    def __init__(self) -> None:
        self.w = np.zeros(LAYOUT.n_inputs, dtype=np.float64)
        self.w[[0, 1]] = 1.0  # the two log-odds
        self.w[4] = 0.5  # COURT cases
        self.w[5] = 1.0  # UTILITIES months

    def run(self, X: np.ndarray) -> np.ndarray:
        z = -3.0 + np.nan_to_num(X.astype(np.float64)) @ self.w
        return 1.0 / (1.0 + np.exp(-z))


def _model(override_codes: tuple[int, ...] = (11, 0, 0)) -> IndexModel:
    return IndexModel(
        index="financial_stability",
        layout=LAYOUT,
        model=Additive(),  # type: ignore[arg-type]
        cutoffs=CategoryCutoffs("financial_stability", 0.2, 0.5),
        scale=ScoreScale(50, 0.1, 8),
        group_codes=(1, 2, 3, 4),
        override_codes=override_codes,
    )


def _block() -> Block:
    logit = lambda z: 1.0 / (1.0 + np.exp(-np.asarray(z)))  # noqa: E731
    return Block(
        ids=np.arange(1, 5, dtype=np.int64),
        preliminary={
            ("TAX", "financial_stability"): logit([3.0, -1.0, 0.5, np.nan]),
            ("LEGAL_STATS", "financial_stability"): logit([1.0, -2.0, np.nan, np.nan]),
        },
        direct={
            "COURT": pa.table({"cases": pa.array([4, None, 0, None], pa.int64())}),
            "UTILITIES": pa.table({"months": pa.array([0, None, 6, None], pa.int64())}),
        },
        lists=np.array([0, 1, 0, 0], dtype=np.int8),
    )


def test_scores_coverage_and_reasons_of_a_block():
    s = score_index(_model(), _block(), bits=BITS, feeds_missing=frozenset(), reasons="all")
    assert s.probability[0] > 0.5 and s.category[0] == 2
    # entity 1: TAX +3, COURT +2, LEGAL_STATS +1 raise the risk; UTILITIES is 0: no reason
    assert s.reasons[0].tolist() == [1, 3, 2, 0]
    assert s.present[0] == 0b1111 and s.missing[0] == 0 and s.flags[0] == 0
    # entity 2: on the override list: high whatever the model says, the list first
    assert s.category[1] == 2 and s.flags[1] & FLAG_OVERRIDDEN and s.overrides[1] == 1
    assert s.value[1] >= ScoreScale(50, 0.1, 8).value(0.5)
    assert s.reasons[1].tolist() == [11, 0, 0, 0]  # its sources only lowered the risk
    # entity 3: LEGAL_STATS sent nothing for it: partial, and its missing bit is set
    assert s.flags[2] & FLAG_PARTIAL and s.missing[2] == 0b0010
    assert s.reasons[2].tolist()[:2] == [4, 1]  # UTILITIES +6, TAX +0.5
    # entity 4: nobody delivered anything: still scored, partial, no reason
    assert s.flags[3] & FLAG_PARTIAL and s.present[3] == 0 and not s.reasons[3].any()
    assert s.reasons.shape == (4, MAX_REASONS) and s.value.min() >= 1


def test_reason_modes_and_a_feed_never_ingested():
    block = _block()
    none = score_index(_model(), block, bits=BITS, feeds_missing=frozenset(), reasons="none")
    assert none.reasons[:, 0].tolist() == [0, 11, 0, 0]  # only the override's own reason
    elevated = score_index(
        _model(), block, bits=BITS, feeds_missing=frozenset({"UTILITIES"}), reasons="elevated"
    )
    low = elevated.category == 0
    assert low.any() and not elevated.reasons[low].any()
    assert (elevated.flags & FLAG_PARTIAL).all()  # a feed the combiner expects never came
    free = score_index(
        _model((0, 0, 0)), block, bits=BITS, feeds_missing=frozenset(), reasons="all"
    )
    assert not (free.flags & FLAG_OVERRIDDEN).any()  # the list does not apply to this index
