"""Train on any table with a binary target and ship a signed release bundle (issue 6).

:func:`train_table` is the generic path behind ``nce-lab train-table``: a CSV or Parquet
table with one row per entity, an id column, a 0/1 (or two-label) target and any mix of
numeric, true/false, date and text columns with missing values. It

1. reads and checks the table (:mod:`._generic_input`: the id is unique and never a
   feature, the target is binary, every other column becomes a feature with the same
   encodings as a catalogue source, :class:`~sample_protocol.features.FeatureSpec`);
2. **cross-validates** the whole modelling step on :data:`CV_FOLDS` stratified folds:
   in each, the family is chosen on the training folds only
   (:func:`~nce_model_lab.training.selection.select_family`) and fitted with sigmoid
   calibration (:func:`~nce_model_lab.training.selection.fit_calibrated`), then scores
   the held-out fold. Every row so gets an out-of-fold probability, on which the
   evaluation (AUC per fold and overall, ECE, KS, Brier, category rates), the category
   cut-offs (:func:`~sample_protocol.scores.derive_cutoffs`) and the 1-99 scale
   (:func:`~sample_protocol.scores.fit_scale`) are computed;
3. fits the released model the same way on every row, exports it to ONNX and refuses to
   go on unless onnxruntime reproduces it (:func:`~nce_model_lab.onnx_export.require_parity`);
4. writes one signed bundle (:func:`~sample_protocol.bundle.write_bundle`) of the same
   kind as ``nce-lab release`` writes for a body: ``models/<SOURCE>.<index>.onnx``, its
   ``.features.json``, its ``.reference.json`` (input and score distributions on the
   training rows, for ``agency-runtime monitor``) and ``parity.json``. No model card and
   no quality gates yet: those are built for a round's records.

**Whose bundle.** A bundle is addressed to one body: its audience is the catalogue source
code ``source`` (default :data:`DEFAULT_SOURCE`, the tax body, which holds the financial
statements a credit or bankruptcy table resembles), and its one model scores the index
``index`` (default :data:`DEFAULT_INDEX`: a default or bankruptcy target is what financial
stability estimates). Every feature belongs to that source: column ``x`` (or
``<SOURCE>__x``) becomes feature ``<SOURCE>__x``; another source's ``CODE__`` columns and
the source's direct identifiers are left out. A body runs the bundle with ``agency-runtime
score --source CODE`` on its extract, which the runtime reads by the source's catalogue
contract: so a table whose columns are fields of that contract (a body's own extract plus
an outcome) gives a bundle the runtime scores as it is, and ``outside_contract`` (also in
the manifest's ``training`` notes) lists any feature that is not such a field. The notes
also say the bundle came from ``train-table`` and which file, target and id it used.

**Sequence.** Give ``lab_dir`` to number the release after the lab's previous ones (and
record it there, with an audit entry); otherwise ``sequence`` (default 1). A body refuses
a bundle whose sequence is below the highest it has accepted for the same audience.

Example::

    result = train_table("credit.csv", target="default", id_column="loan_id",
                         lab_key=load_secret_key("nce-lab.key"), out_dir="bundle")
    result.cv_auc_mean, result.evaluation.ece
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.model_selection import StratifiedKFold

from sample_protocol.bundle import (
    build_manifest_files,
    build_parity_fixture,
    check_out_dir,
    write_bundle,
)
from sample_protocol.catalogue import get_source, index_ids
from sample_protocol.errors import CatalogueError
from sample_protocol.keys import SecretKey
from sample_protocol.records import (
    CategoryCutoffs,
    ModelEntry,
    ReleaseManifest,
    new_record_id,
    sha256_bytes,
)
from sample_protocol.scores import CutoffRule, ScoreScale, derive_cutoffs, fit_scale
from sample_protocol.serde import Record, canonical_json
from sample_protocol.trust import Role, TrustRoot

from ._generic_input import PreparedTable, prepare_table, read_table
from .errors import LabError
from .evaluate import Evaluation, auc, evaluate
from .labdir import LabDir
from .onnx_export import (
    DEFAULT_TARGET_OPSET,
    OUTPUT_NAMES,
    ParityReport,
    parity_fixture,
    require_parity,
    to_onnx,
)
from .reference import reference_bytes, reference_file_name
from .release import next_sequence, with_margin
from .scorecard import register_converters
from .trained import library_versions
from .training.selection import Selection, fit_calibrated, select_family, threads

__all__ = [
    "CV_FOLDS",
    "DEFAULT_INDEX",
    "DEFAULT_SOURCE",
    "TableFit",
    "TableTraining",
    "cv_splits",
    "fit_table",
    "train_table",
]

#: Folds of the cross-validation.
CV_FOLDS = 5
#: Index a table's model scores unless told otherwise (a default or bankruptcy target).
DEFAULT_INDEX = "financial_stability"
#: The body whose bundle it is unless told otherwise.
DEFAULT_SOURCE = "TAX"

_PARITY_ROWS = 20_000
_FIXTURE_ROWS = 256

Floats = npt.NDArray[np.float64]


def cv_splits(
    y: npt.NDArray[np.int8], seed: int, folds: int = CV_FOLDS
) -> list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]]:
    """The (training rows, held-out rows) of each cross-validation fold (stratified, seeded)."""
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return list(cv.split(np.zeros((y.shape[0], 1)), y))


def _proba(model: Any, X: npt.NDArray[np.float32]) -> Floats:
    with threads(1):
        return np.asarray(model.predict_proba(X)[:, 1], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class TableFit:
    """The released model of a table and its cross-validation.

    ``oof`` is each row's probability from the fold model that did not see it;
    ``fold_families`` the family each fold chose.
    """

    model: Any
    selection: Selection
    oof: Floats
    fold_auc: tuple[float, ...]
    fold_families: tuple[str, ...]

    @property
    def family(self) -> str:
        return self.selection.family


def fit_table(
    X: npt.NDArray[np.float32],
    y: npt.NDArray[np.int8],
    *,
    seed: int = 0,
    folds: int = CV_FOLDS,
    n_threads: int = 1,
    where: str = "table",
) -> TableFit:
    """Cross-validate family choice + calibrated fit, then fit it on every row."""
    oof = np.empty(y.shape[0], dtype=np.float64)
    fold_auc: list[float] = []
    families: list[str] = []
    with threads(n_threads):
        for k, (train, held_out) in enumerate(cv_splits(y, seed, folds)):
            at = f"{where} (cross-validation fold {k + 1})"
            chosen = select_family(X[train], y[train], seed=seed, where=at)
            fit = fit_calibrated(chosen.family, X[train], y[train], seed=seed, where=at)
            oof[held_out] = _proba(fit.model, X[held_out])
            fold_auc.append(round(auc(y[held_out], oof[held_out]), 6))
            families.append(chosen.family)
        selection = select_family(X, y, seed=seed, where=where)
        final = fit_calibrated(selection.family, X, y, seed=seed, where=where)
    return TableFit(
        model=final.model,
        selection=selection,
        oof=oof,
        fold_auc=tuple(fold_auc),
        fold_families=tuple(families),
    )


@dataclass(frozen=True, slots=True)
class TableTraining(Record):
    """What :func:`train_table` did: the data, the cross-validation, the bundle.

    ``evaluation`` is computed on the out-of-fold probabilities (PSI: against the
    released model's scores of the same rows); ``dropped`` names each column that is no
    feature and why; ``outside_contract`` the features that are not fields of the
    source's catalogue contract (the agency runtime reads a body's extract by that
    contract, so it can feed only contract fields).
    """

    table: str
    table_sha256: str
    target: str
    positive: str
    id_column: str
    source: str
    index: str
    seed: int
    n_rows: int
    n_events: int
    features: tuple[str, ...]
    dropped: dict[str, str]
    outside_contract: tuple[str, ...]
    selection: Selection
    cv_folds: int
    cv_auc: tuple[float, ...]
    cv_auc_mean: float
    cv_families: tuple[str, ...]
    evaluation: Evaluation
    cutoffs: CategoryCutoffs
    scale: ScoreScale
    parity: ParityReport
    release_id: str
    sequence: int
    bundle: str

    @property
    def family(self) -> str:
        return self.selection.family


def _check_options(index: str, source: str, valid_days: int, sequence: int | None) -> None:
    if index not in index_ids():
        raise LabError(
            f"--index: expected one of {', '.join(index_ids())}, found {index!r}",
            code="bad_option",
        )
    try:
        get_source(source)
    except CatalogueError:
        raise LabError(
            f"--source: expected a source code of the catalogue (the body whose bundle it is, "
            f"like TAX), found {source!r}",
            code="bad_option",
        ) from None
    if valid_days < 1:
        raise LabError(f"--valid-days: expected at least 1, found {valid_days}", code="bad_option")
    if sequence is not None and sequence < 1:
        raise LabError(f"--sequence: expected at least 1, found {sequence}", code="bad_option")


def _notes(
    path: Path, data: bytes, prepared: PreparedTable, fit: TableFit, **extra: str
) -> dict[str, str]:
    notes = {
        "kind": "train-table",
        "table": path.name,
        "table_sha256": sha256_bytes(data),
        "rows": str(prepared.y.shape[0]),
        "events": str(int(prepared.y.sum())),
        "selection": fit.selection.to_json(),
        "cv_folds": str(len(fit.fold_auc)),
        "cv_auc": canonical_json(list(fit.fold_auc)).decode(),
        "dropped_columns": canonical_json(prepared.dropped).decode(),
        "outside_contract": canonical_json(list(prepared.outside_contract)).decode(),
        **extra,
    }
    notes.update({f"library:{k}": v for k, v in library_versions().items()})
    return notes


def train_table(
    path: str | os.PathLike[str],
    *,
    target: str,
    id_column: str,
    lab_key: SecretKey,
    out_dir: str | os.PathLike[str],
    index: str = DEFAULT_INDEX,
    source: str = DEFAULT_SOURCE,
    positive: str | None = None,
    drop: Iterable[str] = (),
    seed: int = 0,
    trust: TrustRoot | None = None,
    lab_dir: str | os.PathLike[str] | None = None,
    sequence: int | None = None,
    valid_days: int = 365,
    rule: CutoffRule | None = None,
    n_threads: int = 1,
    now: dt.datetime | None = None,
) -> TableTraining:
    """Train, cross-validate, export and bundle a model of ``path`` (see the module notes).

    Raises :class:`LabError` for a bad table or option (nothing written), and
    :class:`~nce_model_lab.onnx_export.ParityError` when the export does not reproduce
    the model. With ``trust``, ``lab_key`` must be a lab party's current key
    (:class:`~sample_protocol.errors.TrustError` otherwise).
    """
    _check_options(index, source, valid_days, sequence)
    out = Path(out_dir)
    check_out_dir(out)  # before any training: fail early
    lab_name = (
        trust.require_signer(lab_key.key_id, roles={Role.LAB}).name if trust else lab_key.name
    )
    src = Path(path)
    data, table = read_table(src, id_column=id_column)
    where = f"table {src}"
    prepared = prepare_table(
        table,
        target=target,
        id_column=id_column,
        source=source,
        positive=positive,
        drop=drop,
        where=where,
    )
    X, y = prepared.X, prepared.y
    fit = fit_table(X, y, seed=seed, n_threads=n_threads, where=where)
    p_final = _proba(fit.model, X)
    rule = rule or CutoffRule()
    cutoffs = with_margin(derive_cutoffs(index, fit.oof, rule), p_final)
    scale = fit_scale(fit.oof)
    evaluation = evaluate(y, fit.oof, cutoffs=cutoffs, p_reference=p_final)
    name = f"{source}.{index}"
    extra = register_converters if fit.family == "scorecard" else None
    onnx = to_onnx(fit.model, len(prepared.spec), extra_converters=extra)
    order = np.random.default_rng(seed).permutation(y.shape[0])
    check_rows = X[np.sort(order[:_PARITY_ROWS])]
    parity = require_parity(fit.model, onnx, check_rows, name=name, cutoffs=cutoffs)
    fixture = parity_fixture(fit.model, X[order[:_FIXTURE_ROWS]], n=_FIXTURE_ROWS)
    files = {
        f"models/{name}.onnx": onnx,
        f"models/{name}.features.json": prepared.spec.to_json().encode(),
        f"models/{reference_file_name(name)}": reference_bytes(
            name, X, prepared.spec.names, p_final
        ),
        "parity.json": build_parity_fixture({name: fixture}),
    }
    lab = LabDir(lab_dir) if lab_dir is not None else None
    seq = sequence if sequence is not None else (next_sequence(lab.root) if lab else 1)
    created = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    release_id = new_record_id(f"rel{seq}", now=created)
    entry = ModelEntry(
        name=name,
        source=source,
        index=index,
        file=f"models/{name}.onnx",
        sha256=sha256_bytes(onnx),
        input_names=prepared.spec.names,
        input_types=("float32",) * len(prepared.spec),
        output_names=OUTPUT_NAMES,
        opset=dict(DEFAULT_TARGET_OPSET),
    )
    manifest = ReleaseManifest(
        release_id=release_id,
        sequence=seq,
        audience=source,
        created_at=created,
        expires_at=created + dt.timedelta(days=valid_days),
        lab=lab_name,
        models=(entry,),
        cutoffs=(cutoffs,),
        files=build_manifest_files(files),
        parity_fixture="parity.json",
        model_card=None,
        training=_notes(
            src,
            data,
            prepared,
            fit,
            target=target,
            positive=prepared.positive,
            id_column=id_column,
            seed=str(seed),
            trained_at=created.isoformat(),
            cutoff_rule=rule.to_json(),
            **{f"scale:{index}": scale.to_json()},
        ),
    )
    write_bundle(out, manifest, files, lab_key)
    if lab is not None:
        lab.ensure()
        lab.record_release(release_id, created.date())
        lab.audit(lab_name).append(
            "release_written",
            release_id,
            details={
                "command": "train-table",
                "table": src.name,
                "audience": source,
                "sequence": seq,
                "directory": str(out),
            },
        )
    return TableTraining(
        table=src.name,
        table_sha256=sha256_bytes(data),
        target=target,
        positive=prepared.positive,
        id_column=id_column,
        source=source,
        index=index,
        seed=seed,
        n_rows=int(y.shape[0]),
        n_events=int(y.sum()),
        features=prepared.spec.names,
        dropped=prepared.dropped,
        outside_contract=prepared.outside_contract,
        selection=fit.selection,
        cv_folds=len(fit.fold_auc),
        cv_auc=fit.fold_auc,
        cv_auc_mean=round(float(np.mean(fit.fold_auc)), 6),
        cv_families=fit.fold_families,
        evaluation=evaluation,
        cutoffs=cutoffs,
        scale=scale,
        parity=parity,
        release_id=release_id,
        sequence=seq,
        bundle=str(out),
    )
