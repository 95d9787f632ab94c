"""A hash-chained, append-only audit log.

Every action of a party (sample prepared, release verified, batch scored, batch
ingested, report served, and every refusal) is one line of the log: the canonical JSON
of an :class:`AuditEntry`. Each entry carries ``prev``, the SHA-256 (hex) of the
previous line's bytes (without its newline; 64 zeros for the first line), and ``seq``,
its 0-based position. Editing, deleting, swapping or inserting a line therefore breaks
the chain at that line or the next, and :meth:`AuditLog.verify` names the first broken
line::

    audit.log line 17: prev hash does not match line 16 (expected 3fa1…, found 9b02…)

A chain alone cannot reveal that its *last* lines were changed or cut off. For that,
a party publishes or signs the :class:`AuditVerification` (entry count and head hash)
from time to time and later passes it as ``anchor``: the log must still extend it.

Details are stored in clear text: callers pass only non-secret details (counts, file
names, release ids, hashes, error codes), never key material, tax-secret values or
personal data. Values longer than :data:`MAX_DETAIL_BYTES` are refused.

Several processes may append to the same log: each append holds an exclusive
``fcntl.flock`` on the file, chains onto the last line, writes one line and fsyncs.

Example::

    log = AuditLog(state / "audit.log", actor="tax-body")
    log.append("batch_scored", "batch-2026-11.parquet", details={"rows": 120000})
    log.verify()  # AuditVerification(entries=1, head='…')
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ._atomic import fsync_path
from .errors import AuditLogError, ProtocolError, ValidationError
from .serde import Record

__all__ = [
    "GENESIS",
    "MAX_DETAIL_BYTES",
    "OUTCOMES",
    "AuditEntry",
    "AuditLog",
    "AuditVerification",
    "verify_log",
]

#: ``prev`` of the first entry.
GENESIS = "0" * 64
#: Largest value (UTF-8 bytes) accepted in ``details``.
MAX_DETAIL_BYTES = 4096
#: Largest number of ``details`` items in one entry.
MAX_DETAILS = 64
#: Allowed values of :attr:`AuditEntry.outcome`.
OUTCOMES = ("ok", "refused", "error")

_HEX = frozenset("0123456789abcdef")
_CHUNK = 8192


def _sha256(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _short(digest: str) -> str:
    return digest[:12] + "…"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class AuditEntry(Record):
    """One line of the audit log."""

    seq: int
    time: dt.datetime
    actor: str
    action: str
    subject: str
    outcome: str
    details: dict[str, str]
    prev: str

    def validate(self) -> None:
        where = f"audit entry {self.seq}"
        if type(self.seq) is not int or self.seq < 0:
            raise ValidationError(f"audit entry: seq must be an integer >= 0, found {self.seq!r}")
        if self.time.utcoffset() != dt.timedelta(0):
            raise ValidationError(f"{where}: time must be in UTC, found {self.time.isoformat()}")
        for name in ("actor", "action"):
            if not getattr(self, name):
                raise ValidationError(f"{where}: {name} must not be empty")
        if self.outcome not in OUTCOMES:
            raise ValidationError(
                f"{where}: outcome must be one of {', '.join(OUTCOMES)}, found {self.outcome!r}"
            )
        if len(self.prev) != 64 or not set(self.prev) <= _HEX:
            raise ValidationError(
                f"{where}: prev must be 64 lower-case hex digits, found {self.prev!r}"
            )
        _check_details(self.details, where)


def _check_details(details: Mapping[str, str], where: str) -> None:
    if len(details) > MAX_DETAILS:
        raise ValidationError(
            f"{where}: at most {MAX_DETAILS} details, found {len(details)}",
            code="audit_bad_details",
        )
    for key, value in details.items():
        if not isinstance(key, str) or not key:
            raise ValidationError(
                f"{where}: detail names must be non-empty strings, found {key!r}",
                code="audit_bad_details",
            )
        if not isinstance(value, str):
            raise ValidationError(
                f"{where}: detail {key!r} must be a string, found {type(value).__name__}",
                code="audit_bad_details",
            )
        size = len(value.encode("utf-8"))
        if size > MAX_DETAIL_BYTES:
            raise ValidationError(
                f"{where}: detail {key!r} is {size} bytes, the limit is {MAX_DETAIL_BYTES} "
                "(the audit log takes short, non-secret facts, not data)",
                code="audit_bad_details",
            )


def _normalise_details(details: Mapping[str, object] | None) -> dict[str, str]:
    """Accept str, int, float and bool values; store them as strings."""
    out: dict[str, str] = {}
    for key, value in (details or {}).items():
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, str):
            out[key] = value
        elif isinstance(value, int | float):
            out[key] = repr(value)
        else:
            raise ValidationError(
                f"audit details: {key!r} must be a str, int, float or bool, "
                f"found {type(value).__name__}",
                code="audit_bad_details",
            )
    _check_details(out, "audit details")
    return out


@dataclass(frozen=True, slots=True)
class AuditVerification(Record):
    """What :meth:`AuditLog.verify` found: the entry count and the hash of the last line.

    Publish or sign it, and pass it back later as ``anchor`` to prove the log still
    extends it (nothing at or before this point was changed or cut off).
    """

    entries: int
    head: str

    def validate(self) -> None:
        if self.entries < 0 or len(self.head) != 64 or not set(self.head) <= _HEX:
            raise ValidationError(
                "audit head: expected entries >= 0 and 64 lower-case hex digits, found "
                f"entries={self.entries}, head={self.head!r}"
            )


def _snapshot_size(fh: BinaryIO) -> int:
    """Size of the file once no append is in progress (appends are whole lines)."""
    fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
    try:
        return os.fstat(fh.fileno()).st_size
    finally:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _lines(fh: BinaryIO, size: int) -> Iterator[bytes]:
    """The first ``size`` bytes of ``fh`` as lines, each with its newline if it has one."""
    remaining = size
    while remaining > 0:
        raw = fh.readline(remaining)
        if not raw:
            return
        remaining -= len(raw)
        yield raw


def _open_for_reading(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise AuditLogError(f"{path}: no audit log at this path", code="audit_missing") from None
    except OSError as exc:
        raise AuditLogError(f"{path}: cannot read ({exc.strerror})", code="audit_missing") from None


def _parse_line(where: str, raw: bytes) -> tuple[bytes, AuditEntry]:
    """Parse one stored line (with its newline); check it stands on its own."""
    if not raw.endswith(b"\n"):
        raise AuditLogError(
            f"{where}: truncated (the file does not end with a newline; a write was interrupted?)",
            code="audit_truncated",
        )
    line = raw[:-1]
    if not line.strip():
        raise AuditLogError(f"{where}: unparsable (empty line)", code="audit_unparsable")
    try:
        entry = AuditEntry.from_json(line, where="entry")
    except ProtocolError as exc:
        raise AuditLogError(f"{where}: unparsable ({exc})", code="audit_unparsable") from None
    if entry.canonical_bytes() != line:
        raise AuditLogError(
            f"{where}: not in canonical form (the line was edited by hand?)",
            code="audit_unparsable",
        )
    return line, entry


def verify_log(
    path: str | os.PathLike[str], *, anchor: AuditVerification | None = None
) -> AuditVerification:
    """Check the whole chain of the log at ``path``; raise at the first broken line.

    With ``anchor`` (an earlier result of this function), also check that line
    ``anchor.entries`` still hashes to ``anchor.head``.
    """
    path = Path(path)
    head = GENESIS
    count = 0
    with _open_for_reading(path) as fh:
        size = _snapshot_size(fh)
        for lineno, raw in enumerate(_lines(fh, size), start=1):
            where = f"{path} line {lineno}"
            line, entry = _parse_line(where, raw)
            if entry.seq != lineno - 1:
                raise AuditLogError(
                    f"{where}: seq gap: expected seq {lineno - 1}, found seq {entry.seq}",
                    code="audit_seq_gap",
                )
            if entry.prev != head:
                if lineno == 1:
                    message = f"prev hash of the first line must be 64 zeros, found {entry.prev}"
                else:
                    message = (
                        f"prev hash does not match line {lineno - 1} "
                        f"(expected {_short(head)}, found {_short(entry.prev)})"
                    )
                raise AuditLogError(f"{where}: {message}", code="audit_prev_mismatch")
            head = _sha256(line)
            count = lineno
            if anchor is not None and lineno == anchor.entries and head != anchor.head:
                raise AuditLogError(
                    f"{where}: does not match the anchored head (expected {_short(anchor.head)}, "
                    f"found {_short(head)}); the log was changed at or before this line",
                    code="audit_anchor_mismatch",
                )
    if anchor is not None:
        if count < anchor.entries:
            raise AuditLogError(
                f"{path}: the anchored head covers {anchor.entries} entries, but the log "
                f"has only {count}; lines were removed",
                code="audit_anchor_mismatch",
            )
        if anchor.entries == 0 and anchor.head != GENESIS:
            raise AuditLogError(
                f"{path}: an anchor of 0 entries must have the head {GENESIS}",
                code="audit_anchor_mismatch",
            )
    return AuditVerification(entries=count, head=head)


def _read_last_line(fd: int, size: int) -> bytes:
    """The last line (with its newline, if it has one) of a file of ``size`` > 0 bytes."""
    buf = b""
    pos = size
    while pos > 0:
        step = min(_CHUNK, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
        # the final byte is the line's own newline; look for the one before it
        cut = buf.rfind(b"\n", 0, len(buf) - 1)
        if cut >= 0:
            return buf[cut + 1 :]
    return buf


class AuditLog:
    """The audit log at ``path``, appended to on behalf of ``actor`` (a party name).

    ``clock`` (returning an aware datetime) is for tests; entries are stored in UTC.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        actor: str,
        *,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.path = Path(path)
        self.actor = actor
        self._clock = clock or _utcnow
        if not actor or actor != actor.strip():
            raise ValidationError(
                f"audit log {self.path}: actor must be a non-empty party name, found {actor!r}"
            )

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r}, actor={self.actor!r})"

    def append(
        self,
        action: str,
        subject: str,
        outcome: str = "ok",
        details: Mapping[str, object] | None = None,
    ) -> AuditEntry:
        """Append one entry and return it; safe with several processes appending.

        ``details`` are short, non-secret facts; int, float and bool values are stored as
        strings. Refuses (:class:`AuditLogError`) to chain onto a truncated or unparsable
        last line: run ``verify`` to see what happened.
        """
        clean = _normalise_details(details)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size == 0:
                seq, prev = 0, GENESIS
            else:
                last = _read_last_line(fd, size)
                try:
                    line, entry = _parse_line(f"{self.path} last line", last)
                except AuditLogError as exc:
                    raise AuditLogError(
                        f"{self.path}: cannot append after a broken last line ({exc}); "
                        "run audit verify",
                        code=exc.code,
                    ) from None
                seq, prev = entry.seq + 1, _sha256(line)
            now = self._clock()
            if now.tzinfo is None or now.utcoffset() is None:
                raise ValidationError(f"audit log {self.path}: the clock gave a naive time {now}")
            time = now.astimezone(dt.UTC)
            new = AuditEntry(
                seq=seq,
                time=time,
                actor=self.actor,
                action=action,
                subject=subject,
                outcome=outcome,
                details=clean,
                prev=prev,
            )
            new.validate()
            data = new.canonical_bytes() + b"\n"
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the lock
        if created:
            fsync_path(self.path.parent)
        return new

    def entries(self) -> Iterator[AuditEntry]:
        """The entries, in order (parsed, not chain-checked: use :meth:`verify` for that)."""
        with _open_for_reading(self.path) as fh:
            size = _snapshot_size(fh)
            for lineno, raw in enumerate(_lines(fh, size), start=1):
                yield _parse_line(f"{self.path} line {lineno}", raw)[1]

    def head(self) -> str:
        """SHA-256 of the last line (what the next entry's ``prev`` will be)."""
        with _open_for_reading(self.path) as fh:
            size = _snapshot_size(fh)
            if size == 0:
                return GENESIS
            last = _read_last_line(fh.fileno(), size)
            if not last.endswith(b"\n"):
                raise AuditLogError(
                    f"{self.path}: the last line is truncated (a write was interrupted?)",
                    code="audit_truncated",
                )
            return _sha256(last[:-1])

    def verify(self, *, anchor: AuditVerification | None = None) -> AuditVerification:
        """Check the whole chain; see :func:`verify_log`."""
        return verify_log(self.path, anchor=anchor)
