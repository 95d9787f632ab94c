"""Records of the release flow (4) and the preliminary-index batch flow (5).

A release bundle is a directory with ``manifest.json`` (a :class:`ReleaseManifest`),
its ``manifest.json.minisig``, and the files the manifest lists with their SHA-256:
one ONNX model per (source, index) or per combiner, the parity fixture and the model
card. Every path in a manifest is a plain relative path (no ``..``, nothing absolute):
validation refuses anything else with code ``unsafe_path``, so a bundle can never make
a verifier read or write outside its directory. Join paths with
:func:`~sample_protocol.records_base.safe_join`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .records_base import (
    check_aware,
    check_index,
    check_min,
    check_name,
    check_relpath,
    check_sha256,
    check_source,
    check_token,
    check_types,
    check_unique,
    fail,
)
from .serde import Record

__all__ = [
    "BATCH_COLUMNS",
    "MANIFEST_NAME",
    "MODEL_INPUT_TYPES",
    "REGISTER_AUDIENCE",
    "BatchManifest",
    "CategoryCutoffs",
    "ModelEntry",
    "ReleaseManifest",
]

#: The audience of the register's bundle (the combiners); a body's bundle names its source.
REGISTER_AUDIENCE = "REGISTER"
#: File name of a bundle's manifest (its signature is ``manifest.json.minisig``).
MANIFEST_NAME = "manifest.json"
#: Element types a model input may have.
MODEL_INPUT_TYPES = frozenset(
    {"bool", "float16", "float32", "float64", "int8", "int16", "int32", "int64", "string"}
    | {"uint8", "uint16", "uint32", "uint64"}
)
#: The columns of a preliminary-index batch: exactly these leave a body's perimeter.
BATCH_COLUMNS = (
    "bin",
    "source",
    "index",
    "value",
    "category",
    "probability",
    "release_id",
    "as_of",
)

_OPSET_DOMAIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._")


@dataclass(frozen=True, slots=True)
class ModelEntry(Record):
    """One ONNX model of a bundle and its exact input/output contract.

    ``source`` is ``None`` for a combiner. ``input_types[i]`` is the element type of
    input ``input_names[i]`` (see :data:`MODEL_INPUT_TYPES`).
    """

    name: str
    source: str | None
    index: str
    file: str
    sha256: str
    input_names: tuple[str, ...]
    input_types: tuple[str, ...]
    output_names: tuple[str, ...]
    opset: dict[str, int]

    def validate(self) -> None:
        self._check(self.kind())

    def _check(self, where: str) -> None:
        check_types(self, where)
        check_token(f"{where}.name", self.name)
        if self.source is not None:
            check_source(f"{where}.source", self.source)
        check_index(f"{where}.index", self.index)
        check_relpath(f"{where}.file", self.file)
        if not self.file.endswith(".onnx"):
            fail(f"{where}.file", "a file name ending in '.onnx'", self.file)
        check_sha256(f"{where}.sha256", self.sha256)
        for name in ("input_names", "output_names"):
            names: tuple[str, ...] = getattr(self, name)
            if not names:
                fail(f"{where}.{name}", "at least one name", "none")
            for i, item in enumerate(names):
                check_name(f"{where}.{name}[{i}]", item)
            check_unique(f"{where}.{name}", names)
        if len(self.input_types) != len(self.input_names):
            fail(
                f"{where}.input_types",
                f"one type per input ({len(self.input_names)})",
                f"{len(self.input_types)} types",
            )
        for i, dtype in enumerate(self.input_types):
            if dtype not in MODEL_INPUT_TYPES:
                fail(f"{where}.input_types[{i}]", f"one of {sorted(MODEL_INPUT_TYPES)}", dtype)
        if not self.opset:
            fail(f"{where}.opset", "at least the default domain ('')", "none")
        for domain, version in self.opset.items():
            if not set(domain) <= _OPSET_DOMAIN_CHARS:
                fail(f"{where}.opset", "domains like '' or 'ai.onnx.ml'", domain)
            check_min(f"{where}.opset.{domain}", version, 1)


@dataclass(frozen=True, slots=True)
class CategoryCutoffs(Record):
    """Probability cut-offs of one index: ``p >= high_from`` is high, ``p >= medium_from``
    medium, otherwise low.

    >>> CategoryCutoffs("payment_discipline", 0.2, 0.5).category(0.3)
    'medium'
    """

    index: str
    medium_from: float
    high_from: float

    def validate(self) -> None:
        self._check(self.kind())

    def _check(self, where: str) -> None:
        check_types(self, where)
        check_index(f"{where}.index", self.index)
        if not 0.0 < self.medium_from < 1.0:
            fail(f"{where}.medium_from", "a probability strictly between 0 and 1", self.medium_from)
        if not self.medium_from < self.high_from < 1.0:
            fail(
                f"{where}.high_from",
                f"a probability above medium_from ({self.medium_from}) and below 1",
                self.high_from,
            )

    def category(self, probability: float) -> str:
        """``"low"``, ``"medium"`` or ``"high"`` for a probability."""
        if probability >= self.high_from:
            return "high"
        if probability >= self.medium_from:
            return "medium"
        return "low"


@dataclass(frozen=True, slots=True)
class ReleaseManifest(Record):
    """The signed manifest of a release bundle for one audience.

    ``audience`` is a body's source code (the bundle holds only that source's models)
    or :data:`REGISTER_AUDIENCE`. ``sequence`` grows with every release so that a
    verifier can refuse an older one. ``files`` maps every file of the bundle, except
    the manifest and its signature, to its SHA-256. ``training`` records data hashes,
    parameters, library versions and the seed; ``quality_overrides`` lists the quality
    gates the lab chose to override, with reasons.
    """

    release_id: str
    sequence: int
    audience: str
    created_at: dt.datetime
    expires_at: dt.datetime
    lab: str
    models: tuple[ModelEntry, ...]
    cutoffs: tuple[CategoryCutoffs, ...]
    files: dict[str, str]
    parity_fixture: str
    model_card: str | None
    training: dict[str, str]
    quality_overrides: tuple[str, ...] = ()

    def validate(self) -> None:
        where = self.kind()
        check_types(self, where)
        check_token(f"{where}.release_id", self.release_id)
        check_min(f"{where}.sequence", self.sequence, 1)
        check_source(f"{where}.audience", self.audience)
        if self.expires_at <= self.created_at:
            fail(
                f"{where}.expires_at",
                f"a time after created_at {self.created_at.isoformat()}",
                self.expires_at.isoformat(),
            )
        check_name(f"{where}.lab", self.lab)
        self._check_files(where)
        self._check_models(where)
        for key in self.training:
            check_name(f"{where}.training", key)
        for i, reason in enumerate(self.quality_overrides):
            check_name(f"{where}.quality_overrides[{i}]", reason)
        check_unique(f"{where}.quality_overrides", self.quality_overrides)

    def _check_files(self, where: str) -> None:
        for path, digest in self.files.items():
            check_relpath(f"{where}.files", path)
            check_sha256(f"{where}.files.{path}", digest)
            if path in (MANIFEST_NAME, f"{MANIFEST_NAME}.minisig"):
                fail(f"{where}.files", "no entry for the manifest or its signature", path)
        check_relpath(f"{where}.parity_fixture", self.parity_fixture)
        if self.parity_fixture not in self.files:
            fail(f"{where}.parity_fixture", "a file listed in files", self.parity_fixture)
        if self.model_card is not None:
            check_relpath(f"{where}.model_card", self.model_card)
            if self.model_card not in self.files:
                fail(f"{where}.model_card", "a file listed in files", self.model_card)

    def _check_models(self, where: str) -> None:
        if not self.models:
            fail(f"{where}.models", "at least one model", "none")
        for i, model in enumerate(self.models):
            at = f"{where}.models[{i}]"
            model._check(at)
            listed = self.files.get(model.file)
            if listed is None:
                fail(f"{at}.file", "a file listed in files", model.file)
            if listed != model.sha256:
                fail(f"{at}.sha256", f"the SHA-256 listed in files ({listed})", model.sha256)
            if self.audience != REGISTER_AUDIENCE and model.source != self.audience:
                fail(f"{at}.source", f"the audience's source {self.audience!r}", model.source)
        check_unique(f"{where}.models", (m.name for m in self.models))
        check_unique(f"{where}.models", (f"{m.source}/{m.index}" for m in self.models))
        for i, cutoffs in enumerate(self.cutoffs):
            cutoffs._check(f"{where}.cutoffs[{i}]")
        check_unique(f"{where}.cutoffs", (c.index for c in self.cutoffs))
        have = {c.index for c in self.cutoffs}
        for i, model in enumerate(self.models):
            if model.index not in have:
                fail(
                    f"{where}.cutoffs", f"cut-offs for index {model.index!r} (models[{i}])", "none"
                )

    def cutoffs_for(self, index: str) -> CategoryCutoffs:
        """The cut-offs of ``index`` (``KeyError`` when the release has none)."""
        for cutoffs in self.cutoffs:
            if cutoffs.index == index:
                return cutoffs
        raise KeyError(index)

    def is_expired(self, now: dt.datetime) -> bool:
        """True when ``now`` (timezone-aware) is at or after ``expires_at``."""
        return now >= self.expires_at


@dataclass(frozen=True, slots=True)
class BatchManifest(Record):
    """The manifest of a batch of preliminary indexes (Parquet keyed by BIN/IIN).

    ``columns`` must be exactly :data:`BATCH_COLUMNS` (in any order): nothing else
    may leave a body's perimeter. ``sealed`` says whether ``file`` is sealed to the
    register's key.
    """

    batch_id: str
    body: str
    source: str
    release_id: str
    as_of: dt.date
    created_at: dt.datetime
    row_count: int
    file: str
    sha256: str
    columns: tuple[str, ...]
    sealed: bool = False

    def validate(self) -> None:
        where = self.kind()
        check_types(self, where)
        check_token(f"{where}.batch_id", self.batch_id)
        check_name(f"{where}.body", self.body)
        check_source(f"{where}.source", self.source)
        check_token(f"{where}.release_id", self.release_id)
        check_aware(f"{where}.created_at", self.created_at)
        check_min(f"{where}.row_count", self.row_count, 0)
        check_relpath(f"{where}.file", self.file)
        check_sha256(f"{where}.sha256", self.sha256)
        check_unique(f"{where}.columns", self.columns)
        if set(self.columns) != set(BATCH_COLUMNS):
            fail(f"{where}.columns", f"exactly {list(BATCH_COLUMNS)}", list(self.columns))
