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

from sample_protocol.errors import ValidationError
from sample_protocol.records import CategoryCutoffs
from sample_protocol.scores import CATEGORIES, categorise, check_probabilities
from sample_protocol.serde import Record

from .errors import LabError

__all__ = [
    "PSI_ACT",
    "PSI_EPSILON",
    "PSI_WATCH",
    "CalibrationBin",
    "CategoryRate",
    "Evaluation",
    "auc",
    "brier",
    "calibration_table",
    "category_table",
    "evaluate",
    "expected_calibration_error",
    "ks_statistic",
    "psi",
    "psi_status",
]

#: PSI at or above this: watch the index (the population has moved).
PSI_WATCH = 0.10
#: PSI at or above this: act (retrain or investigate the data).
PSI_ACT = 0.25
#: Share given to an empty PSI bin, so that the logarithm stays finite.
PSI_EPSILON = 1e-4

_STRATEGIES = ("quantile", "uniform")

Array = npt.NDArray[np.float64]


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
class Evaluation(Record):
    """Every quality measure of one model (one index) on held-out entities.

    ``category_rates`` maps ``low``/``medium``/``high`` to :class:`CategoryRate` (empty when
    no cut-offs were given); ``psi`` is ``None`` without reference scores.
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


# -- input checks ------------------------------------------------------------------------


def _probabilities(p: Any, where: str) -> Array:
    try:
        arr = np.asarray(p, dtype=np.float64)
    except (TypeError, ValueError):
        raise LabError(
            f"{where}: expected an array of probabilities, found {type(p).__name__}",
            code="bad_probability",
        ) from None
    if arr.ndim != 1:
        raise LabError(f"{where}: expected a 1-D array, found shape {arr.shape}", code="bad_shape")
    if arr.size == 0:
        raise LabError(f"{where}: expected at least one value, found none", code="empty_input")
    try:
        check_probabilities(arr, where)
    except ValidationError as exc:
        raise LabError(str(exc), code="bad_probability") from None
    return arr


def _target(y: Any, n: int, *, both_classes: bool) -> npt.NDArray[np.int8]:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise LabError(f"y_true: expected a 1-D array, found shape {arr.shape}", code="bad_shape")
    if arr.size != n:
        raise LabError(
            f"y_true and p: expected the same length, found {arr.size} and {n}",
            code="length_mismatch",
        )
    if arr.dtype == np.bool_:
        out = arr.astype(np.int8)
    else:
        try:
            as_float = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise LabError(
                f"y_true: expected 0/1 outcomes, found values of type {arr.dtype}",
                code="non_binary_target",
            ) from None
        bad = ~np.isin(as_float, (0.0, 1.0))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise LabError(
                f"y_true: expected 0/1 outcomes, found {int(bad.sum())} other value(s) "
                f"(first: row {first}, value {arr[first].item()!r})",
                code="non_binary_target",
            )
        out = as_float.astype(np.int8)
    if both_classes:
        positives = int(out.sum())
        if positives in (0, out.size):
            only = "1 (positive)" if positives else "0 (negative)"
            raise LabError(
                f"y_true: expected both outcomes 0 and 1, found only {only} in {out.size} row(s)",
                code="single_class",
            )
    return out


def _inputs(y: Any, p: Any, *, both_classes: bool) -> tuple[npt.NDArray[np.int8], Array]:
    prob = _probabilities(p, "p")
    return _target(y, prob.size, both_classes=both_classes), prob


# -- ranking measures --------------------------------------------------------------------


def _ranks(p: Array) -> Array:
    """Ranks 1..n of ``p``, ties given their average rank."""
    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average = ends - (counts - 1) / 2.0
    out: Array = average[inverse].astype(np.float64)
    return out


def auc(y_true: Any, p: Any) -> float:
    """Area under the ROC curve (ties count one half); needs both outcomes."""
    y, prob = _inputs(y_true, p, both_classes=True)
    positives = int(y.sum())
    negatives = y.size - positives
    rank_sum = float(_ranks(prob)[y == 1].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def ks_statistic(y_true: Any, p: Any) -> float:
    """Kolmogorov-Smirnov statistic: ``max |TPR - FPR|`` over thresholds on ``p``."""
    y, prob = _inputs(y_true, p, both_classes=True)
    order = np.argsort(-prob, kind="stable")
    sorted_p = prob[order]
    sorted_y = y[order]
    tp = np.cumsum(sorted_y, dtype=np.int64)
    fp = np.arange(1, y.size + 1, dtype=np.int64) - tp
    # Only thresholds between distinct probabilities: the last row of each tie group.
    last = np.r_[sorted_p[1:] != sorted_p[:-1], True]
    tpr = tp[last] / tp[-1]
    fpr = fp[last] / fp[-1]
    return float(np.max(np.abs(tpr - fpr)))


def brier(y_true: Any, p: Any) -> float:
    """Brier score: mean squared difference between probability and outcome."""
    y, prob = _inputs(y_true, p, both_classes=False)
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
    y, prob = _inputs(y_true, p, both_classes=False)
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
    ref = _probabilities(reference, "reference")
    cur = _probabilities(current, "current")
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
    y, prob = _inputs(y_true, p, both_classes=False)
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


# -- everything at once ------------------------------------------------------------------


def evaluate(
    y_true: Any,
    p: Any,
    *,
    cutoffs: CategoryCutoffs | None,
    p_reference: Any | None = None,
    n_bins: int = 10,
) -> Evaluation:
    """Every measure of one model on held-out entities, as an :class:`Evaluation`.

    ``p_reference`` (the training scores) gives the PSI; ``cutoffs`` the category table.
    Calibration and ECE use ``n_bins`` equal-frequency bins; the PSI uses ``n_bins`` bins
    from the reference's quantiles.
    """
    y, prob = _inputs(y_true, p, both_classes=True)
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
    )
