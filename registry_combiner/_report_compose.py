"""A report's body as canonical JSON, composed directly from the store's rows.

:func:`compose_body` gives the same bytes as building the entity's view
(:func:`~registry_combiner.query.entity_view_of`), the report's JSON-shaped document and
:func:`~sample_protocol.serde.canonical_json` of it, cut where the check's three values go
(``issued_at``, ``report_id``, ``user``): keys in sorted order, compact separators, UTF-8,
floats as Python's ``repr``. The parts that repeat from one report to the next (a run's
history point, a coverage, a reason code) are encoded once and kept in a
:class:`Fragments` (one per store: its keys hold the run id, release and time, not the
database). Tests compare the bytes with the document path for every kind of row.

A probability that is not finite has no JSON form: :class:`NotComposable` is raised and the
caller takes the document path, which says why.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from typing import Any

from .query import coverage_of
from .store import (
    CATEGORIES,
    FLAG_OVERRIDDEN,
    FLAG_PARTIAL,
    OVERRIDE_LISTS,
    EntityRecord,
    ReasonCode,
    RunRecord,
    Store,
)

__all__ = ["CHECK_FIELDS", "Fragments", "NotComposable", "compose_body"]

#: The fields of a report that belong to the check, in the order they appear.
CHECK_FIELDS = ("issued_at", "report_id", "user")
_MAX_FRAGMENTS = 65_536


class NotComposable(Exception):
    """The body cannot be composed directly (a value without a JSON form)."""


def _s(value: str | None) -> bytes:
    """A JSON string (or null) as canonical_json writes it."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def _f(value: float) -> bytes:
    if not math.isfinite(value):
        raise NotComposable(f"probability {value!r}")
    return repr(value).encode("ascii")


def _names(mask: int, names: Sequence[str]) -> list[str]:
    return [n for i, n in enumerate(names) if mask & (1 << i)]


def _list(items: Sequence[str]) -> bytes:
    return b"[" + b",".join(_s(i) for i in items) + b"]"


def _object(pairs: dict[str, str]) -> bytes:
    return b"{" + b",".join(_s(k) + b":" + _s(pairs[k]) for k in sorted(pairs)) + b"}"


class Fragments:
    """Encoded parts shared by many reports of one store (bounded; thread-safe)."""

    def __init__(self) -> None:
        self._parts: dict[Any, bytes] = {}
        self._lock = threading.Lock()

    def _get(self, key: Any, make: Any) -> bytes:
        found = self._parts.get(key)
        if found is None:
            found = make()
            with self._lock:
                if len(self._parts) >= _MAX_FRAGMENTS:
                    self._parts.clear()
                self._parts[key] = found
        return found

    @staticmethod
    def _run_key(run: RunRecord) -> tuple[Any, ...]:
        return (run.run_id, run.release_id, run.finished_at)

    def point(self, run: RunRecord) -> tuple[bytes, bytes]:
        """A history point of ``run``: the bytes after the category and after the
        probability (``{"category":C`` + first + P + second + V + ``}``)."""
        key = ("point", self._run_key(run))
        first = self._get(
            (*key, 0),
            lambda: b',"computed_at":' + _s(run.finished_at.isoformat())
            + b',"kind":"ReportPoint","probability":',
        )  # fmt: skip
        second = self._get(
            (*key, 1),
            lambda: b',"release_id":' + _s(run.release_id)
            + b',"run_id":' + str(int(run.run_id)).encode() + b',"value":',
        )  # fmt: skip
        return first, second

    def coverage(self, run: RunRecord, index: str, present: int) -> bytes:
        return self._get(
            ("coverage", self._run_key(run), index, present),
            lambda: _coverage(run, index, present),
        )

    def reason(self, code: ReasonCode) -> bytes:
        return self._get(
            ("reason", code),
            lambda: b'{"code":' + _s(code.code) + b',"factor":' + _s(code.factor)
            + b',"input":' + _s(code.kind) + b',"kind":"ReportReason","source":'
            + _s(code.source) + b"}",
        )  # fmt: skip

    def text(self, value: str) -> bytes:
        return self._get(("text", value), lambda: _s(value))


