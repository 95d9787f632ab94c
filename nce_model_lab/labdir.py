"""The lab directory: where the NCE lab keeps its requests, samples and training tables.

Layout (every file written atomically)::

    LAB/registry.json                         what the lab has seen (see LabRegistry)
    LAB/audit.log                             hash-chained audit log of every action
    LAB/trust_state.json                      newest trust-root version seen (rollback guard)
    LAB/requests/<request_id>.json            signed SampleRequest (+ .minisig)
    LAB/rounds/<request_id>/samples/<SOURCE>.parquet         accepted sample (keyed by rid)
    LAB/rounds/<request_id>/samples/<SOURCE>.manifest.json   its SampleManifest
    LAB/rounds/<request_id>/training.parquet  the join of all accepted samples
    LAB/rounds/<request_id>/coverage.json     rows and share per source

The registry is a small JSON file (:class:`LabRegistry`) updated under an exclusive
``flock`` and replaced atomically, so that two ``sample ingest`` runs cannot both accept
the same sample. It lists the requests sent (with the bodies expected to answer), every
accepted sample (by sample id and envelope id: a replay is refused) and the releases
made (``record_release``), from which ``status`` tells when the next refit is due.

Example::

    >>> import tempfile
    >>> lab = LabDir(tempfile.mkdtemp())
    >>> lab.read_registry().requests
    {}
    >>> lab.sample_path("req-20260302-aaaaaaaaaaaaaaaa", "TAX").name
    'TAX.parquet'
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sample_protocol import _atomic
from sample_protocol.audit import AuditLog
from sample_protocol.errors import ProtocolError, ValidationError
from sample_protocol.records import safe_join
from sample_protocol.serde import Record

from .errors import LabError

__all__ = [
    "REGISTRY_FILE",
    "LabDir",
    "LabRegistry",
    "ReleaseEntry",
    "RequestEntry",
    "SampleEntry",
]

#: Name of the registry file inside the lab directory.
REGISTRY_FILE = "registry.json"
_REGISTRY_VERSION = 1


@dataclass(frozen=True, slots=True)
class RequestEntry(Record):
    """A sample request the lab sent: what ``status`` needs without the trust root.

    ``recipients`` in the request's order (tax body first); ``expected`` maps each of
    them to the requested sources it owns (a body has answered when every one of them
    was accepted).
    """

    request_id: str
    created_at: dt.datetime
    sent_on: dt.date
    due_date: dt.date
    sample_size: int
    sources: tuple[str, ...]
    recipients: tuple[str, ...]
    expected: dict[str, tuple[str, ...]]
    file: str


@dataclass(frozen=True, slots=True)
class SampleEntry(Record):
    """An accepted sample."""

    sample_id: str
    envelope_id: str
    request_id: str
    source: str
    body: str
    received_at: dt.datetime
    rows: int
    sha256: str
    file: str


@dataclass(frozen=True, slots=True)
class ReleaseEntry(Record):
    """A model release the lab made (the yearly refit clock starts from the last one)."""

    release_id: str
    created_on: dt.date


@dataclass(frozen=True, slots=True)
class LabRegistry(Record):
    """What the lab has seen: requests, accepted samples, releases."""

    version: int = _REGISTRY_VERSION
    requests: dict[str, RequestEntry] = field(default_factory=dict)
    samples: dict[str, SampleEntry] = field(default_factory=dict)
    releases: dict[str, ReleaseEntry] = field(default_factory=dict)

    def validate(self) -> None:
        if self.version != _REGISTRY_VERSION:
            raise ValidationError(
                f"lab registry: expected version {_REGISTRY_VERSION}, found {self.version}",
                code="lab_registry_version",
            )

    def samples_of(self, request_id: str) -> dict[str, SampleEntry]:
        """Accepted samples of ``request_id``, by source."""
        return {s.source: s for s in self.samples.values() if s.request_id == request_id}

    def sample_with_envelope(self, envelope_id: str) -> SampleEntry | None:
        """The accepted sample that came in envelope ``envelope_id``, if any."""
        for sample in self.samples.values():
            if sample.envelope_id == envelope_id:
                return sample
        return None


class LabDir:
    """Paths of a lab directory, its registry and its audit log."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()

    def __repr__(self) -> str:
        return f"LabDir({str(self.root)!r})"

    # -- paths ----------------------------------------------------------------------

    @property
    def registry_path(self) -> Path:
        return self.root / REGISTRY_FILE

    @property
    def audit_path(self) -> Path:
        return self.root / "audit.log"

    @property
    def requests_dir(self) -> Path:
        return self.root / "requests"

    def request_path(self, request_id: str) -> Path:
        """``LAB/requests/<request_id>.json`` (refuses an id that is not a plain name)."""
        return self._inside(self.requests_dir, f"{request_id}.json")

    def round_dir(self, request_id: str) -> Path:
        return self._inside(self.root / "rounds", request_id)

    def sample_path(self, request_id: str, source: str) -> Path:
        return self._inside(self.round_dir(request_id) / "samples", f"{source}.parquet")

    def manifest_path(self, request_id: str, source: str) -> Path:
        return self._inside(self.round_dir(request_id) / "samples", f"{source}.manifest.json")

    def training_path(self, request_id: str) -> Path:
        return self.round_dir(request_id) / "training.parquet"

    def coverage_path(self, request_id: str) -> Path:
        return self.round_dir(request_id) / "coverage.json"

    def relative(self, path: Path) -> str:
        """``path`` relative to the lab directory, as stored in the registry."""
        return path.relative_to(self.root).as_posix()

    @staticmethod
    def _inside(directory: Path, name: str) -> Path:
        try:
            safe_join(directory, name)
        except ProtocolError as exc:
            raise LabError(str(exc), code="lab_unsafe_name") from None
        return directory / name

    def ensure(self) -> LabDir:
        """Create the lab directory (and ``requests/``) if needed; return ``self``."""
        self.requests_dir.mkdir(parents=True, exist_ok=True)
        return self

    def audit(self, actor: str) -> AuditLog:
        """The lab's audit log, appended to as ``actor``."""
        return AuditLog(self.audit_path, actor)

    # -- registry -------------------------------------------------------------------

    def read_registry(self) -> LabRegistry:
        """The registry (empty when the lab directory is new)."""
        try:
            data = self.registry_path.read_bytes()
        except FileNotFoundError:
            return LabRegistry()
        try:
            return LabRegistry.from_json(data, where=str(self.registry_path))
        except ValidationError as exc:
            raise LabError(
                f"{exc}; the lab registry is corrupt: restore it from a backup rather than "
                "deleting it (it is what refuses replayed samples)",
                code="lab_registry_corrupt",
            ) from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / (REGISTRY_FILE + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def update_registry(self, change: Callable[[LabRegistry], LabRegistry]) -> LabRegistry:
        """Apply ``change`` to the registry under an exclusive lock; write and return it.

        ``change`` may raise to abort: the registry is then left as it was.
        """
        with self._locked():
            new = change(self.read_registry())
            new.validate()
            _atomic.write_bytes(self.registry_path, new.canonical_bytes() + b"\n")
            return new

    def record_release(self, release_id: str, created_on: dt.date) -> LabRegistry:
        """Note a release (the next refit is due a year after the last one)."""
        entry = ReleaseEntry(release_id=release_id, created_on=created_on)

        def change(reg: LabRegistry) -> LabRegistry:
            return LabRegistry(
                version=reg.version,
                requests=reg.requests,
                samples=reg.samples,
                releases={**reg.releases, release_id: entry},
            )

        return self.update_registry(change)
