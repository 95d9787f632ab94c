"""Monotone optimal binning with weight of evidence: the :class:`WOEBinner` transformer.

Per feature: quantile pre-bins, then adjacent bins are merged until every bin holds at
least ``min_bin_share`` of the rows, the (smoothed) event rate is strictly monotone in the
direction of the feature's rank correlation with the target, and there are at most
``max_bins`` interval bins. Missing values (NaN) and, with ``special_zero``, exact zeros get
bins of their own: no row is ever dropped. Each bin is replaced by its weight of evidence

    WOE = ln( ((events + a) / (E + a*m)) / ((non_events + a) / (N + a*m)) ),  a = 0.5,

(``m`` bins with data), so **a positive WOE means riskier than average**. A feature with no
missing value at fit time gets a missing WOE of 0 (the population average); a feature with
no zero at fit time sends zeros to the interval bin that holds 0.

Bin edges are float32 and a value ``x`` lies in bin ``i`` when ``edges[i-1] <= x < edges[i]``
(``np.digitize``), compared in float32, exactly as the ONNX graph of
:mod:`nce_model_lab.scorecard.converter` does.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(500, 2)).astype(np.float32)
>>> y = (X[:, 0] + rng.normal(size=500) > 0).astype(int)
>>> WOEBinner(max_bins=4).fit(X, y).transform(X).dtype
dtype('float32')
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas.api.types as pd_api
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from nce_model_lab.errors import ModelInputError

__all__ = ["FeatureBins", "WOEBinner"]

#: Quantile pre-bins per feature before merging.
_PREBINS = 20
#: Laplace smoothing added to event and non-event counts of every bin.
_SMOOTHING = 0.5


@dataclass(frozen=True, eq=False)
class FeatureBins:
    """The fitted bins of one feature (``WOEBinner.bins_[j]``).

    ``edges`` (float32, ascending) split the interval bins; ``woe``, ``counts`` and
    ``events`` have one entry per interval bin (``len(edges) + 1``). The missing and zero
    bins are kept apart; ``has_zero_bin`` is False when zeros were not set apart.
    ``direction`` is +1 when risk rises with the value, -1 when it falls.
    """

    edges: NDArray[np.float32]
    woe: NDArray[np.float32]
    counts: NDArray[np.int64]
    events: NDArray[np.int64]
    woe_missing: float
    n_missing: int
    events_missing: int
    woe_zero: float
    n_zero: int
    events_zero: int
    has_zero_bin: bool
    direction: int


def _non_numeric_column(X: Any) -> str | None:
    """Name (or index) of the first text column of ``X``: text is refused even when it
    parses as numbers, since it means the caller skipped an encoding step."""
    columns = getattr(X, "columns", None)
    dtypes = getattr(X, "dtypes", None)
    if columns is not None and dtypes is not None:
        for name, dtype in zip(columns, dtypes, strict=True):
            if not (pd_api.is_numeric_dtype(dtype) or pd_api.is_bool_dtype(dtype)):
                return repr(str(name))
        return None
    if hasattr(X, "__array_function__") and not isinstance(X, np.ndarray):
        return None  # array-likes that refuse numpy conversion: let scikit-learn judge
    try:
        arr = np.asarray(X)
    except Exception:  # ragged input: let scikit-learn's message stand
        return None
    if arr.dtype.kind in "USa":
        return "0" if arr.ndim < 2 else "0 (X holds text)"
    if arr.dtype.kind == "O" and arr.ndim == 2:
        for j in range(arr.shape[1]):
            if any(isinstance(v, str | bytes) for v in arr[:, j]):
                return str(j)
    return None


def _validate_X(est: BaseEstimator, X: Any, y: Any = "no_validation", *, reset: bool) -> Any:
    """Validate ``X`` (and ``y``) as scikit-learn does, as float32; raise ModelInputError."""
    name = type(est).__name__
    column = _non_numeric_column(X)
    if column is not None:
        raise ModelInputError(
            f"{name}: column {column} of X holds text; expected float values or NaN: "
            "encode categorical columns (and parse numbers) before the model",
            code="non_numeric_input",
        )
    try:
        return validate_data(
            est, X, y, reset=reset, dtype=np.float32, ensure_all_finite="allow-nan"
        )
    except (TypeError, ValueError) as exc:
        text = str(exc)
        if "features, but" in text:
            raise ModelInputError(
                f"{text} ({name}: the caller must pass the columns it was fitted on, "
                "in the same order)",
                code="wrong_width",
            ) from exc
        if "feature names" in text:
            raise ModelInputError(f"{name}: {text}", code="wrong_columns") from exc
        raise ModelInputError(f"{name}: unusable input: {text}") from exc


def _binary_target(est: BaseEstimator, y: Any) -> NDArray[np.bool_]:
    """Events (True where ``y`` is the larger of exactly two classes)."""
    name = type(est).__name__
    kind = type_of_target(y)
    if kind not in ("binary", "multiclass"):
        raise ModelInputError(
            f"{name}: Unknown label type: {kind}; y must hold exactly two classes "
            "(a continuous target cannot be a scorecard's event)",
            code="not_binary_target",
        )
    classes, encoded = np.unique(np.asarray(y), return_inverse=True)
    if len(classes) != 2:
        raise ModelInputError(
            f"{name}: Only binary classification is supported: y must hold exactly two "
            f"classes (the larger is the event); found {len(classes)} class(es): "
            f"{classes[:5].tolist()}",
            code="not_binary_target",
        )
    return np.asarray(encoded.reshape(-1) == 1)


def _log_odds(events: NDArray[np.int64], counts: NDArray[np.int64]) -> NDArray[np.float64]:
    return np.log((events + _SMOOTHING) / (counts - events + _SMOOTHING))


class _Bins:
    """Mutable interval bins of one feature while they are merged."""

    def __init__(self, edges: list[float], counts: list[int], events: list[int]) -> None:
        self.edges, self.counts, self.events = edges, counts, events

    def merge(self, i: int) -> None:
        """Merge bin ``i`` with bin ``i + 1``."""
        del self.edges[i]
        self.counts[i] += self.counts.pop(i + 1)
        self.events[i] += self.events.pop(i + 1)

    def scores(self) -> NDArray[np.float64]:
        return _log_odds(np.asarray(self.events), np.asarray(self.counts))

    def drop_empty(self) -> None:
        while len(self.counts) > 1 and 0 in self.counts:
            i = self.counts.index(0)
            self.merge(i if i < len(self.counts) - 1 else i - 1)

    def enforce_min_count(self, min_count: float) -> bool:
        changed = False
        while len(self.counts) > 1 and min(self.counts) < min_count:
            i = int(np.argmin(self.counts))
            if i == 0:
                self.merge(0)
            elif i == len(self.counts) - 1:
                self.merge(i - 1)
            else:
                s = self.scores()
                self.merge(i - 1 if abs(s[i] - s[i - 1]) <= abs(s[i + 1] - s[i]) else i)
            changed = True
        return changed

    def enforce_monotone(self, direction: int) -> bool:
        changed = False
        while len(self.counts) > 1:
            steps = direction * np.diff(self.scores())
            bad = np.flatnonzero(steps <= 0)
            if bad.size == 0:
                break
            self.merge(int(bad[np.argmin(steps[bad])]))
            changed = True
        return changed

    def enforce_max_bins(self, max_bins: int) -> bool:
        changed = False
        while len(self.counts) > max_bins:
            self.merge(int(np.argmin(np.abs(np.diff(self.scores())))))
            changed = True
        return changed


def _direction(values: NDArray[np.float32], events: NDArray[np.bool_], edges: Any) -> int:
    """+1 if risk rises with the value (rank correlation of pre-bin and event), else -1."""
    ranks = np.searchsorted(edges, values, side="right").astype(np.float64)
    if values.size < 2 or ranks.std() == 0 or events.std() == 0:
        return 1
    return 1 if float(np.corrcoef(ranks, events.astype(np.float64))[0, 1]) >= 0 else -1


def _fit_feature(
    x: NDArray[np.float32],
    events: NDArray[np.bool_],
    *,
    max_bins: int,
    min_bin_share: float,
    monotonic: bool,
    special_zero: bool,
) -> FeatureBins:
    n = x.size
    missing = np.isnan(x)
    zero = (x == 0) & ~missing if special_zero else np.zeros(n, dtype=bool)
    regular = ~missing & ~zero
    values, ev = x[regular], events[regular]
    if values.size:
        qs = np.quantile(values.astype(np.float64), np.linspace(0, 1, _PREBINS + 1)[1:-1])
        edges = np.unique(qs.astype(np.float32))
        edges = edges[edges > values.min()]
    else:
        edges = np.empty(0, dtype=np.float32)
    idx = np.searchsorted(edges, values, side="right")
    k = edges.size + 1
    bins = _Bins(
        edges.tolist(),
        np.bincount(idx, minlength=k).tolist(),
        np.bincount(idx, weights=ev, minlength=k).astype(np.int64).tolist(),
    )
    direction = _direction(values, ev, edges)
    bins.drop_empty()
    changed = True
    while changed:
        changed = bins.enforce_min_count(min_bin_share * n)
        if monotonic:
            changed = bins.enforce_monotone(direction) or changed
        changed = bins.enforce_max_bins(max_bins) or changed

    counts = np.asarray(bins.counts, dtype=np.int64)
    bin_events = np.asarray(bins.events, dtype=np.int64)
    n_missing, n_zero = int(missing.sum()), int(zero.sum())
    e_missing, e_zero = int(events[missing].sum()), int(events[zero].sum())
    n_bins = int((counts > 0).sum()) + (n_missing > 0) + (n_zero > 0)
    total_events = int(events.sum())
    total_non = n - total_events
    a = _SMOOTHING

    def woe(e: Any, c: Any) -> Any:
        share_events = (e + a) / (total_events + a * n_bins)
        return np.log(share_events / ((c - e + a) / (total_non + a * n_bins)))

    final_edges = np.asarray(bins.edges, dtype=np.float32)
    woe_bins = np.asarray(woe(bin_events, counts), dtype=np.float32)
    woe_missing = float(np.float32(woe(e_missing, n_missing))) if n_missing else 0.0
    if n_zero:
        woe_zero = float(np.float32(woe(e_zero, n_zero)))
    else:
        woe_zero = float(woe_bins[np.searchsorted(final_edges, np.float32(0), side="right")])
    return FeatureBins(
        edges=final_edges,
        woe=woe_bins,
        counts=counts,
        events=bin_events,
        woe_missing=woe_missing,
        n_missing=n_missing,
        events_missing=e_missing,
        woe_zero=woe_zero,
        n_zero=n_zero,
        events_zero=e_zero,
        has_zero_bin=n_zero > 0,
        direction=direction,
    )


class WOEBinner(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Monotone optimal binning + weight of evidence, one output column per input column.

    Parameters
    ----------
    max_bins : most interval bins per feature (the missing and zero bins come on top).
    min_bin_share : least share of all rows in an interval bin.
    monotonic : merge bins until the WOE is strictly monotone in the feature.
    special_zero : give exact zeros a bin of their own.

    Attributes
    ----------
    bins_ : tuple of :class:`FeatureBins`, one per feature.
    n_features_in_, feature_names_in_ : as in scikit-learn.

    Input must be numeric (float32 is what it computes in; encode categoricals before).
    ``transform`` returns a float32 matrix of WOE values; NaN rows are kept.
    """

    _parameter_constraints: dict[str, list[Any]] = {  # noqa: RUF012 - scikit-learn's API
        "max_bins": [Interval(Integral, 1, None, closed="left")],
        "min_bin_share": [Interval(Real, 0, 0.5, closed="both")],
        "monotonic": ["boolean"],
        "special_zero": ["boolean"],
    }

    def __init__(
        self,
        max_bins: int = 8,
        min_bin_share: float = 0.05,
        monotonic: bool = True,
        special_zero: bool = True,
    ) -> None:
        self.max_bins = max_bins
        self.min_bin_share = min_bin_share
        self.monotonic = monotonic
        self.special_zero = special_zero

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.target_tags.required = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def fit(self, X: Any, y: Any) -> WOEBinner:
        """Learn bins and WOE per feature from ``X`` and a binary target ``y``."""
        self._validate_params()
        Xv, yv = _validate_X(self, X, y, reset=True)
        events = _binary_target(self, yv)
        self.bins_ = tuple(
            _fit_feature(
                Xv[:, j],
                events,
                max_bins=self.max_bins,
                min_bin_share=self.min_bin_share,
                monotonic=self.monotonic,
                special_zero=self.special_zero,
            )
            for j in range(Xv.shape[1])
        )
        return self

    def bin_index(self, X: Any) -> NDArray[np.int64]:
        """Bin of every cell: ``0..len(edges)`` interval bins, ``-1`` missing, ``-2`` zero."""
        check_is_fitted(self)
        Xv = _validate_X(self, X, reset=False)
        out = np.empty(Xv.shape, dtype=np.int64)
        for j, b in enumerate(self.bins_):
            x = Xv[:, j]
            col = np.searchsorted(b.edges, x, side="right").astype(np.int64)
            if b.has_zero_bin:
                col[x == 0] = -2
            col[np.isnan(x)] = -1
            out[:, j] = col
        return out

    def transform(self, X: Any) -> NDArray[np.float32]:
        """Replace every value by the WOE of its bin (float32, same shape)."""
        check_is_fitted(self)
        Xv = _validate_X(self, X, reset=False)
        out = np.empty(Xv.shape, dtype=np.float32)
        for j, b in enumerate(self.bins_):
            x = Xv[:, j]
            col = b.woe[np.searchsorted(b.edges, x, side="right")]
            col = np.where(x == 0, np.float32(b.woe_zero), col)
            out[:, j] = np.where(np.isnan(x), np.float32(b.woe_missing), col)
        return out
