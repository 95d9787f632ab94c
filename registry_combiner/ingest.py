"""Verify the register's release bundle; verify and store the bodies' batches.

The register learns a release by verifying its own ``REGISTER`` bundle
(:func:`verify_release`, also run by ``combine``) exactly as a body verifies its bundle:
:func:`sample_protocol.bundle_verify.verify_bundle` (signature by a trusted lab, not
expired, every file's hash, no rollback below the newest sequence seen, the ONNX gate,
parity). The release id, which the bodies' bundles of the same release share, is then
recorded in the store.

:func:`ingest_batch` accepts a batch only when, in this order:

1. :func:`sample_protocol.batch.open_batch` verifies it (layout, the manifest's signature
   by a non-revoked body of the trust root, the data file's hash, sealing, the exact batch
   schema, every row's values): refusals are its :class:`~sample_protocol.batch.BatchError`;
2. the signer owns the batch's source in the trust root (``batch_wrong_source``);
3. the release is one the register verified (``batch_release_unknown``) and is not
   expired (``batch_release_expired``);
4. the batch id was never ingested (``batch_replayed``, checked again under the write lock).

Then the batch, its new entities and its rows go into the store in **one** transaction:
a refused, tampered or half-written batch leaves nothing, and a process killed during the
insert leaves the database as it was, so the batch can simply be ingested again.
Every outcome is appended to the register's audit log when one is given.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sample_protocol.audit import AuditLog
from sample_protocol.batch import open_batch
from sample_protocol.bundle_verify import VerifiedBundle, verify_bundle
from sample_protocol.errors import ProtocolError
from sample_protocol.keys import SecretKey
from sample_protocol.records_base import sha256_file
from sample_protocol.records_release import MANIFEST_NAME, REGISTER_AUDIENCE
from sample_protocol.trust import TrustRoot

from .errors import RegistryRefused
from .store import BatchRecord, ReleaseRecord, Store

__all__ = [
    "STORED_COLUMNS",
    "BatchIngested",
    "audited",
    "ingest_batch",
    "record_release",
    "verify_release",
]

_MAX_TEXT = 1 << 20
#: Columns of a stored batch part (see :mod:`.store`).
STORED_COLUMNS = ("entity", "index", "probability", "value", "category")


def record_release(store: Store, bundle: VerifiedBundle, *, now: dt.datetime) -> ReleaseRecord:
    """Record a verified ``REGISTER`` bundle's release in the store (idempotent)."""
    m = bundle.manifest
    record = ReleaseRecord(
        release_id=m.release_id,
        sequence=m.sequence,
        lab=m.lab,
        created_at=m.created_at,
        expires_at=m.expires_at,
        manifest_sha256=sha256_file(bundle.directory / MANIFEST_NAME),
        verified_at=now,
    )
    store.record_release(record)
    return store.release(m.release_id) or record


def verify_release(
    bundle_dir: str | os.PathLike[str],
    *,
    store: Store,
    trust: TrustRoot,
    state_dir: str | os.PathLike[str],
    now: dt.datetime | None = None,
) -> tuple[VerifiedBundle, ReleaseRecord]:
    """Verify the register's bundle (audience ``REGISTER``) and record its release."""
    when = now or dt.datetime.now(dt.UTC)
    bundle = verify_bundle(
        bundle_dir, trust=trust, audience=REGISTER_AUDIENCE, state_dir=state_dir, now=when
    )
    return bundle, record_release(store, bundle, now=when)


@dataclass(frozen=True, slots=True)
class BatchIngested:
    """What :func:`ingest_batch` stored."""

    path: Path
    batch: BatchRecord
    entities_new: int

    def to_dict(self) -> dict[str, Any]:
        b = self.batch
        return {
            "path": str(self.path),
            "batch_id": b.batch_id,
            "seq": b.seq,
            "body": b.body,
            "source": b.source,
            "release_id": b.release_id,
            "as_of": b.as_of.isoformat(),
            "rows": b.row_count,
            "entities": b.entities,
            "entities_new": self.entities_new,
            "sealed": b.sealed,
        }


def _read_text(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read(_MAX_TEXT).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _refuse(code: str, message: str) -> RegistryRefused:
    return RegistryRefused(message, code=code)


def ingest_batch(
    path: str | os.PathLike[str],
    *,
    store: Store,
    trust: TrustRoot,
    recipient: SecretKey | None = None,
    now: dt.datetime | None = None,
) -> BatchIngested:
    """Verify the batch directory ``path`` and store it in one transaction (module notes)."""
    path = Path(path)
    when = now or dt.datetime.now(dt.UTC)
    opened = open_batch(path, trust=trust, recipient=recipient, now=when)
    m = opened.manifest
    where = f"batch {path} ({m.batch_id})"
    party = trust.party(opened.signer)
    if m.source not in party.sources:
        owned = ", ".join(party.sources) or "none"
        raise _refuse(
            "batch_wrong_source",
            f"{where}: signer {party.name!r} does not own source {m.source!r} (it owns: {owned})",
        )
    release = store.release(m.release_id)
    if release is None:
        raise _refuse(
            "batch_release_unknown",
            f"{where}: release {m.release_id!r} is not one the register verified; verify the "
            "register's bundle of that release first (registry-combiner verify-release)",
        )
    if release.expired(when):
        raise _refuse(
            "batch_release_expired",
            f"{where}: release {m.release_id!r} expired at {release.expires_at.isoformat()} "
            f"(now {when.isoformat()})",
        )
    if store.has_batch(m.batch_id):
        raise _refuse("batch_replayed", f"{where}: already ingested; refusing a replay")
    table: pa.Table = opened.table
    with store.transaction():
        before = store.max_entity_id()
        ids = store.ensure_entities(table["bin"])
        rows = pa.table(
            {
                "entity": pa.array(ids),
                "index": table["index"],
                "probability": table["probability"],
                "value": table["value"],
                "category": table["category"],
            }
        )
        record = BatchRecord(
            batch_id=m.batch_id,
            body=m.body,
            source=m.source,
            release_id=m.release_id,
            as_of=m.as_of,
            created_at=m.created_at,
            row_count=table.num_rows,
            entities=len(pc.unique(rows["entity"])),
            sha256=m.sha256,
            sealed=m.sealed,
            manifest=_read_text(path / MANIFEST_NAME),
            signature=_read_text(path / f"{MANIFEST_NAME}.minisig"),
            ingested_at=when,
        )
        stored = store.add_batch(record, rows)
    new = len(np.unique(ids[ids > before]))
    return BatchIngested(path=path, batch=stored, entities_new=new)


def audited(log: AuditLog | None, action: str, subject: str) -> _Audit:
    """Context manager: log the outcome of ``action`` on ``subject`` (refusals with their code)."""
    return _Audit(log, action, subject)


class _Audit:
    def __init__(self, log: AuditLog | None, action: str, subject: str) -> None:
        self.log = log
        self.action = action
        self.subject = subject
        self.details: dict[str, object] = {}

    def __enter__(self) -> _Audit:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if self.log is None:
            return
        if exc is None:
            self.log.append(self.action, self.subject, "ok", self.details)
        elif isinstance(exc, ProtocolError):
            outcome = "refused" if exc.exit_code == 3 else "error"
            facts = {**self.details, "code": exc.code}
            if outcome == "refused":
                facts["reason"] = str(exc)[:1000]
            self.log.append(self.action, self.subject, outcome, facts)
