"""Quality of a model's probabilities on held-out entities.

Per model and per index (issue 6): AUC, Gini, KS, Brier score, a calibration table and
the expected calibration error, the share and observed outcome rate of each category,
and the PSI between the training (reference) and validation scores.
:func:`evaluate` computes all of them into one :class:`Evaluation` record; each measure
is also a function of its own.

Definitions used here:

* **AUC**: probability that a random positive scores above a random negative, ties
  counting one half (Mann-Whitney; equals ``sklearn.metrics.roc_auc_score``).
  **Gini** ``= 2 * AUC - 1``.
* **KS**: ``max |TPR - FPR|`` over all thresholds (the largest distance between the
  score distributions of positives and negatives).
* **Brier**: mean of ``(p - y)²``.
* **Calibration table / ECE**: bins of the probabilities (``strategy="quantile"``:
  equal-frequency bins from the quantiles of ``p``, ties kept in one bin so bins may be
  fewer or unequal; ``"uniform"``: equal-width bins on [0, 1], empty bins left out).
  ECE is the mean over bins of ``|observed rate - mean predicted|`` weighted by bin size.
* **ROC curve**: ``(FPR, TPR)`` at every distinct threshold on ``p`` (flagging
  ``p >= threshold``), from ``(0, 0)`` to ``(1, 1)``; :func:`roc_curve` keeps at most
  ``max_points`` of them, evenly spaced along the curve, first and last included.
* **AUC standard error**: Hanley and McNeil (1982), from the AUC and the numbers of
  positives and negatives (:func:`auc_standard_error`); ``AUC ± 1.96 SE`` is the usual
  95% interval.
* **ECE noise floor**: the ECE that a *perfectly* calibrated model would still show on
  the same bins, from sampling alone: per bin, the exact mean of ``|k / n_b - p_b|`` for
  ``k ~ Binomial(n_b, p_b)`` with ``p_b`` the bin's mean probability, weighted by bin size
  (:func:`ece_noise_floor`). An ECE near it says little; one well above it is a real
  calibration error.
* **Value histogram**: how many negatives and positives have each range of published
  values 1-99 (:func:`value_histogram`, ranges of ``width`` values).
* **PSI** (population stability index): bins from the reference's deciles;
  ``sum((c - r) * ln(c / r))`` over the bins' shares, an empty bin's share floored at
  :data:`PSI_EPSILON`. Read it as: below :data:`PSI_WATCH` (0.10) stable, 0.10-0.25
  watch, at or above :data:`PSI_ACT` (0.25) act (retrain or investigate); see
  :func:`psi_status`.

Bad input (length mismatch, a target that is not 0/1, NaN or a probability outside
[0, 1], a single class where both are needed, nothing at all) raises
:class:`~nce_model_lab.errors.LabError` with a stable ``code`` and a message that says
which argument, what was expected and what was found.

Example::

    >>> import numpy as np
    >>> y = np.array([0, 0, 1, 1]); p = np.array([0.1, 0.4, 0.35, 0.8])
    >>> auc(y, p), ks_statistic(y, p), round(brier(y, p), 4)
    (0.75, 0.5, 0.1581)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sample_protocol.records import CategoryCutoffs
from sample_protocol.scores import (
    CATEGORIES,
    ScoreScale,
    categorise,
    to_values,
)
from sample_protocol.serde import Record

from ._metric_inputs import Array, inputs, probabilities, ranks
from .errors import LabError

__all__ = [
    "PSI_ACT",
    "PSI_EPSILON",
    "PSI_WATCH",
    "CalibrationBin",
    "CategoryRate",
    "Evaluation",
    "RocPoint",
    "ValueBin",
    "auc",
    "auc_standard_error",
    "brier",
    "calibration_table",
    "category_table",
    "ece_noise_floor",
    "evaluate",
    "expected_calibration_error",
    "ks_statistic",
    "psi",
    "psi_status",
    "roc_curve",
    "value_histogram",
]

#: PSI at or above this: watch the index (the population has moved).
PSI_WATCH = 0.10
#: PSI at or above this: act (retrain or investigate the data).
PSI_ACT = 0.25
#: Share given to an empty PSI bin, so that the logarithm stays finite.
PSI_EPSILON = 1e-4

_STRATEGIES = ("quantile", "uniform")
#: Most points :func:`evaluate` keeps of a ROC curve.
ROC_POINTS = 201


# -- records -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CalibrationBin(Record):
    """One bin of a calibration table: ``lower <= p < upper`` (the last bin includes
    ``upper``), ``n`` entities, their mean predicted probability and observed rate."""

    lower: float
    upper: float
    n: int
    mean_predicted: float
    observed_rate: float


@dataclass(frozen=True, slots=True)
class CategoryRate(Record):
    """One category: its share of the population, its size and observed outcome rate
    (``None`` when the category is empty)."""

    share: float
    observed_rate: float | None
    n: int


@dataclass(frozen=True, slots=True)
class RocPoint(Record):
    """One point of a ROC curve: false and true positive rates at one threshold."""

    fpr: float
    tpr: float


@dataclass(frozen=True, slots=True)
class ValueBin(Record):
    """Entities whose published value is in ``lower..upper`` (both included), by outcome."""

    lower: int
    upper: int
    negatives: int
    positives: int


@dataclass(frozen=True, slots=True)
class Evaluation(Record):
    """Every quality measure of one model (one index) on held-out entities.

    ``category_rates`` maps ``low``/``medium``/``high`` to :class:`CategoryRate` (empty when
    no cut-offs were given); ``psi`` is ``None`` without reference scores; ``roc`` is the
    ROC curve (at most :data:`ROC_POINTS` points); ``value_histogram`` is empty without a
    score scale. Files written before ``roc`` and ``value_histogram`` existed read back
    with both empty.
    """

    auc: float
    gini: float
    ks: float
    brier: float
    ece: float
    calibration: tuple[CalibrationBin, ...]
    category_rates: dict[str, CategoryRate]
    psi: float | None
    n: int
    positives: int
    roc: tuple[RocPoint, ...] = ()
    value_histogram: tuple[ValueBin, ...] = ()


# -- ranking measures --------------------------------------------------------------------


def auc(y_true: Any, p: Any) -> float:
    """Area under the ROC curve (ties count one half); needs both outcomes."""
    y, prob = inputs(y_true, p, both_classes=True)
    positives = int(y.sum())
    negatives = y.size - positives
    rank_sum = float(ranks(prob)[y == 1].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def _roc_arrays(y: npt.NDArray[np.int8], prob: Array) -> tuple[Array, Array]:
    """FPR and TPR at every distinct threshold, highest first (without ``(0, 0)``)."""
    order = np.argsort(-prob, kind="stable")
    sorted_p = prob[order]
    tp = np.cumsum(y[order], dtype=np.int64)
    fp = np.arange(1, y.size + 1, dtype=np.int64) - tp
    # Only thresholds between distinct probabilities: the last row of each tie group.
    last = np.r_[sorted_p[1:] != sorted_p[:-1], True]
    fpr: Array = fp[last] / fp[-1]
    tpr: Array = tp[last] / tp[-1]
    return fpr, tpr


def ks_statistic(y_true: Any, p: Any) -> float:
    """Kolmogorov-Smirnov statistic: ``max |TPR - FPR|`` over thresholds on ``p``."""
    y, prob = inputs(y_true, p, both_classes=True)
    fpr, tpr = _roc_arrays(y, prob)
    return float(np.max(np.abs(tpr - fpr)))


def roc_curve(y_true: Any, p: Any, max_points: int = ROC_POINTS) -> tuple[RocPoint, ...]:
    """The ROC curve from ``(0, 0)`` to ``(1, 1)``, at most ``max_points`` points.

    Every distinct threshold gives a point; when there are more than ``max_points``, points
    evenly spaced along the list are kept (the first and the last always).

    >>> [(q.fpr, q.tpr) for q in roc_curve([0, 1, 0, 1], [0.1, 0.9, 0.6, 0.4])]
    [(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]
    """
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 2:
        raise LabError(
            f"max_points: expected an integer of at least 2, found {max_points!r}",
            code="bad_points",
        )
    y, prob = inputs(y_true, p, both_classes=True)
    fpr, tpr = _roc_arrays(y, prob)
    fpr, tpr = np.r_[0.0, fpr], np.r_[0.0, tpr]
    keep = np.unique(np.linspace(0, fpr.size - 1, min(max_points, fpr.size)).round().astype(int))
    return tuple(RocPoint(fpr=float(fpr[i]), tpr=float(tpr[i])) for i in keep)


def auc_standard_error(area: float, positives: int, negatives: int) -> float:
    """Standard error of an AUC (Hanley and McNeil, 1982).

    ``Q1 = A / (2 - A)``, ``Q2 = 2 A² / (1 + A)``,
    ``SE² = (A (1 - A) + (n₁ - 1)(Q1 - A²) + (n₀ - 1)(Q2 - A²)) / (n₁ n₀)``.

    >>> round(auc_standard_error(0.8, 50, 450), 4)
    0.0385
    """
    if positives < 1 or negatives < 1:
        raise LabError(
            f"auc_standard_error: expected at least one positive and one negative, found "
            f"{positives} and {negatives}",
            code="single_class",
        )
    a = float(area)
    q1, q2 = a / (2.0 - a), 2.0 * a * a / (1.0 + a)
    var = (a * (1 - a) + (positives - 1) * (q1 - a * a) + (negatives - 1) * (q2 - a * a)) / (
        positives * negatives
    )
    return float(np.sqrt(max(var, 0.0)))


def brier(y_true: Any, p: Any) -> float:
    """Brier score: mean squared difference between probability and outcome."""
    y, prob = inputs(y_true, p, both_classes=False)
    return float(np.mean((prob - y) ** 2))


# -- calibration -------------------------------------------------------------------------


def _bin_edges(prob: Array, n_bins: int, strategy: str) -> Array:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise LabError(f"n_bins: expected a positive integer, found {n_bins!r}", code="bad_bins")
    if strategy == "quantile":
        edges = np.quantile(prob, np.linspace(0.0, 1.0, n_bins + 1))
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        raise LabError(
            f"strategy: expected one of {', '.join(_STRATEGIES)}, found {strategy!r}",
            code="bad_strategy",
        )
    out: Array = np.unique(edges)
    return out


def calibration_table(
    y_true: Any, p: Any, n_bins: int = 10, strategy: str = "quantile"
) -> tuple[CalibrationBin, ...]:
    """Calibration table: per bin of ``p``, its size, mean probability and observed rate.

    ``strategy="quantile"`` gives equal-frequency bins (edges at the quantiles of ``p``;
    tied edges merge, so there may be fewer bins); ``"uniform"`` gives equal-width bins on
    [0, 1]. Empty bins are left out.
    """
    y, prob = inputs(y_true, p, both_classes=False)
    edges = _bin_edges(prob, n_bins, strategy)
    if edges.size == 1:  # every probability equal
        return (
            CalibrationBin(
                float(edges[0]), float(edges[0]), int(y.size), float(prob.mean()), float(y.mean())
            ),
        )
    which = np.searchsorted(edges[1:-1], prob, side="right")
    counts = np.bincount(which, minlength=edges.size - 1)
    sum_p = np.bincount(which, weights=prob, minlength=edges.size - 1)
    sum_y = np.bincount(which, weights=y.astype(np.float64), minlength=edges.size - 1)
    return tuple(
        CalibrationBin(
            lower=float(edges[i]),
            upper=float(edges[i + 1]),
            n=int(counts[i]),
            mean_predicted=float(sum_p[i] / counts[i]),
            observed_rate=float(sum_y[i] / counts[i]),
        )
        for i in range(edges.size - 1)
        if counts[i] > 0
    )


def _ece_from_table(table: tuple[CalibrationBin, ...]) -> float:
    total = sum(b.n for b in table)
    return float(sum(b.n * abs(b.observed_rate - b.mean_predicted) for b in table) / total)


def _mean_abs_deviation(n: int, p: float) -> float:
    """Exact ``E|k / n - p|`` for ``k ~ Binomial(n, p)``."""
    if n < 1 or p <= 0.0 or p >= 1.0:
        return 0.0
    k = np.arange(n + 1, dtype=np.float64)
    log_choose = np.r_[0.0, np.cumsum(np.log(n - k[:-1]) - np.log(k[1:]))]
    log_pmf = log_choose + k * np.log(p) + (n - k) * np.log1p(-p)
    return float(np.sum(np.exp(log_pmf) * np.abs(k / n - p)))


def ece_noise_floor(table: tuple[CalibrationBin, ...]) -> float:
    """The ECE a perfectly calibrated model would show on these bins, from sampling alone.

    Per bin, the exact mean of ``|k / n_b - p_b|`` with ``k ~ Binomial(n_b, p_b)`` and
    ``p_b`` the bin's mean predicted probability; weighted by bin size like the ECE. It
    shrinks like ``1 / sqrt(rows per bin)``: about 0.05 for 20 rows a bin at ``p = 0.1``,
    0.02 for 100.

    >>> round(ece_noise_floor((CalibrationBin(0.0, 0.2, 100, 0.1, 0.1),)), 4)
    0.0237
    """
    total = sum(b.n for b in table)
    if total == 0:
        return 0.0
    return float(sum(b.n * _mean_abs_deviation(b.n, b.mean_predicted) for b in table) / total)


def expected_calibration_error(
    y_true: Any, p: Any, n_bins: int = 10, strategy: str = "quantile"
) -> float:
    """Expected calibration error: ``sum_b n_b / n * |observed_b - mean_predicted_b|``.

    Bins as in :func:`calibration_table`; the default equal-frequency bins give each
    bin about ``n / n_bins`` entities, so no bin's error rests on a handful of rows.
    """
    return _ece_from_table(calibration_table(y_true, p, n_bins, strategy))


# -- stability and categories ------------------------------------------------------------


def psi(reference: Any, current: Any, n_bins: int = 10) -> float:
    """Population stability index of ``current`` scores against ``reference`` scores.

    Bins: edges at the reference's quantiles (``n_bins`` equal-frequency bins; tied edges
    merge); below the first inner edge is the first bin and above the last the last, so
    every current score lands in a bin. ``PSI = sum((c - r) * ln(c / r))`` over the bins'
    shares, each share floored at :data:`PSI_EPSILON`. Below 0.10 stable, 0.10-0.25 watch,
    0.25 or more act (:func:`psi_status`).
    """
    ref = probabilities(reference, "reference")
    cur = probabilities(current, "current")
    edges = _bin_edges(ref, n_bins, "quantile")
    inner = edges[1:-1]
    bins = inner.size + 1
    r = np.bincount(np.searchsorted(inner, ref, side="right"), minlength=bins) / ref.size
    c = np.bincount(np.searchsorted(inner, cur, side="right"), minlength=bins) / cur.size
    r = np.maximum(r, PSI_EPSILON)
    c = np.maximum(c, PSI_EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


def psi_status(value: float) -> str:
    """``"stable"`` below :data:`PSI_WATCH`, ``"act"`` from :data:`PSI_ACT`, else ``"watch"``."""
    if value >= PSI_ACT:
        return "act"
    if value >= PSI_WATCH:
        return "watch"
    return "stable"


def category_table(y_true: Any, p: Any, cutoffs: CategoryCutoffs) -> dict[str, CategoryRate]:
    """Share, size and observed outcome rate of each category (low, medium, high).

    Categories come from ``cutoffs`` exactly as the runtime assigns them
    (:func:`sample_protocol.scores.categorise`). An empty category has
    ``observed_rate=None``.
    """
    y, prob = inputs(y_true, p, both_classes=False)
    cats = categorise(prob, cutoffs)
    out: dict[str, CategoryRate] = {}
    for name in CATEGORIES:
        mask = cats == name
        n = int(mask.sum())
        out[name] = CategoryRate(
            share=n / y.size,
            observed_rate=float(y[mask].mean()) if n else None,
            n=n,
        )
    return out


def value_histogram(y_true: Any, p: Any, scale: ScoreScale, width: int = 5) -> tuple[ValueBin, ...]:
    """Negatives and positives per range of ``width`` published values (empty ranges too).

    Values come from ``scale`` exactly as the runtime computes them
    (:func:`sample_protocol.scores.to_values`); ranges start at ``scale.min_value``.

    >>> from sample_protocol.scores import ScoreScale
    >>> bins = value_histogram([0, 1, 1], [0.05, 0.10, 0.5], ScoreScale(), width=25)
    >>> [(b.lower, b.upper, b.negatives, b.positives) for b in bins]
    [(1, 25, 0, 0), (26, 50, 1, 1), (51, 75, 0, 1), (76, 99, 0, 0)]
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise LabError(f"width: expected a positive integer, found {width!r}", code="bad_bins")
    y, prob = inputs(y_true, p, both_classes=False)
    values = to_values(prob, scale).astype(np.int64)
    which = (values - scale.min_value) // width
    bins = (scale.max_value - scale.min_value) // width + 1
    pos = np.bincount(which, weights=y.astype(np.float64), minlength=bins)
    total = np.bincount(which, minlength=bins)
    return tuple(
        ValueBin(
            lower=scale.min_value + i * width,
            upper=min(scale.min_value + (i + 1) * width - 1, scale.max_value),
            negatives=int(total[i] - pos[i]),
            positives=int(pos[i]),
        )
        for i in range(bins)
    )