def _coverage(run: RunRecord, index: str, present: int) -> bytes:
    cov = coverage_of(run, index, present)
    return (
        b'{"direct":' + _object(cov["direct"]) + b',"kind":"ReportCoverage","preliminary":'
        + _object(cov["preliminary"]) + b"}"
    )  # fmt: skip


def _entity(e: EntityRecord) -> bytes:
    date = None if e.registration_date is None else e.registration_date.isoformat()
    return (
        b'{"bin":' + _s(e.bin) + b',"entity_kind":' + _s(e.kind) + b',"kind":"ReportEntity"'
        + b',"legal_form":' + _s(e.legal_form) + b',"name":' + _s(e.name)
        + b',"oked":' + _s(e.oked) + b',"region":' + _s(e.region)
        + b',"registration_date":' + _s(date) + b',"status":' + _s(e.status) + b"}"
    )  # fmt: skip


def _bool(value: bool) -> bytes:
    return b"true" if value else b"false"


def compose_body(
    store: Store,
    entity: EntityRecord,
    *,
    register: str,
    key_id: str,
    history: int,
    fragments: Fragments | None = None,
) -> tuple[int | None, tuple[bytes, bytes, bytes, bytes]]:
    """The run id and the canonical JSON of the report of ``entity``, cut around the
    values of :data:`CHECK_FIELDS` (four pieces; module notes)."""
    frag = fragments or Fragments()
    found = store.result_rows(entity.id, runs=max(1, history))
    codes = store.reason_codes() if found else {}
    lists = list(store.lists_of(entity.id))
    notes: list[str] = []
    run_id: int | None = None
    head = b'{"computed_at":null'
    release = b"null"
    indexes: list[bytes] = []
    if not found:
        notes.append("no indexes yet: the register has not combined this entity")
    else:
        past: dict[str, list[bytes]] = {}
        for r, rows in found:
            names = r.indexes
            first, second = frag.point(r)
            for row in rows:
                past.setdefault(names[row["index"]], []).append(
                    b'{"category":' + frag.text(CATEGORIES[row["category"]]) + first
                    + _f(round(row["probability"], 4)) + second + str(row["value"]).encode()
                    + b"}"
                )  # fmt: skip
        run, rows = found[0]
        run_id = int(run.run_id)
        head = b'{"computed_at":' + frag.text(run.finished_at.isoformat())
        release = frag.text(run.release_id)
        partial: list[str] = []
        for row in rows:
            name = run.indexes[row["index"]]
            flags = row["flags"]
            if flags & FLAG_PARTIAL:
                partial.append(name)
            reasons = []
            for i in (1, 2, 3, 4):
                code = codes.get(row[f"reason{i}"]) if row[f"reason{i}"] else None
                if code is not None:
                    reasons.append(frag.reason(code))
            indexes.append(
                b'{"category":' + frag.text(CATEGORIES[row["category"]])
                + b',"coverage":' + frag.coverage(run, name, row["present"])
                + b',"history":[' + b",".join(past.get(name, [])) + b"]"
                + b',"index":' + frag.text(name) + b',"kind":"ReportIndex","overridden":'
                + _bool(bool(flags & FLAG_OVERRIDDEN)) + b',"overrides":'
                + _list(_names(row["overrides"], OVERRIDE_LISTS))
                + b',"partial":' + _bool(bool(flags & FLAG_PARTIAL))
                + b',"probability":' + _f(round(row["probability"], 4))
                + b',"reasons":[' + b",".join(reasons) + b'],"value":'
                + str(int(row["value"])).encode() + b"}"
            )  # fmt: skip
        if partial:
            notes.append(
                "partial: a source the combiner expects did not deliver for this entity "
                f"({', '.join(partial)}; see coverage)"
            )
    pieces = (
        head + b',"entity":' + _entity(entity) + b',"indexes":[' + b",".join(indexes)
        + b'],"issued_at":',
        b',"key_id":' + _s(key_id) + b',"kind":"EntityReport","lists":' + _list(lists)
        + b',"notes":' + _list(notes) + b',"register":' + _s(register)
        + b',"release_id":' + release + b',"report_id":',
        b',"run_id":' + (b"null" if run_id is None else str(run_id).encode()) + b',"user":',
        b"}",
    )  # fmt: skip
    return run_id, pieces
