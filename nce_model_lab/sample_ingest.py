"""Step 4 of a sample round: the lab opens, checks and stores the bodies' samples.

:func:`ingest_samples` takes sample envelopes (``<request_id>.<SOURCE>.sample``, sealed
to the lab, signed by a body, payload = Parquet keyed by ``rid``, ``meta["manifest"]`` =
the :class:`~sample_protocol.records.SampleManifest`) and, for each file on its own,
either accepts it whole or refuses it whole. Checks, in order (refusal code in brackets;
envelope and trust codes come from :mod:`sample_protocol`):

1. the envelope opens with the lab key: sealed to the lab (``envelope_wrong_recipient``),
   intact (``envelope_tampered``), signed by a key of the trust root
   (``envelope_unknown_sender``, ``envelope_bad_signature``), a ``sample``;
2. the signer is a current, non-revoked body key (``trust_revoked``,
   ``trust_key_rotated``, ``trust_wrong_role``) that owns the sample's source
   (``trust_wrong_source``), and the manifest is valid and names that body
   (``sample_bad_manifest``, ``sample_manifest_mismatch``);
3. neither the sample id nor the envelope id was accepted before (``sample_replayed``);
4. the request is one the lab sent, its signed copy verifies (``sample_unknown_request``),
   it asked for this source (``sample_source_not_requested``) from this body
   (``sample_not_a_recipient``), no sample of the source was accepted for it yet
   (``sample_source_already_received``: two depersonalisations of the same data could be
   intersected), and the sample's k is at least the request's (``sample_k_too_low``);
5. the Parquet payload matches the manifest's hash and
   :func:`~nce_model_lab.sample_checks.check_sample` passes: exactly the requested
   columns, the catalogue's types and ranges, random IDs only, each once, and no IIN/BIN
   in any value (codes ``sample_extra_columns``, ``sample_wrong_type``,
   ``sample_identifier_leak``... listed there).

An accepted sample is written (under the registry lock, atomically) to
``LAB/rounds/<request_id>/samples/<SOURCE>.parquet`` with its manifest, and recorded in
the registry; then every request that received something is re-joined
(:func:`~nce_model_lab.training_table.build_training_table`). Every accept and refusal
goes to ``LAB/audit.log``. Messages name the file, column and row, never a value.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sample_protocol import _atomic
from sample_protocol.catalogue import Catalogue
from sample_protocol.envelope import OpenedEnvelope, open_envelope
from sample_protocol.errors import ProtocolError, ValidationError
from sample_protocol.keys import PublicKey, SecretKey
from sample_protocol.records import SampleManifest, SampleRequest, read_record
from sample_protocol.serde import Record
from sample_protocol.signing import verify_file
from sample_protocol.trust import Party, Role, TrustRoot

from .errors import SampleRefused
from .labdir import LabDir, LabRegistry, SampleEntry
from .sample_checks import check_sample
from .sample_request import BODY_ROLES
from .training_table import Coverage, build_training_table

__all__ = [
    "PAYLOAD_KIND",
    "IngestOutcome",
    "IngestResult",
    "ingest_samples",
]

#: ``payload_kind`` of a sample envelope.
PAYLOAD_KIND = "sample"
_MAX_AUDIT_MESSAGE = 1000


@dataclass(frozen=True, slots=True)
class IngestOutcome(Record):
    """What happened to one file: ``code`` is ``accepted`` or the refusal code."""

    file: str
    accepted: bool
    code: str
    message: str
    request_id: str | None = None
    source: str | None = None
    body: str | None = None
    sample_id: str | None = None
    rows: int | None = None


@dataclass(frozen=True, slots=True)
class IngestResult(Record):
    """Every file's outcome, and the coverage of each request that received a sample."""

    outcomes: tuple[IngestOutcome, ...]
    coverage: tuple[Coverage, ...]

    @property
    def refused(self) -> tuple[IngestOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.accepted)

    @property
    def accepted(self) -> tuple[IngestOutcome, ...]:
        return tuple(o for o in self.outcomes if o.accepted)


@dataclass(frozen=True)
class _Staged:
    path: Path
    opened: OpenedEnvelope
    manifest: SampleManifest
    party: Party
    request: SampleRequest
    rows: int


def _refuse(code: str, message: str) -> SampleRefused:
    return SampleRefused(message, code=code)


# -- staging one file ---------------------------------------------------------------


def _all_keys(trust: TrustRoot) -> list[PublicKey]:
    """Every key the trust root knows (current, rotated, revoked): refusals then say why."""
    return [k for p in trust.parties for k in (p.key, *p.previous_keys)]


