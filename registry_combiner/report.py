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

A report is an entity's **body** (entity, lists, run, indexes, notes, issuer) plus three
fields of the check: ``issued_at``, ``report_id`` and ``user``. A server keeps recent bodies
in a :class:`ReportCache`, keyed by the entity's row and the store's
:meth:`~registry_combiner.store.Store.generation` (a new run or feed is a new key, so a
cached body is never stale), together with its canonical JSON cut around the three fields;
a report's bytes are then those pieces and the three values, byte for byte what
:meth:`EntityReport.canonical_bytes` gives (tests compare them).

The HTML page is :func:`~registry_combiner._report_html.render_html`; the free basic view
of para 37 is :mod:`registry_combiner.basic_view`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Hashable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sample_protocol import _atomic
from sample_protocol.errors import SerdeError, ValidationError
from sample_protocol.keys import PublicKeys, SecretKey
from sample_protocol.records_base import new_record_id
from sample_protocol.serde import Record, canonical_json, encode_value
from sample_protocol.signing import (
    SIGNATURE_SUFFIX,
    VerifiedSignature,
    default_trusted_comment,
    sign_bytes,
    verify_file,
)

from ._report_compose import CHECK_FIELDS, Fragments, NotComposable, compose_body
from ._report_html import render_html
from .errors import RegistryRefused
from .query import entity_view_of, find_entity
from .store import CATEGORIES, EntityRecord, Store

