"""Population drift of a body's own data against the lab's reference (``agency-runtime monitor``).

:func:`monitor_population` runs, in this order, and stops at the first failure:

1. verify the release bundle for this body's source exactly as ``verify`` does
   (:func:`~agency_runtime.verify.verify_release`: signature, trust, audience, dates,
   hashes, rollback, ONNX gate, parity, feature specs; an accepted sequence is recorded
   and the verification logged as ``release_verified``);
2. read each model's reference (``models/<name>.reference.json``,
   :func:`~sample_protocol.monitoring.reference_file`), re-hashing its bytes against the
   signed manifest; a bundle without a reference, or whose reference does not match its
   model's inputs, is refused (exit 3);
3. stream the input (:func:`~agency_runtime.input_reader.open_population`: Parquet or
   CSV, only the columns the models use, every row checked against the source's contract)
   in batches; each batch is generalised like the training data
   (:func:`~agency_runtime.input_reader.generalise_like_training`), encoded
   (:meth:`~sample_protocol.features.FeatureSpec.transform`), scored by the gated ONNX
   sessions, and added to per-model bin counts
   (:class:`~sample_protocol.monitoring.DriftAccumulator`), so memory does not grow with
   the input (beyond the reader's 8 bytes a row for its duplicate-key check);
4. compute the population stability index of every input column and of every model's
   probability (:class:`~sample_protocol.monitoring.DriftReport`), write the
   :class:`MonitorReport` (aggregates only: PSI, flags, missing shares, row counts)
   atomically to ``out`` if given, and append the run to ``STATE/audit.log`` (action
   :data:`MONITOR_ACTION`).

A refusal or an input error is appended to the audit log too (with its code), and leaves
no report. Exit codes through the CLI: 2 bad input (a missing column, an unreadable or
empty file), 3 refused (the bundle).

Example::

    trust = load_trust_root("trust.json", root_public=root, state_dir="state")
    report = monitor_population("releases/rel7/TAX", "tax.parquet", trust=trust,
                                source="TAX", state_dir="state", out="drift.json")
    report.flag  # DriftFlag.STABLE, WATCH or ACT
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sample_protocol import _atomic
from sample_protocol.errors import ValidationError
from sample_protocol.features import FeatureSpec
from sample_protocol.keys import PublicKey, SecretKey
from sample_protocol.monitoring import (
    ACT,
    WATCH,
    DriftAccumulator,
    DriftFlag,
    DriftReport,
    ReferenceDistribution,
    reference_file,
)
from sample_protocol.records import sha256_bytes, sha256_file
from sample_protocol.records_base import check_aware, safe_join
from sample_protocol.serde import Record
from sample_protocol.trust import Role, TrustRoot

from .errors import RuntimeInputError, RuntimeRefused
from .input_reader import DEFAULT_BATCH_ROWS, generalise_like_training, open_population
from .sample_round import audit_scope
from .verify import ScoringModel, VerifiedRelease, verify_release

__all__ = [
    "MONITOR_ACTION",
    "MonitorReport",
    "monitor_population",
    "source_owner",
]

#: The audit-log action of a monitoring run.
MONITOR_ACTION = "population_monitored"
_MAX_REFERENCE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class MonitorReport(Record):
    """The drift of a body's population for every model of one release (aggregates only).

    ``input_file`` is the input's file name (no directory), ``input_sha256`` its hash;
    ``watch`` and ``act`` the PSI thresholds the flags were set with.
    """

    release_id: str
    sequence: int
    source: str
    input_file: str
    input_sha256: str
    rows: int
    created_at: dt.datetime
    watch: float
    act: float
    models: tuple[DriftReport, ...]

    def validate(self) -> None:
        check_aware("MonitorReport.created_at", self.created_at)
        for report in self.models:
            report.validate()
            if report.rows != self.rows:
                raise ValidationError(
                    f"MonitorReport: model {report.model!r}: expected {self.rows} rows, "
                    f"found {report.rows}",
                    code="bad_drift_report",
                )

    @property
    def flag(self) -> DriftFlag:
        """The worst flag over every model."""
        return max((m.flag for m in self.models), key=lambda f: f.rank, default=DriftFlag.STABLE)


def source_owner(trust: TrustRoot, source: str) -> str:
    """The name of the non-revoked body (or tax body) that owns ``source`` in ``trust``."""
    for party in trust.parties:
        if (
            party.role in (Role.BODY, Role.TAX_BODY)
            and not party.revoked
            and source in party.sources
        ):
            return party.name
    raise RuntimeRefused(
        f"trust root version {trust.version}: expected a non-revoked body owning source "
        f"{source!r}, found none",
        code="source_not_owned",
    )


# --------------------------------------------------------------------------- references


def _reference(release: VerifiedRelease, model: ScoringModel) -> ReferenceDistribution:
    """A model's signed reference, re-hashed as read and checked against the model."""
    bundle = release.bundle
    where = f"release bundle {bundle.directory} (release {release.release_id})"
    name = reference_file(model.name)
    expected = release.manifest.files.get(name)
    if expected is None:
        raise RuntimeRefused(
            f"{where}: model {model.name!r}: expected its drift reference {name} listed in "
            "the signed manifest, found none (a release without references cannot be "
            "monitored; ask the lab for a newer release)",
            code="bundle_no_reference",
        )
    try:
        with open(safe_join(bundle.directory, name), "rb") as fh:
            data = fh.read(_MAX_REFERENCE_BYTES + 1)
    except OSError as exc:
        raise RuntimeRefused(
            f"{where}: cannot read {name} ({exc.strerror})", code="bundle_file_missing"
        ) from None
    if len(data) > _MAX_REFERENCE_BYTES or sha256_bytes(data) != expected:
        raise RuntimeRefused(
            f"{where}: {name}: expected sha256 {expected}, found other content "
            "(changed since it was verified?)",
            code="bundle_file_tampered",
        )
    try:
        ref = ReferenceDistribution.from_json(data, where=f"{where}: {name}")
    except ValidationError as exc:
        raise RuntimeRefused(f"{exc}", code="bundle_bad_reference") from None
    if ref.model != model.name or ref.feature_names != model.features.names:
        raise RuntimeRefused(
            f"{where}: {name}: expected the reference of model {model.name!r} over its "
            f"{len(model.features)} inputs, found model {ref.model!r} over "
            f"{len(ref.feature_names)} columns",
            code="bundle_bad_reference",
        )
    return ref


