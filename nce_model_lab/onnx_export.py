"""ONNX export and the parity check that guards a release (issue 6).

Models are exported with skl2onnx, float32 end to end, ``zipmap=False``, opsets pinned,
one float32 input ``[None, n_features]`` and the outputs ``label`` and
``probabilities``. Before a model is released, :func:`require_parity` runs the exported
model with onnxruntime on held-out rows and compares it with scikit-learn: the max
absolute difference of probabilities must be at most ``1e-5`` and no row may change
category, else the release is refused with :class:`ParityError`.

HistGradientBoosting split thresholds are float64; about 0.5% of them round *up* when
stored as float32 in ONNX, and a float32 input equal to the rounded value then takes the
other branch (STACK_NOTES). :func:`fix_float32_thresholds` moves those thresholds to the
next float32 below, which leaves scikit-learn's own float32 predictions unchanged;
:func:`to_onnx` applies it to every HistGradientBoosting model it finds.

Example::

    onnx_bytes = to_onnx(model, n_features=X.shape[1])
    report = require_parity(model, onnx_bytes, X_holdout.astype(np.float32), name="tax/pd")
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sample_protocol.records import CategoryCutoffs
from sample_protocol.serde import Record

from .errors import LabError

__all__ = [
    "DEFAULT_TARGET_OPSET",
    "OUTPUT_NAMES",
    "PARITY_TOLERANCE",
    "ParityError",
    "ParityReport",
    "check_parity",
    "fix_float32_thresholds",
    "iter_hist_gradient_boosting",
    "parity_fixture",
    "require_parity",
    "to_onnx",
]

#: Opsets every export is pinned to (skl2onnx 1.20 tests the default domain 9-22).
DEFAULT_TARGET_OPSET: dict[str, int] = {"": 17, "ai.onnx.ml": 3}
#: Largest allowed absolute difference between ONNX and scikit-learn probabilities.
PARITY_TOLERANCE = 1e-5
#: Output names of every exported classifier (the gate checks exactly these).
OUTPUT_NAMES = ("label", "probabilities")

# skl2onnx 1.20 hands protobuf a Python bool for `nodes_missing_value_tracks_true`;
# protobuf 6 accepts it with this warning per tree (protobuf 7 refuses: pinned <7).
_PROTOBUF_BOOL_WARNING = r"Field onnx\.AttributeProto\.ints: Expected an int, got a boolean"


class ParityError(LabError):
    """The exported ONNX model does not reproduce the scikit-learn model; release refused."""

    code = "parity_failed"
    exit_code = 3


@dataclass(frozen=True, slots=True)
class ParityReport(Record):
    """Outcome of one parity check.

    ``max_abs_diff`` is over both probability columns (1.0 where exactly one side is not
    finite); ``category_flips`` counts rows whose category (with cut-offs) or label
    (without) differs between onnxruntime and scikit-learn.
    """

    max_abs_diff: float
    n_rows: int
    category_flips: int
    passed: bool
    tolerance: float = PARITY_TOLERANCE


# --- float32 thresholds --------------------------------------------------------------------


def _is_hgb(obj: object) -> bool:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return isinstance(obj, HistGradientBoostingClassifier)


def iter_hist_gradient_boosting(model: object) -> Iterator[Any]:
    """Every fitted HistGradientBoostingClassifier inside ``model`` (itself included).

    Looks through Pipeline steps, CalibratedClassifierCV (each fold's estimator),
    FrozenEstimator and any ``estimator``/``base_estimator`` attribute.
    """
    seen: set[int] = set()
    stack: list[object] = [model]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None:
            continue
        seen.add(id(obj))
        if _is_hgb(obj):
            if hasattr(obj, "_predictors"):
                yield obj
            continue
        steps = getattr(obj, "steps", None)
        if isinstance(steps, list):
            stack.extend(step for _, step in steps)
        for calibrated in getattr(obj, "calibrated_classifiers_", None) or ():
            stack.append(getattr(calibrated, "estimator", None))
        for attr in ("estimator", "base_estimator", "estimator_"):
            inner = getattr(obj, attr, None)
            if inner is not None and not isinstance(inner, str):
                stack.append(inner)


def fix_float32_thresholds(hgb: Any) -> int:
    """Move every split threshold that rounds up in float32 to the float32 below; in place.

    For a float32 input ``x``, ``x <= t`` (scikit-learn, in float64) holds exactly when
    ``x <= t'`` for ``t'`` the largest float32 not above ``t``; so after the fix
    scikit-learn's predictions on float32 data are unchanged, and ONNX (which stores
    thresholds as float32) takes the same branch. Returns the number of thresholds moved.
    Idempotent. Raises :class:`LabError` for an unfitted model.
    """
    if not _is_hgb(hgb):
        raise LabError(
            f"fix_float32_thresholds: expected a HistGradientBoostingClassifier, "
            f"found {type(hgb).__name__}",
            code="export_unsupported",
        )
    predictors = getattr(hgb, "_predictors", None)
    if predictors is None:
        raise LabError(
            "fix_float32_thresholds: expected a fitted HistGradientBoostingClassifier, "
            "found an unfitted one",
            code="export_unfitted",
        )
    moved = 0
    for per_iteration in predictors:
        for predictor in per_iteration:
            nodes = predictor.nodes
            split = (nodes["is_leaf"] == 0) & (nodes["is_categorical"] == 0)
            t64 = nodes["num_threshold"]
            t32 = t64.astype(np.float32)
            up = split & np.isfinite(t64) & (t32.astype(np.float64) > t64)
            if up.any():
                below = np.nextafter(t32[up], np.float32(-np.inf)).astype(np.float64)
                t64[up] = below
                nodes["num_threshold"] = t64
                moved += int(up.sum())
    return moved


# --- export --------------------------------------------------------------------------------


def _check_calibration(model: Any) -> None:
    """Refuse calibrations skl2onnx 1.20 converts wrongly or that we never validated.

    Measured: ``CalibratedClassifierCV`` around a *Pipeline* converts without error but
    gives probabilities off by up to 0.5; put the calibration inside the pipeline instead.
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression

    stack: list[Any] = [model]
    while stack:
        obj = stack.pop()
        stack.extend(step for _, step in getattr(obj, "steps", None) or ())
        if not isinstance(obj, CalibratedClassifierCV):
            continue
        if obj.method != "sigmoid":
            raise LabError(
                f"to_onnx: CalibratedClassifierCV: expected method='sigmoid', found {obj.method!r}",
                code="export_unsupported",
            )
        for fold in getattr(obj, "calibrated_classifiers_", None) or ():
            inner = fold.estimator
            if type(inner).__name__ == "FrozenEstimator":
                inner = inner.estimator
            if not (_is_hgb(inner) or isinstance(inner, LogisticRegression)):
                raise LabError(
                    "to_onnx: CalibratedClassifierCV: expected it around a "
                    "HistGradientBoostingClassifier or LogisticRegression (put "
                    f"preprocessing before it in a Pipeline), found {type(inner).__name__}",
                    code="export_unsupported",
                )