def _load_request(
    labdir: LabDir, registry: LabRegistry, trust: TrustRoot, request_id: str, where: str
) -> SampleRequest:
    """The lab's own signed copy of the request, verified before it is parsed."""
    path = labdir.request_path(request_id)
    if request_id not in registry.requests or not path.is_file():
        raise _refuse(
            "sample_unknown_request",
            f"{where}: request {request_id!r} is not one this lab sent (not in "
            f"{labdir.registry_path}, or no {path})",
        )
    verify_file(path, trust.trusted_keys(Role.LAB))
    request = read_record(SampleRequest, path)
    if request.request_id != request_id:
        raise _refuse(
            "sample_unknown_request",
            f"{path}: holds request {request.request_id!r}, expected {request_id!r}",
        )
    return request


def _stage(
    path: Path,
    *,
    lab_key: SecretKey,
    trust: TrustRoot,
    labdir: LabDir,
    registry: LabRegistry,
    catalogue: Catalogue,
    context: dict[str, str],
) -> tuple[_Staged, bytes]:
    """Open and check one file; ``context`` collects what is known (for the refusal)."""
    where = f"sample {path}"
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise _refuse("sample_unreadable", f"{where}: cannot read ({exc.strerror})") from None
    opened = open_envelope(
        blob, recipient=lab_key, senders=_all_keys(trust), expected_kind=PAYLOAD_KIND, where=where
    )
    del blob
    context["body"] = trust.party_for_key_id(opened.sender_key_id).name
    party = trust.require_signer(opened.sender_key_id, roles=BODY_ROLES)
    raw_manifest = opened.meta.get("manifest")
    if raw_manifest is None:
        raise _refuse("sample_bad_manifest", f"{where}: the envelope carries no manifest")
    try:
        manifest = SampleManifest.from_json(raw_manifest, where=f"{where} manifest")
    except ValidationError as exc:
        raise _refuse("sample_bad_manifest", str(exc)) from None
    context.update(
        request_id=manifest.request_id, source=manifest.source, sample_id=manifest.sample_id
    )
    trust.require_signer(opened.sender_key_id, roles=BODY_ROLES, source=manifest.source)
    if manifest.body != party.name:
        raise _refuse(
            "sample_manifest_mismatch",
            f"{where}: the manifest names body {manifest.body!r} but {party.name!r} signed it",
        )
    _check_not_seen(registry, manifest, opened.envelope_id, where)
    request = _load_request(labdir, registry, trust, manifest.request_id, where)
    _check_request(registry, request, manifest, party, where)
    if manifest.sha256 != opened.payload_sha256:
        raise _refuse(
            "sample_manifest_mismatch",
            f"{where}: the manifest's sha256 {manifest.sha256} is not the payload's "
            f"{opened.payload_sha256}",
        )
    try:
        table = pq.read_table(pa.BufferReader(opened.payload))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _refuse("sample_unreadable", f"{where}: the payload is not Parquet ({exc})") from None
    check_sample(table, manifest, request, catalogue, where=where)
    staged = _Staged(path, opened, manifest, party, request, table.num_rows)
    return staged, opened.payload


def _check_not_seen(
    registry: LabRegistry, manifest: SampleManifest, envelope_id: str, where: str
) -> None:
    earlier = registry.samples.get(manifest.sample_id) or registry.sample_with_envelope(envelope_id)
    if earlier is not None:
        raise _refuse(
            "sample_replayed",
            f"{where}: sample {manifest.sample_id} (envelope {envelope_id}) was already "
            f"accepted on {earlier.received_at:%Y-%m-%d} as {earlier.source} of "
            f"{earlier.request_id}; a sample is ingested once",
        )


def _check_request(
    registry: LabRegistry,
    request: SampleRequest,
    manifest: SampleManifest,
    party: Party,
    where: str,
) -> None:
    rid = request.request_id
    if manifest.source not in (s.source for s in request.sources):
        asked = ", ".join(s.source for s in request.sources)
        raise _refuse(
            "sample_source_not_requested",
            f"{where}: request {rid} did not ask for source {manifest.source} (asked: {asked})",
        )
    if party.name not in request.recipients:
        raise _refuse(
            "sample_not_a_recipient",
            f"{where}: {party.name!r} was not a recipient of request {rid} "
            f"(recipients: {', '.join(request.recipients)})",
        )
    earlier = registry.samples_of(rid).get(manifest.source)
    if earlier is not None:
        raise _refuse(
            "sample_source_already_received",
            f"{where}: a sample of {manifest.source} for {rid} was already accepted "
            f"(sample {earlier.sample_id}); a second depersonalisation of the same data is "
            "refused",
        )
    if manifest.report.k_target < request.k_anonymity:
        raise _refuse(
            "sample_k_too_low",
            f"{where}: depersonalised to k={manifest.report.k_target}, expected at least the "
            f"request's k={request.k_anonymity}",
        )