# -- everything at once ------------------------------------------------------------------


def evaluate(
    y_true: Any,
    p: Any,
    *,
    cutoffs: CategoryCutoffs | None,
    p_reference: Any | None = None,
    n_bins: int = 10,
    scale: ScoreScale | None = None,
) -> Evaluation:
    """Every measure of one model on held-out entities, as an :class:`Evaluation`.

    ``p_reference`` (the training scores) gives the PSI; ``cutoffs`` the category table;
    ``scale`` the histogram of published values. Calibration and ECE use ``n_bins``
    equal-frequency bins; the PSI uses ``n_bins`` bins from the reference's quantiles.
    """
    y, prob = inputs(y_true, p, both_classes=True)
    area = auc(y, prob)
    table = calibration_table(y, prob, n_bins, "quantile")
    return Evaluation(
        auc=area,
        gini=2.0 * area - 1.0,
        ks=ks_statistic(y, prob),
        brier=brier(y, prob),
        ece=_ece_from_table(table),
        calibration=table,
        category_rates={} if cutoffs is None else category_table(y, prob, cutoffs),
        psi=None if p_reference is None else psi(p_reference, prob, n_bins),
        n=int(y.size),
        positives=int(y.sum()),
        roc=roc_curve(y, prob),
        value_histogram=() if scale is None else value_histogram(y, prob, scale),
    )