def to_onnx(
    model: Any,
    n_features: int,
    *,
    input_name: str = "input",
    target_opset: dict[str, int] | None = None,
    extra_converters: Callable[[], None] | None = None,
) -> bytes:
    """The serialised ONNX model of a fitted classifier, float32 in, zipmap off.

    Supported: HistGradientBoostingClassifier, ``CalibratedClassifierCV(method='sigmoid')``
    around it or LogisticRegression, and Pipelines (imputer + scaler + logistic
    regression, or custom transformers whose module registers a converter: pass its
    ``register_converters`` as ``extra_converters``). Every HistGradientBoosting inside
    gets :func:`fix_float32_thresholds` first (the model is changed in place). Raises
    :class:`LabError` (code ``export_failed``) when skl2onnx cannot convert the model.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    if not isinstance(n_features, int) or isinstance(n_features, bool) or n_features < 1:
        raise LabError(
            f"to_onnx: n_features: expected a positive integer, found {n_features!r}",
            code="export_failed",
        )
    if extra_converters is not None:
        extra_converters()
    _check_calibration(model)
    if _is_hgb(model):
        fix_float32_thresholds(model)  # refuses an unfitted model with a clear message
    for hgb in iter_hist_gradient_boosting(model):
        fix_float32_thresholds(hgb)
    opset = dict(DEFAULT_TARGET_OPSET if target_opset is None else target_opset)
    name = type(model).__name__
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_PROTOBUF_BOOL_WARNING)
            onx = convert_sklearn(
                model,
                initial_types=[(input_name, FloatTensorType([None, n_features]))],
                options={id(model): {"zipmap": False}},
                target_opset=opset,
                name=name,  # else a random UUID: the same model must give the same bytes
            )
    except Exception as exc:  # skl2onnx raises many kinds (MissingShapeCalculator, ...)
        raise LabError(
            f"to_onnx: {name}: expected a model skl2onnx can convert, found "
            f"{type(exc).__name__}: {exc}",
            code="export_failed",
        ) from None
    outputs = [o.name for o in onx.graph.output]
    if outputs != list(OUTPUT_NAMES):
        raise LabError(
            f"to_onnx: {name}: expected outputs {list(OUTPUT_NAMES)}, found {outputs}",
            code="export_failed",
        )
    data: bytes = onx.SerializeToString()
    return data


# --- parity --------------------------------------------------------------------------------


def _as_float32_rows(X: Any, where: str) -> npt.NDArray[np.float32]:
    arr = np.asarray(X)
    if arr.dtype != np.float32 or arr.ndim != 2:
        raise LabError(
            f"{where}: expected a 2-D float32 array of rows, found {arr.dtype} with shape "
            f"{list(arr.shape)}",
            code="parity_input",
        )
    return np.ascontiguousarray(arr)


def _onnx_outputs(
    onnx_bytes: bytes, X: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    label, proba = session.run(list(OUTPUT_NAMES), {input_name: X})
    return np.asarray(label), np.asarray(proba, dtype=np.float64)


def check_parity(
    model: Any,
    onnx_bytes: bytes,
    X_float32: Any,
    *,
    cutoffs: CategoryCutoffs | None = None,
    tolerance: float = PARITY_TOLERANCE,
) -> ParityReport:
    """Compare onnxruntime with scikit-learn on held-out float32 rows.

    Passes when the max absolute probability difference is at most ``tolerance`` and no
    row flips: with ``cutoffs``, no row's category differs; without, no row's label.
    A model that onnxruntime cannot run fails (max diff 1.0) rather than raising.
    """
    X = _as_float32_rows(X_float32, "check_parity")
    expected = np.asarray(model.predict_proba(X), dtype=np.float64)
    n = int(X.shape[0])
    try:
        label, got = _onnx_outputs(onnx_bytes, X)
    except Exception:  # a broken model: fail the check, do not crash the release
        return ParityReport(1.0, n, n, False, tolerance)
    if got.shape != expected.shape:
        return ParityReport(1.0, n, n, False, tolerance)
    diff = np.abs(got - expected)
    both_nan = np.isnan(got) & np.isnan(expected)
    diff = np.where(both_nan, 0.0, np.where(np.isfinite(diff), diff, 1.0))
    max_diff = float(diff.max()) if diff.size else 0.0
    if cutoffs is not None:
        flips = sum(
            cutoffs.category(float(a)) != cutoffs.category(float(b))
            for a, b in zip(expected[:, 1], got[:, 1], strict=True)
        )
    else:
        flips = int(np.count_nonzero(label.astype(np.int64) != model.predict(X).astype(np.int64)))
    flips = int(flips)
    return ParityReport(
        max_abs_diff=max_diff,
        n_rows=n,
        category_flips=flips,
        passed=bool(max_diff <= tolerance and flips == 0),
        tolerance=tolerance,
    )


def require_parity(
    model: Any,
    onnx_bytes: bytes,
    X_float32: Any,
    *,
    name: str,
    cutoffs: CategoryCutoffs | None = None,
    tolerance: float = PARITY_TOLERANCE,
) -> ParityReport:
    """:func:`check_parity`, raising :class:`ParityError` naming ``name`` when it fails."""
    report = check_parity(model, onnx_bytes, X_float32, cutoffs=cutoffs, tolerance=tolerance)
    if not report.passed:
        what = "categories" if cutoffs is not None else "labels"
        raise ParityError(
            f"model {name!r}: ONNX parity on {report.n_rows} rows: expected max abs "
            f"difference <= {tolerance:g} and 0 flipped {what}, found "
            f"{report.max_abs_diff:.3g} and {report.category_flips} flipped; release refused"
        )
    return report


def parity_fixture(model: Any, X: Any, n: int = 256) -> dict[str, Any]:
    """The first ``n`` rows of ``X`` (as float32) and the model's class-1 probabilities.

    JSON-ready (missing values are ``None``), stored in the bundle so that the agency can
    re-run it on the gated model (``sample_protocol.onnx_gate.run_parity_fixture``).
    """
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise LabError(
            f"parity_fixture: expected a 2-D array of rows, found shape {list(arr.shape)}",
            code="parity_input",
        )
    rows = np.ascontiguousarray(arr[:n], dtype=np.float32)
    proba = np.asarray(model.predict_proba(rows), dtype=np.float64)[:, 1]
    inputs = [[None if np.isnan(v) else float(v) for v in row] for row in rows.tolist()]
    return {
        "kind": "ParityFixture",
        "dtype": "float32",
        "n_rows": int(rows.shape[0]),
        "n_features": int(rows.shape[1]),
        "inputs": inputs,
        "expected_probabilities": [float(p) for p in proba],
        "tolerance": PARITY_TOLERANCE,
    }