__all__ = [
    "EntityReport",
    "IssuedReport",
    "ReportCache",
    "ReportCoverage",
    "ReportEntity",
    "ReportIndex",
    "ReportPoint",
    "ReportReason",
    "SignedReport",
    "VerifiedReport",
    "build_report",
    "issue_report",
    "render_html",
    "sign_report",
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


def _float(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise SerdeError(f"expected a finite number, found {number!r}")
    return number


def _entity_doc(e: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": ReportEntity.kind(),
        "bin": e["bin"],
        "entity_kind": e["kind"],
        "name": e["name"],
        "legal_form": e["legal_form"],
        "status": e["status"],
        "registration_date": encode_value(e["registration_date"]),
        "region": e["region"],
        "oked": e["oked"],
    }


def _index_doc(ix: dict[str, Any]) -> dict[str, Any]:
    cov = ix["coverage"]
    return {
        "kind": ReportIndex.kind(),
        "index": ix["index"],
        "value": int(ix["value"]),
        "category": ix["category"],
        "probability": _float(ix["probability"]),
        "partial": bool(ix["partial"]),
        "overridden": bool(ix["overridden"]),
        "overrides": list(ix["overrides"]),
        "reasons": [
            {
                "kind": ReportReason.kind(),
                "code": r["code"],
                "source": r["source"],
                "factor": r["factor"],
                "input": r["kind"],
            }
            for r in ix["reasons"]
        ],
        "coverage": {
            "kind": ReportCoverage.kind(),
            "preliminary": encode_value(dict(cov["preliminary"])),
            "direct": encode_value(dict(cov["direct"])),
        },
        "history": [
            {
                "kind": ReportPoint.kind(),
                "run_id": h["run_id"],
                "release_id": h["release_id"],
                "computed_at": encode_value(h["computed_at"]),
                "value": h["value"],
                "category": h["category"],
                "probability": encode_value(h["probability"]),
            }
            for h in ix["history"]
        ],
    }


def _report_doc(view: dict[str, Any], key: SecretKey) -> dict[str, Any]:
    """``EntityReport.to_dict()`` of the report of ``view`` (an :func:`entity_view_of`),
    built directly, without the record (its check's fields are empty strings here).

    The record's classes stay the schema: tests check that these are the bytes of the
    records the view maps to, and that they decode to an :class:`EntityReport` and
    re-encode to the same bytes."""
    run = view["run"]
    indexes = [_index_doc(ix) for ix in view["indexes"]]
    notes: list[str] = []
    if run is None:
        notes.append("no indexes yet: the register has not combined this entity")
    partial = [ix["index"] for ix in indexes if ix["partial"]]
    if partial:
        notes.append(
            "partial: a source the combiner expects did not deliver for this entity "
            f"({', '.join(partial)}; see coverage)"
        )
    return {
        "kind": EntityReport.kind(),
        "report_id": "",
        "issued_at": "",
        "register": key.name,
        "key_id": key.key_id,
        "user": "",
        "entity": _entity_doc(view["entity"]),
        "lists": list(view["lists"]),
        "run_id": None if run is None else int(run["run_id"]),
        "release_id": None if run is None else run["release_id"],
        "computed_at": None if run is None else encode_value(run["computed_at"]),
        "indexes": indexes,
        "notes": notes,
    }


def _marker(name: str) -> str:
    return f"\x00{name}\x00"


def _json_string(value: str) -> bytes:
    # the encoder canonical_json uses for every string value
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True, slots=True)
class _Body:
    """A report of one entity without its check: its canonical JSON cut where the values
    of the check's fields go (``pieces``, in ``order``), or, when such a cut would be
    ambiguous, its JSON-shaped form ``doc`` (the check's fields empty)."""

    entity_id: int
    run_id: int | None
    pieces: tuple[bytes, ...] | None
    order: tuple[str, ...]
    doc: dict[str, Any] | None = None

    @classmethod
    def of(cls, doc: dict[str, Any], entity_id: int) -> _Body:
        marked = dict(doc)
        for name in CHECK_FIELDS:
            marked[name] = _marker(name)
        raw = canonical_json(marked)
        found: list[tuple[int, str, bytes]] = []
        for name in CHECK_FIELDS:
            token = _json_string(_marker(name))
            if raw.count(token) != 1:  # the marker's text is in the data too: no cut
                return cls(entity_id, doc["run_id"], None, (), doc)
            found.append((raw.index(token), name, token))
        found.sort()
        pieces: list[bytes] = []
        start = 0
        for at, _, token in found:
            pieces.append(raw[start:at])
            start = at + len(token)
        pieces.append(raw[start:])
        order = tuple(name for _, name, _ in found)
        return cls(entity_id, doc["run_id"], tuple(pieces), order)

    def canonical_bytes(self, *, issued_at: dt.datetime, report_id: str, user: str) -> bytes:
        """The canonical JSON bytes of the report of this check."""
        values = {"issued_at": encode_value(issued_at), "report_id": report_id, "user": user}
        if self.pieces is None:
            assert self.doc is not None
            return canonical_json({**self.doc, **values})
        out = [self.pieces[0]]
        for name, piece in zip(self.order, self.pieces[1:], strict=True):
            out.append(_json_string(values[name]))
            out.append(piece)
        return b"".join(out)


def _document_body(store: Store, entity: EntityRecord, *, key: SecretKey, history: int) -> _Body:
    """The body by way of the entity's view and the report's document (the reference)."""
    view = entity_view_of(store, entity, history=history)
    return _Body.of(_report_doc(view, key), entity.id)


def _build_body(
    store: Store,
    entity: EntityRecord,
    *,
    key: SecretKey,
    history: int,
    fragments: Fragments | None = None,
) -> _Body:
    """The body composed directly (:mod:`._report_compose`, the same bytes), or by way of
    the document when a value has no JSON form (which that path then reports)."""
    try:
        run_id, pieces = compose_body(
            store, entity, register=key.name, key_id=key.key_id, history=history,
            fragments=fragments,
        )  # fmt: skip
    except NotComposable:
        return _document_body(store, entity, key=key, history=history)
    return _Body(entity.id, run_id, pieces, CHECK_FIELDS)


class ReportCache:
    """Bodies of recently reported entities, shared by a server's threads (LRU).

    The key holds everything a body depends on: the entity's row, the store's generation
    (:meth:`~registry_combiner.store.Store.generation`), the history length and the
    signing key. A new run or feed changes the generation, a new profile the row, so a
    body is never served stale; old keys just age out.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = max(0, int(capacity))
        self._bodies: OrderedDict[Hashable, _Body] = OrderedDict()
        self._lock = threading.Lock()
        #: Encoded parts shared by the bodies (runs, coverages, reason codes).
        self.fragments = Fragments()

    def __len__(self) -> int:
        return len(self._bodies)

    def get(self, key: Hashable) -> _Body | None:
        with self._lock:
            found = self._bodies.get(key)
            if found is not None:
                self._bodies.move_to_end(key)
            return found

    def put(self, key: Hashable, body: _Body) -> None:
        with self._lock:
            self._bodies[key] = body
            self._bodies.move_to_end(key)
            while len(self._bodies) > self.capacity:
                self._bodies.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._bodies.clear()


def _body(
    store: Store,
    identifier: str,
    *,
    key: SecretKey,
    history: int,
    cache: ReportCache | None = None,
) -> _Body:
    """The body of a report of ``identifier``: from ``cache``, or read in one snapshot."""
    with store.snapshot():
        entity = find_entity(store, identifier)
        if cache is None:
            return _build_body(store, entity, key=key, history=history)
        cache_key = (entity, store.generation(), history, key.name, key.key_id)
        found = cache.get(cache_key)
        if found is not None:
            return found
        body = _build_body(store, entity, key=key, history=history, fragments=cache.fragments)
    cache.put(cache_key, body)
    return body


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
    body = _body(store, identifier, key=key, history=history)
    when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    data = body.canonical_bytes(issued_at=when, report_id=new_record_id("rep", now=when), user=user)
    return EntityReport.from_json(data)


# -- issue, write, verify -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedReport:
    """A signed report: its JSON bytes and signature, and (if asked) the signed HTML.

    :attr:`report` is the record the JSON bytes encode, decoded from them when first
    asked for (a server that hands out the bytes never needs it)."""

    report_id: str
    json: bytes
    json_signature: str
    sha256: str
    check_id: int
    html: bytes | None = None
    html_signature: str | None = None
    _record: EntityReport | None = field(default=None, repr=False, compare=False)

    @property
    def report(self) -> EntityReport:
        if self._record is None:
            object.__setattr__(self, "_record", EntityReport.from_json(self.json))
        assert self._record is not None
        return self._record


def _sign(data: bytes, key: SecretKey, file_name: str, report_id: str) -> str:
    comment = default_trusted_comment(key, file_name=file_name) + f"\treport:{report_id}"
    return sign_bytes(data, key, trusted_comment=comment)


@dataclass(frozen=True, slots=True)
class SignedReport:
    """A signed report whose check is not logged yet (:func:`sign_report`): a server that
    writes the checks of several look-ups in one transaction holds these meanwhile."""

    report_id: str
    json: bytes
    json_signature: str
    sha256: str
    entity_id: int
    run_id: int | None
    user: str
    issued_at: dt.datetime
    html: bytes | None = None
    html_signature: str | None = None
    record: EntityReport | None = None

    def check(self) -> dict[str, Any]:
        """The keyword arguments of :meth:`~registry_combiner.store.Store.log_check`."""
        return {
            "user_name": self.user,
            "entity_id": self.entity_id,
            "view": "report",
            "run_id": self.run_id,
            "report_sha256": self.sha256,
            "at": self.issued_at,
        }

    def logged(self, check_id: int) -> IssuedReport:
        """The issued report, once its check is logged as ``check_id``."""
        return IssuedReport(
            self.report_id, self.json, self.json_signature, self.sha256, check_id,
            self.html, self.html_signature, self.record,
        )  # fmt: skip


def sign_report(
    store: Store,
    identifier: str,
    *,
    user: str,
    key: SecretKey,
    html_too: bool = True,
    history: int = 5,
    now: dt.datetime | None = None,
    cache: ReportCache | None = None,
) -> SignedReport:
    """Build and sign the report of ``user``'s check, without logging the check: a report
    must not be handed out before :meth:`SignedReport.check` is in the check log
    (:func:`issue_report` does both)."""
    body = _body(store, identifier, key=key, history=history, cache=cache)
    when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    report_id = new_record_id("rep", now=when)
    data = body.canonical_bytes(issued_at=when, report_id=report_id, user=user)
    digest = hashlib.sha256(data).hexdigest()
    signature = _sign(data, key, f"{report_id}.json", report_id)
    record = page = page_sig = None
    if html_too:
        record = EntityReport.from_json(data)
        page = render_html(record, digest)
        page_sig = _sign(page, key, f"{report_id}.html", report_id)
    return SignedReport(
        report_id, data, signature, digest, body.entity_id, body.run_id, user, when,
        page, page_sig, record,
    )  # fmt: skip


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
    cache: ReportCache | None = None,
) -> IssuedReport:
    """Build, sign and log a report of ``user``'s check (view ``report`` in the check log).

    ``log_lock`` is held while the check is written (a server passes one lock for all its
    threads, so they queue for SQLite's write lock instead of polling it); ``cache`` keeps
    the bodies of recent reports (a server passes one for all its threads)."""
    signed = sign_report(
        store, identifier, user=user, key=key, html_too=html_too, history=history, now=now,
        cache=cache,
    )  # fmt: skip
    with log_lock or contextlib.nullcontext():
        check_id = store.log_check(**signed.check())
    return signed.logged(check_id)


def write_report(issued: IssuedReport, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``<report_id>.json`` (+ ``.minisig``) and, if built, ``.html`` (+ ``.minisig``)."""
    out = Path(out_dir)
    name = issued.report_id
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
