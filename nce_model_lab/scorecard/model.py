"""The monotone scorecard: :class:`WOEBinner` then logistic regression, readable bin by bin.

The log-odds of the event is ``intercept + sum_j coef_j * WOE_j(x_j)``; every term is a
row of :meth:`Scorecard.points_table`, and :meth:`Scorecard.reason_codes` names the
features whose terms raise the risk most for a given row.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(1000, 3)).astype(np.float32)
>>> y = (X[:, 0] - X[:, 1] + rng.normal(size=1000) > 0).astype(int)
>>> card = Scorecard(max_bins=5).fit(X, y)
>>> card.predict_proba(X[:2]).shape
(2, 2)
>>> len(card.reason_codes(X[:2], top=2))
2
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from nce_model_lab.scorecard.binning import WOEBinner, _binary_target, _validate_X

__all__ = ["Scorecard"]


def _fmt(value: float) -> str:
    return str(np.float32(value))


class Scorecard(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Binary classifier: monotone WOE binning, then an L2 logistic regression.

    Parameters
    ----------
    max_bins, min_bin_share, monotonic, special_zero : passed to :class:`WOEBinner`.
    C : inverse regularisation strength of the logistic regression.
    max_iter : iteration limit of the logistic regression.

    Attributes
    ----------
    binner_ : the fitted :class:`WOEBinner`.
    classifier_ : the fitted ``LogisticRegression`` on the WOE matrix.
    classes_ : the two classes; ``classes_[1]`` is the event ("bad").
    n_iter_ : iterations the logistic regression ran.
    n_features_in_, feature_names_in_ : as in scikit-learn.
    """

    _parameter_constraints: dict[str, list[Any]] = {  # noqa: RUF012 - scikit-learn's API
        **WOEBinner._parameter_constraints,
        "C": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        max_bins: int = 8,
        min_bin_share: float = 0.05,
        monotonic: bool = True,
        special_zero: bool = True,
        C: float = 1.0,
        max_iter: int = 1000,
    ) -> None:
        self.max_bins = max_bins
        self.min_bin_share = min_bin_share
        self.monotonic = monotonic
        self.special_zero = special_zero
        self.C = C
        self.max_iter = max_iter

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        return tags

    def fit(self, X: Any, y: Any) -> Scorecard:
        """Fit the binner on ``(X, y)``, then the logistic regression on its WOE matrix."""
        self._validate_params()
        Xv, yv = _validate_X(self, X, y, reset=True)
        _binary_target(self, yv)
        self.binner_ = WOEBinner(
            max_bins=self.max_bins,
            min_bin_share=self.min_bin_share,
            monotonic=self.monotonic,
            special_zero=self.special_zero,
        ).fit(Xv, yv)
        self.classifier_ = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(
            self.binner_.transform(Xv), yv
        )
        self.classes_ = self.classifier_.classes_
        self.n_iter_ = self.classifier_.n_iter_
        return self

    def _woe(self, X: Any) -> NDArray[np.float32]:
        check_is_fitted(self)
        result: NDArray[np.float32] = self.binner_.transform(_validate_X(self, X, reset=False))
        return result

    def decision_function(self, X: Any) -> NDArray[np.float64]:
        """Log-odds of the event per row."""
        woe = self._woe(X)
        out: NDArray[np.float64] = self.classifier_.decision_function(woe)
        return out

    def predict_proba(self, X: Any) -> NDArray[np.float64]:
        """Probabilities [N, 2]; column 1 is the event ``classes_[1]``."""
        woe = self._woe(X)
        out: NDArray[np.float64] = self.classifier_.predict_proba(woe)
        return out

    def predict(self, X: Any) -> NDArray[Any]:
        """The more probable class per row."""
        woe = self._woe(X)
        out: NDArray[Any] = self.classifier_.predict(woe)
        return out

    def as_pipeline(self) -> Pipeline:
        """The fitted steps as a scikit-learn ``Pipeline`` (what the ONNX export converts)."""
        check_is_fitted(self)
        return Pipeline([("woe", self.binner_), ("logit", self.classifier_)])

    def feature_names(self) -> list[str]:
        """Column names seen in ``fit`` (``x0``, ``x1``, ... for arrays)."""
        check_is_fitted(self)
        names = getattr(self, "feature_names_in_", None)
        if names is not None:
            return [str(n) for n in names]
        return [f"x{j}" for j in range(self.n_features_in_)]

    def contributions(self, X: Any) -> NDArray[np.float64]:
        """Per row and feature, ``coef_j * WOE_j(x_j)``: its term in the log-odds."""
        woe = self._woe(X)
        out: NDArray[np.float64] = woe.astype(np.float64) * self.classifier_.coef_[0]
        return out

    def reason_codes(self, X: Any, top: int = 4) -> list[tuple[str, ...]]:
        """Per row, up to ``top`` features whose terms raise the risk most (positive
        contributions, largest first; ties in column order)."""
        if not isinstance(top, Integral) or isinstance(top, bool) or top < 1:
            raise ValueError(f"reason_codes: top must be an integer >= 1, found {top!r}")
        contrib = self.contributions(X)
        names = self.feature_names()
        order = np.argsort(-contrib, axis=1, kind="stable")[:, :top]
        return [
            tuple(names[j] for j in row_order if row[j] > 0)
            for row, row_order in zip(contrib, order, strict=True)
        ]

    def points_table(self) -> pd.DataFrame:
        """The readable scorecard: one row per (feature, bin), plus the intercept.

        Columns: ``feature``, ``bin`` (``[a, b)``, ``missing`` or ``zero``), ``count``,
        ``events``, ``event_rate``, ``woe``, ``coefficient``, ``contribution``
        (coefficient x WOE, the bin's term in the log-odds; positive = riskier).
        """
        check_is_fitted(self)
        coef = self.classifier_.coef_[0]
        rows: list[dict[str, Any]] = []
        for name, b, c in zip(self.feature_names(), self.binner_.bins_, coef, strict=True):
            bounds = [-np.inf, *b.edges.tolist(), np.inf]
            for i in range(b.woe.size):
                lo, hi = bounds[i], bounds[i + 1]
                label = f"{'(' if i == 0 else '['}{_fmt(lo)}, {_fmt(hi)})"
                if b.has_zero_bin and lo <= 0 < hi:
                    label += " except 0"
                rows.append(self._row(name, label, b.counts[i], b.events[i], b.woe[i], c))
            rows.append(self._row(name, "missing", b.n_missing, b.events_missing,
                                  b.woe_missing, c))
            if b.has_zero_bin:
                rows.append(self._row(name, "zero", b.n_zero, b.events_zero, b.woe_zero, c))
        intercept = float(self.classifier_.intercept_[0])
        rows.append({"feature": "(intercept)", "bin": "", "count": None, "events": None,
                     "event_rate": None, "woe": None, "coefficient": intercept,
                     "contribution": intercept})
        return pd.DataFrame(rows).astype({"count": "Int64", "events": "Int64"})

    @staticmethod
    def _row(feature: str, label: str, count: Any, events: Any, woe: Any, coef: Any
             ) -> dict[str, Any]:
        n = int(count)
        return {
            "feature": feature,
            "bin": label,
            "count": n,
            "events": int(events),
            "event_rate": events / n if n else float("nan"),
            "woe": float(woe),
            "coefficient": float(coef),
            "contribution": float(coef) * float(woe),
        }
