"""Reference distributions of trained models, for the bodies' drift monitoring (issue 7).

At training (:func:`~nce_model_lab.release.train_round`) the lab fits, per model, the
distribution of each input column and of the model's probability on its *training* rows
(:func:`sample_protocol.monitoring.fit_reference`: decile bins, missing share) and writes
it next to the model as ``<name>.reference.json`` (:func:`reference_file_name`,
:func:`reference_bytes`). At release, :func:`bundle_reference_files` reads those files
back, checks each one against its model, and gives them their bundle paths
``models/<name>.reference.json``; listed in the manifest, they are signed with it, and
``agency-runtime monitor`` refuses a bundle without them.

Only aggregates are written: bin edges at deciles (midpoints between observed values),
shares and row counts, never a row.

Example::

    files[reference_file_name(name)] = reference_bytes(name, X_train, names, p_train)
    ...
    files.update(bundle_reference_files(models_dir, models))
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy.typing as npt

from sample_protocol.errors import ValidationError
from sample_protocol.monitoring import (
    REFERENCE_SUFFIX,
    ReferenceDistribution,
    fit_reference,
    reference_file,
)

from .errors import LabError

__all__ = ["bundle_reference_files", "reference_bytes", "reference_file_name"]


class _Model(Protocol):
    """What :func:`bundle_reference_files` needs of a trained model (``TrainedModel``)."""

    @property
    def name(self) -> str: ...

    @property
    def input_names(self) -> tuple[str, ...]: ...


def reference_file_name(model_name: str) -> str:
    """``<model name>.reference.json``: the reference's file in a round's models directory.

    >>> reference_file_name("TAX.payment_discipline")
    'TAX.payment_discipline.reference.json'
    """
    return f"{model_name}{REFERENCE_SUFFIX}"


def reference_bytes(
    model_name: str,
    X_train: npt.ArrayLike,
    input_names: Sequence[str],
    p_train: npt.ArrayLike,
) -> bytes:
    """The canonical JSON of a model's reference, fitted on its training rows.

    ``X_train`` is the float32 matrix the model was fitted on (``[n, len(input_names)]``,
    NaN = missing), ``p_train`` the model's class-1 probability on those rows.
    """
    try:
        ref = fit_reference(model_name, X_train, input_names, p_train)
    except ValidationError as exc:
        raise LabError(
            f"model {model_name}: cannot fit its reference distribution: {exc}",
            code="bad_reference",
        ) from None
    return ref.canonical_bytes() + b"\n"


def bundle_reference_files(
    models_dir: str | os.PathLike[str], models: Iterable[_Model]
) -> dict[str, bytes]:
    """Each model's reference file, keyed by its bundle path ``models/<name>.reference.json``.

    Refuses (:class:`LabError`) a missing reference (``trained_file_missing``: the round
    was trained before references existed, train again) and one that does not parse or
    names another model or other input columns (``trained_file_changed``).
    """
    directory = Path(models_dir)
    out: dict[str, bytes] = {}
    for m in models:
        path = directory / reference_file_name(m.name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise LabError(
                f"trained models {directory}: expected {path.name}, found none (train again)",
                code="trained_file_missing",
            ) from None
        try:
            ref = ReferenceDistribution.from_json(data, where=str(path))
        except ValidationError as exc:
            raise LabError(
                f"reference {path}: {exc}; train again", code="trained_file_changed"
            ) from None
        if ref.model != m.name or ref.feature_names != tuple(m.input_names):
            raise LabError(
                f"reference {path}: expected model {m.name!r} with inputs "
                f"{list(m.input_names)[:5]}..., found model {ref.model!r} with inputs "
                f"{list(ref.feature_names)[:5]}...; train again",
                code="trained_file_changed",
            )
        out[reference_file(m.name)] = data
    return out