# --------------------------------------------------------------------------- monitor


def _actor(key: SecretKey | None, actor: str | None, trust: TrustRoot | None, source: str) -> str:
    if key is not None:
        return key.name
    if actor is not None:
        return actor
    if trust is None:
        raise TypeError("monitor_population: with lab_public=, give key= or actor=")
    return source_owner(trust, source)


def monitor_population(
    bundle_dir: str | os.PathLike[str],
    input_path: str | os.PathLike[str],
    *,
    source: str,
    state_dir: str | os.PathLike[str],
    trust: TrustRoot | None = None,
    lab_public: PublicKey | None = None,
    key: SecretKey | None = None,
    actor: str | None = None,
    out: str | os.PathLike[str] | None = None,
    now: dt.datetime | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    progress: Callable[[str], None] | None = None,
) -> MonitorReport:
    """The drift of the population in ``input_path`` for every model of the bundle.

    ``source`` is this body's source code (the bundle's audience). Give exactly one of
    ``trust`` and ``lab_public``, as for ``verify``. The audit log's actor is ``key``'s
    name (the body must then own the source in ``trust``), else ``actor``, else the body
    owning ``source`` in ``trust``. With ``out``, the report's JSON is written there
    atomically. See the module docstring for the steps; raises :class:`RuntimeRefused`
    (or the protocol's ``BundleError`` / ``GateError`` / ``TrustError``, exit 3) and
    :class:`RuntimeInputError` (exit 2).
    """
    say = progress or (lambda _message: None)
    code = source.strip().upper()
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    path = Path(input_path)
    name = _actor(key, actor, trust, code)
    with audit_scope(state, name, MONITOR_ACTION, path.name, {"source": code}) as scope:
        release = verify_release(
            bundle_dir,
            state_dir=state,
            actor=name,
            trust=trust,
            lab_public=lab_public,
            source=code,
            body_key_id=None if key is None else key.key_id,
            now=now,
        )
        scope.details.update(release_id=release.release_id, sequence=release.manifest.sequence)
        say(f"verified release {release.release_id} (sequence {release.manifest.sequence})")
        accumulators = [DriftAccumulator(_reference(release, m)) for m in release.models]
        population = open_population(
            path, release.source, fields=release.fields, batch_size=batch_rows
        )
        rows = 0
        for table in population.batches():
            prepared = generalise_like_training(table, release.generalisation)
            encoded: dict[FeatureSpec, npt.NDArray[np.float32]] = {}  # models may share a spec
            for m, acc in zip(release.models, accumulators, strict=True):
                if (X := encoded.get(m.features)) is None:
                    X = encoded[m.features] = m.features.transform(prepared)
                acc.add(X, m.gated.run(X))
            rows += table.num_rows
        if rows == 0:
            raise RuntimeInputError(
                f"input {path}: expected at least one row, found none", code="empty_input"
            )
        say(f"read {rows:,} rows of {path.name}")
        report = MonitorReport(
            release_id=release.release_id,
            sequence=release.manifest.sequence,
            source=code,
            input_file=path.name,
            input_sha256=sha256_file(path),
            rows=rows,
            created_at=(now or dt.datetime.now(dt.UTC)).replace(microsecond=0),
            watch=WATCH,
            act=ACT,
            models=tuple(acc.report() for acc in accumulators),
        )
        report.validate()
        if out is not None:
            _atomic.write_bytes(out, report.canonical_bytes() + b"\n")
        details: dict[str, object] = {
            **scope.details,
            "rows": rows,
            "input_sha256": report.input_sha256,
            "flag": report.flag.value,
        }
        for drift in report.models:
            details[f"flag:{drift.model}"] = drift.flag.value
            details[f"score_psi:{drift.model}"] = round(drift.score.psi, 6)
            details[f"max_feature_psi:{drift.model}"] = round(drift.max_feature_psi, 6)
        if out is not None:
            details["report"] = str(out)
        scope.log.append(MONITOR_ACTION, path.name, "ok", details)
    return report
