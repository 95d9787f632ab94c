"""Train a sample round and ship it as signed release bundles (issue 6).

:func:`train_round` reads ``LAB/rounds/<id>/training.parquet``, splits it (seeded) into
training (60%), validation (20%) and test (20%) rows, runs
:func:`~nce_model_lab.training.train_federated` on the training rows, and for each model
(every preliminary model and every combiner):

* derives the category cut-offs (:func:`~sample_protocol.scores.derive_cutoffs`) and the
  score scale (:func:`~sample_protocol.scores.fit_scale`) from its validation
  probabilities;
* evaluates it on the test rows (:func:`~nce_model_lab.evaluate.evaluate`; PSI against
  its training-row scores);
* exports it to ONNX and refuses the round unless onnxruntime reproduces it on the test
  rows (:func:`~nce_model_lab.onnx_export.require_parity`, :class:`ParityError`).

Preliminary models are evaluated on the rows present in their source only. Everything
``release`` needs is then written, atomically as one directory, to
``LAB/rounds/<id>/models/`` (no pickle)::

    <SOURCE>.<index>.onnx, combiner.<index>.onnx    the models
    <name>.features.json                             FeatureSpec of the model (a
                                                     combiner's: its direct sources)
    <name>.parity.json                               parity fixture (256 test rows)
    evaluation.json                                  TrainedRound: per model family,
                                                     input names, cut-offs, scale,
                                                     evaluation, parity; seeds, hashes

:func:`release_round` turns that directory into one signed bundle per preliminary
source (audience: the source code) and one for the register (audience ``REGISTER``: the
combiners), written under ``OUT/<release_id>/<AUDIENCE>/``, and records the release in
the lab registry. Each bundle holds ``models/<name>.onnx``, ``models/<name>.features.json``
and ``parity.json``; its manifest carries the cut-offs and, in ``training``, the training
table's SHA-256, the seed, library versions, the cut-off rule, the scale per index and
the quality gates. Before writing anything it checks every model against the quality
gates (:mod:`nce_model_lab.quality`) and refuses the release (:class:`QualityRefused`,
exit 3) unless ``force`` gives a reason, which every affected manifest records in
``quality_overrides`` and the audit log records too. Each bundle carries its model card
(``model_card.html``, :mod:`nce_model_lab.card`; only the bundle's own models), listed
in the manifest and so signed.

Example::

    trained = train_round("LAB", "req-20260302-...", seed=0)
    bundles = release_round("LAB", "req-20260302-...", lab_key=key, trust=root, out_dir="out")
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from sample_protocol import _atomic
from sample_protocol.bundle import build_manifest_files, build_parity_fixture, write_bundle
from sample_protocol.errors import ValidationError
from sample_protocol.keys import SecretKey
from sample_protocol.records import (
    REGISTER_AUDIENCE,
    CategoryCutoffs,
    ModelEntry,
    ReleaseManifest,
    SampleManifest,
    new_record_id,
    sha256_bytes,
)
from sample_protocol.scores import CutoffRule, derive_cutoffs, fit_scale
from sample_protocol.serde import canonical_json
from sample_protocol.trust import Role, TrustRoot

from .card import MODEL_CARD_FILE, ReleaseInfo, render_card
from .errors import LabError
from .evaluate import evaluate
from .labdir import LabDir
from .onnx_export import DEFAULT_TARGET_OPSET, OUTPUT_NAMES, parity_fixture, require_parity
from .quality import (
    DEFAULT_GATES,
    QualityGates,
    QualityRefused,
    check_reason,
    gate_release,
    override_notes,
    shorten,
)
from .reference import bundle_reference_files, reference_bytes, reference_file_name
from .trained import (
    EVALUATION_FILE,
    LIBRARIES,
    MODELS_DIR,
    TrainedModel,
    TrainedRound,
    library_versions,
    load_trained_round,
    read_training_table,
)
from .trained import models_dir as _models_dir
from .training.combiner import train_federated
from .training.features import outcome
from .training.preliminary import present_rows
from .training.selection import threads

__all__ = [
    "EVALUATION_FILE",
    "LIBRARIES",
    "MODELS_DIR",
    "QualityGates",
    "QualityRefused",
    "TrainedModel",
    "TrainedRound",
    "library_versions",
    "load_trained_round",
    "next_sequence",
    "release_round",
    "train_round",
    "with_margin",
]

_SHARES = (0.6, 0.2)  # training, validation; the rest is the test split
_FIXTURE_ROWS = 256
_RELEASE_ID_RE = re.compile(r"rel([0-9]+)-")

Floats = npt.NDArray[np.float64]
Matrix = npt.NDArray[np.float32]


def _split(table: pa.Table, seed: int) -> tuple[pa.Table, pa.Table, pa.Table]:
    n = table.num_rows
    perm = np.random.default_rng(seed).permutation(n)
    n_train, n_val = int(n * _SHARES[0]), int(n * _SHARES[1])
    parts = (perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :])
    train, val, test = (table.take(pa.array(np.sort(p))) for p in parts)
    return train, val, test


def _proba(model: Any, X: Matrix) -> Floats:
    with threads(1):
        return np.asarray(model.predict_proba(X)[:, 1], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class _Candidate:
    name: str
    source: str | None
    index: str
    family: str
    model: Any
    input_names: tuple[str, ...]
    features_json: str
    onnx: bytes
    X: tuple[Matrix, Matrix, Matrix]  # train, validation, test
    y_test: npt.NDArray[np.int8]


def _finish(c: _Candidate, rule: CutoffRule, files: dict[str, bytes]) -> TrainedModel:
    X_train, X_val, X_test = c.X
    y_test = c.y_test
    p_val = _proba(c.model, X_val)
    p_train = _proba(c.model, X_train)
    cutoffs = with_margin(derive_cutoffs(c.index, p_val, rule), p_val)
    scale = fit_scale(p_val)
    evaluation = evaluate(
        y_test,
        _proba(c.model, X_test),
        cutoffs=cutoffs,
        p_reference=p_train,
        scale=scale,
    )
    parity = require_parity(c.model, c.onnx, X_test, name=c.name, cutoffs=cutoffs)
    fixture = parity_fixture(c.model, X_test, n=_FIXTURE_ROWS)
    files[f"{c.name}.onnx"] = c.onnx
    files[f"{c.name}.features.json"] = c.features_json.encode()
    files[f"{c.name}.parity.json"] = canonical_json(fixture)
    files[reference_file_name(c.name)] = reference_bytes(c.name, X_train, c.input_names, p_train)
    return TrainedModel(
        name=c.name,
        source=c.source,
        index=c.index,
        family=c.family,
        file=f"{c.name}.onnx",
        sha256=sha256_bytes(c.onnx),
        features_file=f"{c.name}.features.json",
        parity_file=f"{c.name}.parity.json",
        input_names=c.input_names,
        cutoffs=cutoffs,
        scale=scale,
        evaluation=evaluation,
        parity=parity,
    )


def with_margin(cutoffs: CategoryCutoffs, p: Any) -> CategoryCutoffs:
    """Move each cut-off down to the midpoint between it and the next lower value of ``p``.

    :func:`~sample_protocol.scores.derive_cutoffs` puts a cut-off *on* a probability of
    the validation set; a scorecard gives many entities exactly that probability, and a
    last-digit difference between scikit-learn and onnxruntime would then flip their
    category. The midpoint puts every validation row in the same category as before
    while keeping the cut-offs away from the probabilities the model actually outputs.

    >>> import numpy as np
    >>> cut = with_margin(CategoryCutoffs("x", 0.2, 0.4), np.array([0.1, 0.2, 0.4]))
    >>> round(cut.medium_from, 3), round(cut.high_from, 3)
    (0.15, 0.3)
    """
    values = np.unique(np.asarray(p, dtype=np.float64))

    def down(cut: float) -> float:
        below = values[values < cut]
        return cut if below.size == 0 else float((below[-1] + cut) / 2.0)

    out = CategoryCutoffs(
        cutoffs.index, medium_from=down(cutoffs.medium_from), high_from=down(cutoffs.high_from)
    )
    out.validate()
    return out


def _write_models_dir(dest: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into a temporary sibling, then swap it in for ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    old = dest.parent / f".{dest.name}.old"
    try:
        for name in sorted(files):
            _atomic.write_bytes(tmp / name, files[name])
        if old.exists():
            shutil.rmtree(old)
        if dest.exists():
            os.rename(dest, old)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def train_round(
    lab_dir: str | os.PathLike[str],
    request_id: str,
    *,
    seed: int = 0,
    rule: CutoffRule | None = None,
    now: dt.datetime | None = None,
) -> TrainedRound:
    """Train, evaluate, export and parity-check every model of a round; write them.

    Raises :class:`LabError` ``unknown_request`` / ``no_training_table`` for a request
    the lab never sent or without a training table, and
    :class:`~nce_model_lab.onnx_export.ParityError` (nothing written) when an ONNX export
    does not reproduce its model.
    """
    lab = LabDir(lab_dir)
    data, table = read_training_table(lab, request_id)
    rule = rule or CutoffRule()
    train, val, test = _split(table, seed)
    fed = train_federated(train, seed=seed)
    splits = (train, val, test)
    candidates: list[_Candidate] = []
    for (source, index), m in fed.preliminary.models.items():
        rows = [present_rows(t, m.spec) for t in splits]
        X = tuple(m.spec.transform(t)[r] for t, r in zip(splits, rows, strict=True))
        candidates.append(
            _Candidate(
                name=f"{source}.{index}",
                source=source,
                index=index,
                family=m.family,
                model=m.model,
                input_names=m.spec.names,
                features_json=m.spec.to_json(),
                onnx=m.to_onnx(),
                X=(X[0], X[1], X[2]),
                y_test=outcome(test, index)[rows[2]],
            )
        )
    for index, comb in fed.combiners.items():
        Xc = tuple(comb.matrix(t, fed.preliminary_probabilities(t, index)) for t in splits)
        candidates.append(
            _Candidate(
                name=f"combiner.{index}",
                source=None,
                index=index,
                family=comb.selection.family,
                model=comb.model,
                input_names=comb.input_names,
                features_json=comb.direct_spec.to_json(),
                onnx=comb.to_onnx(),
                X=(Xc[0], Xc[1], Xc[2]),
                y_test=outcome(test, index),
            )
        )
    files: dict[str, bytes] = {}
    models = tuple(_finish(c, rule, files) for c in candidates)
    when = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    trained = TrainedRound(
        request_id=request_id,
        seed=seed,
        trained_at=when,
        training_sha256=sha256_bytes(data),
        split={"train": train.num_rows, "validation": val.num_rows, "test": test.num_rows},
        cutoff_rule=rule,
        libraries=library_versions(),
        models=models,
        skipped={f"{s}.{i}": why for (s, i), why in fed.preliminary.skipped.items()},
    )
    files[EVALUATION_FILE] = trained.canonical_bytes() + b"\n"
    _write_models_dir(_models_dir(lab, request_id), files)
    return trained


def next_sequence(lab_dir: str | os.PathLike[str]) -> int:
    """1 + the highest release sequence recorded in the lab registry (1 for the first)."""
    seqs = [
        int(m.group(1))
        for rid in LabDir(lab_dir).read_registry().releases
        if (m := _RELEASE_ID_RE.match(rid))
    ]
    return max(seqs, default=0) + 1


def _read_checked(directory: Path, name: str, sha256: str | None) -> bytes:
    path = directory / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LabError(
            f"trained models {directory}: expected {name}, found none (train again)",
            code="trained_file_missing",
        ) from None
    if sha256 is not None and sha256_bytes(data) != sha256:
        raise LabError(
            f"trained model {path}: expected sha256 {sha256} (recorded at training), found "
            f"{sha256_bytes(data)}; refusing to release a changed model (train again)",
            code="trained_file_changed",
        )
    return data


def _training_notes(
    trained: TrainedRound, models: tuple[TrainedModel, ...], gates: QualityGates
) -> dict[str, str]:
    notes = {
        "request_id": trained.request_id,
        "training_sha256": trained.training_sha256,
        "seed": str(trained.seed),
        "trained_at": trained.trained_at.isoformat(),
        "split": canonical_json(trained.split).decode(),
        "cutoff_rule": trained.cutoff_rule.to_json(),
        "quality_gates": gates.to_json(),
    }
    notes.update({f"library:{k}": v for k, v in trained.libraries.items()})
    notes.update({f"scale:{m.index}": m.scale.to_json() for m in models})
    return notes


def _generalisation_notes(
    lab: LabDir, request_id: str, models: Sequence[TrainedModel]
) -> dict[str, str]:
    """``generalisation:<SOURCE>``: how the sample's quasi-identifiers were generalised
    (field -> level, from the body's depersonalisation report), so that the body encodes
    its raw population exactly as the training sample was (``agency-runtime score``)."""
    notes: dict[str, str] = {}
    for source in sorted({m.source for m in models if m.source is not None}):
        path = lab.manifest_path(request_id, source)
        if not path.is_file():
            continue
        manifest = SampleManifest.from_json(path.read_text(encoding="utf-8"), where=str(path))
        notes[f"generalisation:{source}"] = canonical_json(manifest.report.generalised).decode()
    return notes


def _bundle_model_files(models_dir: Path, models: Sequence[TrainedModel]) -> dict[str, bytes]:
    """The files of one bundle that come from the trained models directory.

    ``models/<name>.onnx`` (its sha256 checked against training), ``models/<name>.features.json``
    and the bundle's ``parity.json`` (every model's fixture). Every file returned is listed
    in the manifest and so signed: add further per-model files here.
    """
    files: dict[str, bytes] = {}
    fixtures: dict[str, Any] = {}
    for m in models:
        files[f"models/{m.file}"] = _read_checked(models_dir, m.file, m.sha256)
        files[f"models/{m.features_file}"] = _read_checked(models_dir, m.features_file, None)
        fixture = _read_checked(models_dir, m.parity_file, None)
        fixtures[m.name] = _json_object(fixture, models_dir / m.parity_file)
    files.update(bundle_reference_files(models_dir, models))
    files["parity.json"] = build_parity_fixture(fixtures)
    return files


def release_round(
    lab_dir: str | os.PathLike[str],
    request_id: str,
    *,
    lab_key: SecretKey,
    trust: TrustRoot,
    out_dir: str | os.PathLike[str],
    sequence: int | None = None,
    valid_days: int = 365,
    gates: QualityGates = DEFAULT_GATES,
    force: str | None = None,
    now: dt.datetime | None = None,
) -> list[Path]:
    """Write the signed bundles of a trained round; return their directories.

    One bundle per preliminary source (audience = the source code) and one for the
    register (:data:`REGISTER_AUDIENCE`), all under ``out_dir/<release_id>/``, with the
    same release id and ``sequence`` (default: :func:`next_sequence`). Each bundle holds
    its model card (``model_card.html``). The release is recorded in the lab registry and
    audit log. Refuses (``LabError``) a round not trained, a training table changed since
    training (``trained_round_stale``), a model file changed since training, a key that
    is not a lab's in ``trust``, and (:class:`QualityRefused`, nothing written) a round
    with a model failing ``gates`` unless ``force`` gives the reason to release anyway:
    the manifests of the bundles holding the failing models then list each overridden
    gate in ``quality_overrides``, and the audit log records the override.
    """
    lab = LabDir(lab_dir)
    trained = load_trained_round(lab.root, request_id)
    data, _ = read_training_table(lab, request_id)
    if sha256_bytes(data) != trained.training_sha256:
        raise LabError(
            f"request {request_id}: training table {lab.training_path(request_id)} has sha256 "
            f"{sha256_bytes(data)}, expected {trained.training_sha256} (the one trained on); "
            "train again before releasing",
            code="trained_round_stale",
        )
    if valid_days < 1:
        raise LabError(
            f"release: valid_days: expected at least 1, found {valid_days}", code="bad_option"
        )
    seq = next_sequence(lab.root) if sequence is None else sequence
    if seq < 1:
        raise LabError(f"release: sequence: expected at least 1, found {seq}", code="bad_option")
    reason = None if force is None else check_reason(force)
    lab_party = trust.require_signer(lab_key.key_id, roles={Role.LAB})
    failures = gate_release(lab, lab_party.name, trained, gates, force=reason)
    created = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    release_id = new_record_id(f"rel{seq}", now=created)
    models_dir = _models_dir(lab, request_id)
    audiences = sorted({m.source for m in trained.models if m.source is not None})
    groups: list[tuple[str, tuple[TrainedModel, ...]]] = [
        (a, tuple(m for m in trained.models if m.source == a)) for a in audiences
    ]
    groups.append((REGISTER_AUDIENCE, tuple(m for m in trained.models if m.source is None)))
    out = Path(out_dir)
    final = out / release_id
    out.mkdir(parents=True, exist_ok=True)
    overridden: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix=f".{release_id}.", suffix=".part", dir=out))
    try:
        for audience, models in groups:
            names = {m.name for m in models}
            failed = [f for f in failures if f.model in names]
            overrides = override_notes(failed, reason) if reason is not None else ()
            overridden.extend(overrides)
            info = ReleaseInfo(
                release_id=release_id,
                sequence=seq,
                audiences=(audience,),
                created_at=created,
                expires_at=created + dt.timedelta(days=valid_days),
                lab=lab_party.name,
            )
            files = _bundle_model_files(models_dir, models)
            card = render_card(
                trained, models=models, gates=gates, overrides=overrides, release=info
            )
            files[MODEL_CARD_FILE] = card.encode("utf-8")
            manifest = ReleaseManifest(
                release_id=release_id,
                sequence=seq,
                audience=audience,
                created_at=created,
                expires_at=info.expires_at,
                lab=lab_party.name,
                models=tuple(_entry(m) for m in models),
                cutoffs=tuple(m.cutoffs for m in models),
                files=build_manifest_files(files),
                parity_fixture="parity.json",
                model_card=MODEL_CARD_FILE,
                training={
                    **_training_notes(trained, models, gates),
                    **_generalisation_notes(lab, trained.request_id, models),
                },
                quality_overrides=overrides,
            )
            write_bundle(tmp / audience, manifest, files, lab_key)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    lab.record_release(release_id, created.date())
    audit = lab.audit(lab_party.name)
    audit.append(
        "release_written",
        release_id,
        details={
            "request_id": request_id,
            "sequence": seq,
            "audiences": ",".join(a for a, _ in groups),
            "directory": str(final),
            "quality_gates": gates.to_json(),
            "quality_overrides": len(overridden),
        },
    )
    if overridden:
        audit.append(
            "quality_gates_overridden",
            release_id,
            details={
                "request_id": request_id,
                "reason": reason or "",
                "overrides": shorten("; ".join(overridden)),
                "count": len(overridden),
            },
        )
    return [final / audience for audience, _ in groups]


def _entry(m: TrainedModel) -> ModelEntry:
    return ModelEntry(
        name=m.name,
        source=m.source,
        index=m.index,
        file=f"models/{m.file}",
        sha256=m.sha256,
        input_names=m.input_names,
        input_types=("float32",) * len(m.input_names),
        output_names=OUTPUT_NAMES,
        opset=dict(DEFAULT_TARGET_OPSET),
    )


def _json_object(data: bytes, path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise ValidationError(f"{path}: expected JSON, found invalid text ({exc})") from None
    if not isinstance(obj, dict):
        raise ValidationError(f"{path}: expected a JSON object, found {type(obj).__name__}")
    return obj
