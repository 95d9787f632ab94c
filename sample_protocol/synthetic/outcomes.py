"""True probabilities and outcomes of the four indexes, and the AUC that scores them.

For each entity the generator knows the probability of each index's outcome over the
12-month horizon (a logistic function of the latent drivers and of a few traits), and
draws the outcome from it. The business-reputation outcome is "any of the other three",
whose probability is ``1 - (1 - p1)(1 - p2)(1 - p3)`` because the three are drawn
independently given the drivers. The AUC of the true probability against the outcome
(the **oracle AUC**) is the ceiling that no model can beat on average.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ._common import F64, Bool, sigmoid, stream
from .population import Population

__all__ = ["INDEX_IDS", "Outcomes", "draw_outcomes", "roc_auc", "truth_table"]

INDEX_IDS: tuple[str, ...] = (
    "conscientiousness",
    "financial_stability",
    "payment_discipline",
    "business_reputation",
)


@dataclass(frozen=True, slots=True)
class Outcomes:
    """Per index: the true probability and the drawn outcome of every entity."""

    probability: dict[str, F64]
    outcome: dict[str, Bool]

    def rates(self) -> dict[str, float]:
        return {k: float(v.mean()) for k, v in self.outcome.items()}

    def oracle_auc(self) -> dict[str, float]:
        return {k: roc_auc(self.outcome[k], self.probability[k]) for k in INDEX_IDS}


def true_probabilities(pop: Population) -> dict[str, F64]:
    """The probability of each index's outcome within the horizon."""
    young = pop.young.astype(np.float64)
    le = pop.is_le.astype(np.float64)
    dormant = (pop.income <= 0).astype(np.float64)
    util = np.minimum(pop.util_m12, 6).astype(np.float64)
    recovery = np.minimum(pop.court_recovery, 3).astype(np.float64)
    p_cons = sigmoid(
        -4.7
        + 1.1 * pop.sham
        + 1.2 * pop.pseudo_listed
        + 1.1 * pop.mass_address
        + 1.0 * pop.nominee_head
        + 0.4 * pop.dereg
    )
    p_fin = sigmoid(
        -4.2
        + 0.85 * pop.fragile
        + 0.3 * pop.sham
        + 0.8 * pop.non_filing
        + 0.8 * dormant
        + 0.4 * pop.has_debt
        + 0.55 * recovery
        + 0.12 * util
        + 0.3 * young
        - 0.1 * pop.scale
    )
    p_pay = sigmoid(
        -2.95
        + 0.95 * pop.sloppy
        + 0.4 * pop.fragile
        + 0.7 * pop.has_debt
        + 0.35 * util
        + 0.4 * recovery
        + 0.35 * pop.non_filing
        + 0.15 * le
    )
    p_rep = 1.0 - (1.0 - p_cons) * (1.0 - p_fin) * (1.0 - p_pay)
    return {
        "conscientiousness": p_cons,
        "financial_stability": p_fin,
        "payment_discipline": p_pay,
        "business_reputation": p_rep,
    }


def draw_outcomes(pop: Population) -> Outcomes:
    """True probabilities and outcomes (from the economy's own 'outcomes' stream)."""
    rng = stream(pop.seed, "outcomes")
    p = true_probabilities(pop)
    y: dict[str, Bool] = {}
    for index in INDEX_IDS[:3]:
        y[index] = rng.random(pop.n) < p[index]
    y["business_reputation"] = (
        y["conscientiousness"] | y["financial_stability"] | y["payment_discipline"]
    )
    return Outcomes(probability=p, outcome=y)


def truth_table(ids: pa.Array, outcomes: Outcomes) -> pa.Table:
    """Long table: ``bin``, ``index``, ``true_probability``, ``outcome`` (4 rows an entity)."""
    n = len(ids)
    index_col = pa.DictionaryArray.from_arrays(
        pa.array(np.repeat(np.arange(len(INDEX_IDS), dtype=np.int32), n)),
        pa.array(list(INDEX_IDS)),
    ).cast(pa.string())
    return pa.table(
        {
            "bin": pa.concat_arrays([ids] * len(INDEX_IDS)),
            "index": index_col,
            "true_probability": np.concatenate([outcomes.probability[i] for i in INDEX_IDS]),
            "outcome": np.concatenate([outcomes.outcome[i] for i in INDEX_IDS]),
        }
    )


def roc_auc(y_true: Bool | np.ndarray, score: F64 | np.ndarray) -> float:
    """Area under the ROC curve (ties count one half); NaN without both classes.

    >>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    # average 1-based rank of each distinct value
    ends = np.cumsum(counts)
    avg_rank = ends - (counts - 1) / 2.0
    rank_sum = float(avg_rank[inverse][y].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