def _commit(staged: _Staged, payload: bytes, labdir: LabDir, now: dt.datetime) -> SampleEntry:
    manifest = staged.manifest
    target = labdir.sample_path(manifest.request_id, manifest.source)
    entry = SampleEntry(
        sample_id=manifest.sample_id,
        envelope_id=staged.opened.envelope_id,
        request_id=manifest.request_id,
        source=manifest.source,
        body=staged.party.name,
        received_at=now,
        rows=staged.rows,
        sha256=manifest.sha256,
        file=labdir.relative(target),
    )

    def change(reg: LabRegistry) -> LabRegistry:
        where = f"sample {staged.path}"
        _check_not_seen(reg, manifest, entry.envelope_id, where)  # again, under the lock
        _check_request(reg, staged.request, manifest, staged.party, where)
        _atomic.write_bytes(target, payload, mode=0o600)
        _atomic.write_bytes(
            labdir.manifest_path(manifest.request_id, manifest.source),
            manifest.canonical_bytes() + b"\n",
        )
        return LabRegistry(
            version=reg.version,
            requests=reg.requests,
            samples={**reg.samples, entry.sample_id: entry},
            releases=reg.releases,
        )

    labdir.update_registry(change)
    return entry


# -- the whole batch -----------------------------------------------------------------


def _stage_or_refuse(path: Path, **kwargs: Any) -> tuple[_Staged, bytes]:
    """:func:`_stage`, where anything unexpected about a file is a refusal, not a crash.

    A hostile sender can craft an envelope that breaks a parser in ways no check foresaw;
    failing closed means refusing that file (and logging it), not aborting the batch.
    """
    try:
        return _stage(path, **kwargs)
    except ProtocolError:
        raise
    except Exception as exc:
        raise SampleRefused(
            f"{path}: not a readable sample ({type(exc).__name__}); refused",
            code="sample_malformed",
        ) from exc


def ingest_samples(
    files: Iterable[str | os.PathLike[str]],
    *,
    lab_key: SecretKey,
    trust: TrustRoot,
    lab_dir: str | os.PathLike[str],
    catalogue: Catalogue | None = None,
    now: dt.datetime | None = None,
) -> IngestResult:
    """Check and store each sample envelope on its own; re-join what changed.

    A refused file never raises: it comes back as an :class:`IngestOutcome` with
    ``accepted=False`` and its code (and is in the audit log). ``lab_key`` must be the
    current key of a LAB party of ``trust`` (else :class:`TrustError`).
    """
    lab = trust.require_signer(lab_key.key_id, roles={Role.LAB})
    labdir = LabDir(lab_dir).ensure()
    cat = catalogue or Catalogue.default()
    audit = labdir.audit(lab.name)
    outcomes: list[IngestOutcome] = []
    touched: list[str] = []
    for name in files:
        path = Path(name)
        when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
        context: dict[str, str] = {}
        try:
            staged, payload = _stage_or_refuse(
                path,
                lab_key=lab_key,
                trust=trust,
                labdir=labdir,
                registry=labdir.read_registry(),
                catalogue=cat,
                context=context,
            )
            entry = _commit(staged, payload, labdir, when)
        except ProtocolError as exc:
            outcome = IngestOutcome(
                file=str(path),
                accepted=False,
                code=exc.code,
                message=str(exc),
                request_id=context.get("request_id"),
                source=context.get("source"),
                body=context.get("body"),
                sample_id=context.get("sample_id"),
            )
            audit.append(
                "sample_refused",
                path.name,
                "refused",
                details={
                    k: v
                    for k, v in {
                        "code": exc.code,
                        "message": str(exc)[:_MAX_AUDIT_MESSAGE],
                        "request_id": outcome.request_id,
                        "source": outcome.source,
                        "body": outcome.body,
                    }.items()
                    if v is not None
                },
            )
            outcomes.append(outcome)
            continue
        audit.append(
            "sample_accepted",
            entry.file,
            details={
                "file": path.name,
                "request_id": entry.request_id,
                "source": entry.source,
                "body": entry.body,
                "sample_id": entry.sample_id,
                "envelope_id": entry.envelope_id,
                "rows": entry.rows,
                "sha256": entry.sha256,
            },
        )
        outcomes.append(
            IngestOutcome(
                file=str(path),
                accepted=True,
                code="accepted",
                message=f"accepted {entry.source} from {entry.body}: {entry.rows} rows",
                request_id=entry.request_id,
                source=entry.source,
                body=entry.body,
                sample_id=entry.sample_id,
                rows=entry.rows,
            )
        )
        if entry.request_id not in touched:
            touched.append(entry.request_id)
    coverage = []
    for request_id in touched:
        cov = build_training_table(labdir.root, request_id)
        audit.append(
            "training_table_joined",
            cov.training_file,
            details={
                "request_id": request_id,
                "rows": cov.rids,
                "sources": ",".join(s.source for s in cov.sources),
                "missing": ",".join(cov.missing),
            },
        )
        coverage.append(cov)
    return IngestResult(outcomes=tuple(outcomes), coverage=tuple(coverage))
