"""What ``nce-lab train`` writes and ``release`` / ``card`` read: the trained round.

:class:`TrainedRound` is ``LAB/rounds/<id>/models/evaluation.json``: per model its files,
cut-offs, score scale, held-out evaluation and parity report, plus the round's seed, split,
training-table hash and library versions. :func:`load_trained_round` reads it back;
:func:`read_training_table` reads a round's training table (refusing an unknown request
or a missing table). Split out of :mod:`nce_model_lab.release` so that the quality gates
and the model card can use the records without importing the trainer.
"""

from __future__ import annotations

import datetime as dt
import io
import os
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sample_protocol.records import CategoryCutoffs
from sample_protocol.scores import CutoffRule, ScoreScale
from sample_protocol.serde import Record

from .errors import LabError
from .evaluate import Evaluation
from .labdir import LabDir
from .onnx_export import ParityReport

__all__ = [
    "EVALUATION_FILE",
    "LIBRARIES",
    "MIN_TRAINING_ROWS",
    "MODELS_DIR",
    "TrainedModel",
    "TrainedRound",
    "library_versions",
    "load_trained_round",
    "models_dir",
    "read_training_table",
    "require_request",
]

#: Directory of a round's trained models, inside ``LAB/rounds/<id>/``.
MODELS_DIR = "models"
#: The :class:`TrainedRound` file inside the models directory.
EVALUATION_FILE = "evaluation.json"
#: Distributions whose versions a release records (``library:<name>`` in ``training``).
LIBRARIES = ("numpy", "onnx", "onnxruntime", "scikit-learn", "skl2onnx")
#: Fewest rows a training table may have.
MIN_TRAINING_ROWS = 100


@dataclass(frozen=True, slots=True)
class TrainedModel(Record):
    """One trained model of a round: its files (in the models directory) and its quality.

    ``source`` is ``None`` for a combiner; ``input_names`` are the ONNX input columns, in
    order; ``cutoffs`` and ``scale`` were fitted on its validation probabilities.
    """

    name: str
    source: str | None
    index: str
    family: str
    file: str
    sha256: str
    features_file: str
    parity_file: str
    input_names: tuple[str, ...]
    cutoffs: CategoryCutoffs
    scale: ScoreScale
    evaluation: Evaluation
    parity: ParityReport


@dataclass(frozen=True, slots=True)
class TrainedRound(Record):
    """What ``train_round`` wrote to ``evaluation.json``: everything a release needs."""

    request_id: str
    seed: int
    trained_at: dt.datetime
    training_sha256: str
    split: dict[str, int]
    cutoff_rule: CutoffRule
    libraries: dict[str, str]
    models: tuple[TrainedModel, ...]
    skipped: dict[str, str] = field(default_factory=dict)

    def model(self, name: str) -> TrainedModel:
        """The model called ``name`` (``KeyError`` if none)."""
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)


def library_versions() -> dict[str, str]:
    """Installed versions of :data:`LIBRARIES`."""
    out: dict[str, str] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def models_dir(lab: LabDir, request_id: str) -> Path:
    """``LAB/rounds/<request_id>/models``."""
    return lab.round_dir(request_id) / MODELS_DIR


def require_request(lab: LabDir, request_id: str) -> None:
    """Refuse (``unknown_request``) a request id the lab never sent."""
    if request_id not in lab.read_registry().requests:
        raise LabError(
            f"lab {lab.root}: expected a request the lab sent, found no request "
            f"{request_id!r} in {lab.registry_path}",
            code="unknown_request",
        )


def read_training_table(lab: LabDir, request_id: str) -> tuple[bytes, pa.Table]:
    """The bytes and table of ``LAB/rounds/<id>/training.parquet``.

    Refuses an unknown request, a missing table (``no_training_table``) and one with fewer
    than :data:`MIN_TRAINING_ROWS` rows (``training_table_too_small``).
    """
    require_request(lab, request_id)
    path = lab.training_path(request_id)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LabError(
            f"request {request_id}: expected a training table {path}, found none "
            "(ingest the bodies' samples first: nce-lab sample ingest)",
            code="no_training_table",
        ) from None
    table = pq.read_table(io.BytesIO(data))
    if table.num_rows < MIN_TRAINING_ROWS:
        raise LabError(
            f"training table {path}: expected at least {MIN_TRAINING_ROWS} rows, "
            f"found {table.num_rows}",
            code="training_table_too_small",
        )
    return data, table


def load_trained_round(lab_dir: str | os.PathLike[str], request_id: str) -> TrainedRound:
    """The :class:`TrainedRound` of ``request_id`` (``LabError`` ``not_trained`` if none)."""
    lab = LabDir(lab_dir)
    require_request(lab, request_id)
    path = models_dir(lab, request_id) / EVALUATION_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LabError(
            f"request {request_id}: expected trained models in {path.parent}, found none "
            "(run nce-lab train first)",
            code="not_trained",
        ) from None
    return TrainedRound.from_json(data, where=str(path))
