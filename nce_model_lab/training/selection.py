"""Model families, the rule that picks one per model, and sigmoid calibration on held-out folds.

Families (scikit-learn estimators):

- ``hgb``: ``HistGradientBoostingClassifier`` on float32, small (``max_iter`` 150, early
  stopping on 10% of the rows, single model per fit);
- ``scorecard``: :class:`~nce_model_lab.scorecard.Scorecard` (monotone WOE binning +
  logistic regression), which a regulator can read bin by bin.

**Selection rule** (:func:`select_family`): both families are fitted on a stratified 75%
of the training rows and scored by AUC on the other 25%; the scorecard wins unless the
gradient boosting beats it by more than :data:`SCORECARD_MARGIN` (0.005 AUC).

**Calibration** (:func:`fit_calibrated`): ``CalibratedClassifierCV(method="sigmoid")``
over 3 stratified folds (ensemble of 3): each fold's model is fitted on 2/3 of the rows and
its sigmoid on the held-out third. For the scorecard the calibration sits *inside* the
pipeline (``WOEBinner`` → calibrated logistic regression), the form ``onnx_export.to_onnx``
converts correctly. The same fit gives out-of-fold probabilities for every row (each row
scored by the fold model that did not train on it), the combiner's inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from sample_protocol.serde import Record

from ..errors import LabError
from ..evaluate import auc
from ..scorecard import Scorecard, WOEBinner

__all__ = [
    "FAMILIES",
    "HGB_PARAMS",
    "N_FOLDS",
    "SCORECARD_MARGIN",
    "CalibratedFit",
    "Selection",
    "fit_calibrated",
    "make_estimator",
    "select_family",
    "threads",
]

#: The model families a model is chosen from.
FAMILIES: tuple[str, ...] = ("hgb", "scorecard")
#: The scorecard is kept unless gradient boosting beats it by more than this AUC.
SCORECARD_MARGIN = 0.005
#: Folds of the sigmoid calibration (and of the out-of-fold predictions).
N_FOLDS = 3

HGB_PARAMS: dict[str, Any] = {
    "max_iter": 150,
    "learning_rate": 0.1,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
    "early_stopping": True,
    "validation_fraction": 0.1,
    "n_iter_no_change": 10,
}
_SCORECARD_PARAMS: dict[str, Any] = {"max_bins": 6, "min_bin_share": 0.05}


def threads(n_threads: int = 1) -> Any:
    """Context manager limiting OpenMP/BLAS threads (default 1: fits stay predictable on a
    shared 2-core machine, where OpenMP spinning under contention costs 10-100x)."""
    return threadpool_limits(limits=n_threads)


@dataclass(frozen=True, slots=True)
class Selection(Record):
    """Which family won, and the validation AUC of each."""

    family: str
    hgb_auc: float
    scorecard_auc: float
    n_validation: int


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise LabError(
            f"model family: expected one of {', '.join(FAMILIES)}, found {family!r}",
            code="bad_model_family",
        )


def make_estimator(family: str, seed: int) -> Any:
    """An unfitted estimator of ``family`` (``hgb`` or ``scorecard``)."""
    _check_family(family)
    if family == "hgb":
        return HistGradientBoostingClassifier(**HGB_PARAMS, random_state=seed)
    return Scorecard(**_SCORECARD_PARAMS)


def _check_xy(X: Any, y: Any, where: str) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int8]]:
    Xa = np.asarray(X, dtype=np.float32)
    ya = np.asarray(y).astype(np.int8)
    if Xa.ndim != 2 or Xa.shape[0] != ya.shape[0] or Xa.shape[1] == 0:
        raise LabError(
            f"{where}: expected X [n, >=1] and y [n], found X {Xa.shape} and y {ya.shape}",
            code="bad_training_data",
        )
    counts = np.bincount(ya, minlength=2)
    if counts.size != 2 or counts.min() < 2 * N_FOLDS:
        raise LabError(
            f"{where}: expected at least {2 * N_FOLDS} rows of each class, found "
            f"{counts.tolist()} (0s, 1s)",
            code="bad_training_data",
        )
    return Xa, ya


def select_family(X: Any, y: Any, *, seed: int = 0, where: str = "model") -> Selection:
    """Fit both families on 75% of the rows and pick one by AUC on the rest (rule above)."""
    Xa, ya = _check_xy(X, y, where)
    X_fit, X_val, y_fit, y_val = train_test_split(
        Xa, ya, test_size=0.25, stratify=ya, random_state=seed
    )
    scores = {}
    for family in FAMILIES:
        model = make_estimator(family, seed).fit(X_fit, y_fit)
        scores[family] = auc(y_val, model.predict_proba(X_val)[:, 1])
    family = "scorecard" if scores["scorecard"] >= scores["hgb"] - SCORECARD_MARGIN else "hgb"
    return Selection(
        family=family,
        hgb_auc=round(float(scores["hgb"]), 6),
        scorecard_auc=round(float(scores["scorecard"]), 6),
        n_validation=int(y_val.shape[0]),
    )


@dataclass(frozen=True, slots=True)
class CalibratedFit:
    """A calibrated model and its out-of-fold probability for every training row."""

    model: Any
    oof_probability: npt.NDArray[np.float64]
    family: str


def fit_calibrated(
    family: str, X: Any, y: Any, *, seed: int = 0, where: str = "model"
) -> CalibratedFit:
    """Fit ``family`` with sigmoid calibration on held-out folds (see the module notes).

    The model is exportable with ``onnx_export.to_onnx`` (for the scorecard pass
    ``extra_converters=scorecard.register_converters``).
    """
    _check_family(family)
    Xa, ya = _check_xy(X, y, where)
    splits = list(StratifiedKFold(N_FOLDS, shuffle=True, random_state=seed).split(Xa, ya))
    if family == "hgb":
        model: Any = CalibratedClassifierCV(
            make_estimator("hgb", seed), method="sigmoid", cv=splits
        ).fit(Xa, ya)
        calibrated = model
        inner = Xa
    else:
        params = dict(_SCORECARD_PARAMS)
        binner = WOEBinner(max_bins=params["max_bins"], min_bin_share=params["min_bin_share"])
        calibrated = CalibratedClassifierCV(
            LogisticRegression(C=1.0, max_iter=1000), method="sigmoid", cv=splits
        )
        model = Pipeline([("woe", binner), ("calibrated", calibrated)]).fit(Xa, ya)
        inner = model.named_steps["woe"].transform(Xa)
    oof = np.empty(ya.shape[0], dtype=np.float64)
    for (_, held_out), fold in zip(splits, calibrated.calibrated_classifiers_, strict=True):
        oof[held_out] = fold.predict_proba(inner[held_out])[:, 1]
    return CalibratedFit(model=model, oof_probability=oof, family=family)
