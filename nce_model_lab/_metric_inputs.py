"""Input checks shared by the lab's quality measures (:mod:`nce_model_lab.evaluate`).

Bad input (length mismatch, a target that is not 0/1, NaN or a probability outside
[0, 1], a single class where both are needed, nothing at all) raises
:class:`~nce_model_lab.errors.LabError` with a stable ``code`` and a message that says
which argument, what was expected and what was found.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from sample_protocol.errors import ValidationError
from sample_protocol.scores import check_probabilities

from .errors import LabError

__all__ = ["Array", "inputs", "probabilities", "ranks", "target"]

Array = npt.NDArray[np.float64]


def probabilities(p: Any, where: str) -> Array:
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


def target(y: Any, n: int, *, both_classes: bool) -> npt.NDArray[np.int8]:
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


def inputs(y: Any, p: Any, *, both_classes: bool) -> tuple[npt.NDArray[np.int8], Array]:
    prob = probabilities(p, "p")
    return target(y, prob.size, both_classes=both_classes), prob


def ranks(p: Array) -> Array:
    """Ranks 1..n of ``p``, ties given their average rank."""
    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average = ends - (counts - 1) / 2.0
    out: Array = average[inverse].astype(np.float64)
    return out
