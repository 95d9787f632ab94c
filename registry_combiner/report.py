"""The signed report of a check (paras 28 and 36): JSON and HTML, signed by the register.

A **report** is what a user gets as proof of a check: the entity, its state lists and its
four current indexes (value, category, calibrated probability, coverage, overrides with
their lists, reason codes, release id, computed time and a short history), stamped with
the user, the time and the register that issued it. It is an :class:`EntityReport`
record whose canonical JSON bytes are signed with the register's key in minisign's format
(:func:`sample_protocol.signing.sign_bytes`), and an HTML rendering of the same report
(every value escaped, no script) signed the same way. Anyone can check either later::

    minisign -Vm rep-20261123-....json -p register.minisign.pub
    registry-combiner verify-report rep-20261123-....json --pub register.pub

Issuing a report records the check in the check log (view ``report``, with the SHA-256 of
the JSON report; the HTML names that SHA-256 too, so both forms point at one logged check).

The HTML page is :func:`~registry_combiner._report_html.render_html`; the free basic view
of para 37 is :mod:`registry_combiner.basic_view`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import shutil
import tempfile
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sample_protocol import _atomic
from sample_protocol.errors import SerdeError, ValidationError
from sample_protocol.keys import PublicKeys, SecretKey
from sample_protocol.records_base import new_record_id
from sample_protocol.serde import Record, encode_value
from sample_protocol.signing import (
    SIGNATURE_SUFFIX,
    VerifiedSignature,
    default_trusted_comment,
    sign_bytes,
    verify_file,
)

from ._report_html import render_html
from .errors import RegistryRefused
from .query import entity_view
from .store import CATEGORIES, Store

__all__ = [
    "EntityReport",
    "IssuedReport",
    "ReportCoverage",
    "ReportEntity",
    "ReportIndex",
    "ReportPoint",
    "ReportReason",
    "VerifiedReport",
    "build_report",
    "issue_report",
    "render_html",
    "verify_report",
    "write_report",
]

_MAX_REPORT_BYTES = 4 << 20


@dataclass(frozen=True, slots=True)
class ReportReason(Record):
    """A reason code: ``SOURCE.factor``, its source, factor and what kind of input moved
    the index (``preliminary``, ``direct`` or ``override``)."""

    code: str
    source: str
    factor: str
    input: str


@dataclass(frozen=True, slots=True)
class ReportCoverage(Record):
    """Per source the combiner expects: ``present`` / ``missing`` (preliminary) and
    ``present`` / ``no_record`` / ``not_ingested`` (direct)."""

    preliminary: dict[str, str]
    direct: dict[str, str]


@dataclass(frozen=True, slots=True)
class ReportPoint(Record):
    """One past value of an index (the trend), newest first."""

    run_id: int
    release_id: str
    computed_at: dt.datetime
    value: int
    category: str
    probability: float


@dataclass(frozen=True, slots=True)
class ReportIndex(Record):
    """One scoring index as published."""

    index: str
    value: int
    category: str
    probability: float
    partial: bool
    overridden: bool
    overrides: tuple[str, ...]
    reasons: tuple[ReportReason, ...]
    coverage: ReportCoverage
    history: tuple[ReportPoint, ...]

    def validate(self) -> None:
        where = f"report index {self.index!r}"
        if not 1 <= self.value <= 99:
            raise ValidationError(f"{where}: value: expected 1-99, found {self.value}")
        if self.category not in CATEGORIES:
            raise ValidationError(f"{where}: category: expected low|medium|high")
        if not 0.0 <= self.probability <= 1.0:
            raise ValidationError(f"{where}: probability: expected a number in [0, 1]")


@dataclass(frozen=True, slots=True)
class ReportEntity(Record):
    """Who was checked (registration data; the head's names are left out)."""

    bin: str
    entity_kind: str
    name: str | None
    legal_form: str | None
    status: str | None
    registration_date: dt.date | None
    region: str | None
    oked: str | None


@dataclass(frozen=True, slots=True)
class EntityReport(Record):
    """The report of one check: what the register showed ``user`` at ``issued_at``."""

    report_id: str
    issued_at: dt.datetime
    register: str
    key_id: str
    user: str
    entity: ReportEntity
    lists: tuple[str, ...]
    run_id: int | None
    release_id: str | None
    computed_at: dt.datetime | None
    indexes: tuple[ReportIndex, ...]
    notes: tuple[str, ...] = ()

    @property
    def file_name(self) -> str:
        return f"{self.report_id}.json"


def _entity(view: dict[str, Any]) -> ReportEntity:
    e = view["entity"]
    return ReportEntity(
        bin=e["bin"],
        entity_kind=e["kind"],
        name=e["name"],
        legal_form=e["legal_form"],
        status=e["status"],
        registration_date=e["registration_date"],
        region=e["region"],
        oked=e["oked"],
    )


def _index(ix: dict[str, Any]) -> ReportIndex:
    cov = ix["coverage"]
    return ReportIndex(
        index=ix["index"],
        value=int(ix["value"]),
        category=ix["category"],
        probability=float(ix["probability"]),
        partial=bool(ix["partial"]),
        overridden=bool(ix["overridden"]),
        overrides=tuple(ix["overrides"]),
        reasons=tuple(
            ReportReason(code=r["code"], source=r["source"], factor=r["factor"], input=r["kind"])
            for r in ix["reasons"]
        ),
        coverage=ReportCoverage(preliminary=dict(cov["preliminary"]), direct=dict(cov["direct"])),
        history=tuple(ReportPoint(**h) for h in ix["history"]),
    )


def build_report(
    store: Store,
    identifier: str,
    *,
    user: str,
    key: SecretKey,
    history: int = 5,
    now: dt.datetime | None = None,
) -> EntityReport:
    """The report of ``user``'s check of ``identifier`` (unsigned; see :func:`issue_report`).

    An invalid identifier raises :class:`~sample_protocol.errors.IdentifierError`, an
    unknown one :class:`~registry_combiner.errors.RegistryInputError` ``unknown_entity``.
    """
    view = entity_view(store, identifier, history=history)
    when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    run = view["run"]
    indexes = tuple(_index(ix) for ix in view["indexes"])
    notes: list[str] = []
    if run is None:
        notes.append("no indexes yet: the register has not combined this entity")
    partial = [ix.index for ix in indexes if ix.partial]
    if partial:
        notes.append(
            "partial: a source the combiner expects did not deliver for this entity "
            f"({', '.join(partial)}; see coverage)"
        )
    return EntityReport(
        report_id=new_record_id("rep", now=when),
        issued_at=when,
        register=key.name,
        key_id=key.key_id,
        user=user,
        entity=_entity(view),
        lists=tuple(view["lists"]),
        run_id=None if run is None else int(run["run_id"]),
        release_id=None if run is None else run["release_id"],
        computed_at=None if run is None else run["computed_at"],
        indexes=indexes,
        notes=tuple(notes),
    )


# -- issue, write, verify -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedReport:
    """A signed report: its JSON bytes and signature, and (if asked) the signed HTML."""

    report: EntityReport
    json: bytes
    json_signature: str
    sha256: str
    check_id: int
    html: bytes | None = None
    html_signature: str | None = None


def _sign(data: bytes, key: SecretKey, file_name: str, report_id: str) -> str:
    comment = default_trusted_comment(key, file_name=file_name) + f"\treport:{report_id}"
    return sign_bytes(data, key, trusted_comment=comment)


def issue_report(
    store: Store,
    identifier: str,
    *,
    user: str,
    key: SecretKey,
    html_too: bool = True,
    history: int = 5,
    now: dt.datetime | None = None,
    log_lock: AbstractContextManager[Any] | None = None,
) -> IssuedReport:
    """Build, sign and log a report of ``user``'s check (view ``report`` in the check log).

    ``log_lock`` is held while the check is written (a server passes one lock for all its
    threads, so they queue for SQLite's write lock instead of polling it)."""
    report = build_report(store, identifier, user=user, key=key, history=history, now=now)
    data = report.canonical_bytes()
    digest = hashlib.sha256(data).hexdigest()
    signature = _sign(data, key, report.file_name, report.report_id)
    page = page_sig = None
    if html_too:
        page = render_html(report, digest)
        page_sig = _sign(page, key, f"{report.report_id}.html", report.report_id)
    entity = store.entity(report.entity.bin)
    assert entity is not None  # build_report found it
    with log_lock or contextlib.nullcontext():
        check_id = store.log_check(
            user_name=user,
            entity_id=entity.id,
            view="report",
            run_id=report.run_id,
            report_sha256=digest,
            at=report.issued_at,
        )
    return IssuedReport(report, data, signature, digest, check_id, page, page_sig)


def write_report(issued: IssuedReport, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``<report_id>.json`` (+ ``.minisig``) and, if built, ``.html`` (+ ``.minisig``)."""
    out = Path(out_dir)
    name = issued.report.report_id
    files: dict[str, bytes | str] = {
        f"{name}.json": issued.json,
        f"{name}.json{SIGNATURE_SUFFIX}": issued.json_signature,
    }
    if issued.html is not None and issued.html_signature is not None:
        files[f"{name}.html"] = issued.html
        files[f"{name}.html{SIGNATURE_SUFFIX}"] = issued.html_signature
    out.mkdir(parents=True, exist_ok=True)
    # Everything goes to a temporary directory first: no report without its signature.
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out))
    try:
        for file_name, content in files.items():
            data = content.encode("utf-8") if isinstance(content, str) else content
            _atomic.write_bytes(tmp / file_name, data)
        for file_name in files:
            os.replace(tmp / file_name, out / file_name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [out / f for f in files]


@dataclass(frozen=True, slots=True)
class VerifiedReport:
    """A report whose signature checked out (``report`` is None for an HTML file)."""

    path: Path
    signature: VerifiedSignature
    sha256: str
    report: EntityReport | None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": str(self.path),
            "signer": self.signature.signer,
            "key_id": self.signature.key_id,
            "trusted_comment": self.signature.trusted_comment,
            "sha256": self.sha256,
        }
        if self.report is not None:
            r = self.report
            out.update(
                report_id=r.report_id,
                user=r.user,
                bin=r.entity.bin,
                issued_at=encode_value(r.issued_at),
                release_id=r.release_id,
                indexes={ix.index: f"{ix.value} {ix.category}" for ix in r.indexes},
            )
        return out


def verify_report(
    path: str | os.PathLike[str],
    keys: PublicKeys,
    *,
    sig_path: str | os.PathLike[str] | None = None,
) -> VerifiedReport:
    """Check a report file against ``path.minisig`` (or ``sig_path``) and ``keys``.

    A JSON report must also parse as an :class:`EntityReport` whose ``key_id`` and
    ``register`` name the key that signed it (``report_signer_mismatch``). A bad or
    missing signature raises :class:`~sample_protocol.errors.SignatureError` (exit 3).
    """
    path = Path(path)
    verified = verify_file(path, keys, sig_path=sig_path)
    with open(path, "rb") as fh:
        data = fh.read(_MAX_REPORT_BYTES + 1)
    digest = hashlib.sha256(data).hexdigest()
    report = None
    if data.lstrip()[:1] != b"<":
        try:
            report = EntityReport.from_json(data, where=f"report {path}")
        except SerdeError as exc:
            raise RegistryRefused(str(exc), code="report_malformed") from None
        except ValidationError as exc:
            raise RegistryRefused(f"report {path}: {exc}", code="report_malformed") from None
        if report.key_id != verified.key_id or report.register != verified.signer:
            raise RegistryRefused(
                f"report {path}: names issuer {report.register} (key {report.key_id}) but was "
                f"signed by {verified.signer} (key {verified.key_id})",
                code="report_signer_mismatch",
            )
    return VerifiedReport(path=path, signature=verified, sha256=digest, report=report)
