"""Shared pieces of the SQLite store: constants, codecs and the base of its parts."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .store import EntityProfile, ReasonCode, RunRecord

__all__ = ["PART_ROWS", "SqliteBase"]

#: Rows per Parquet part of a batch or a feed.
PART_ROWS = 1 << 20
_BUSY_MS = 60_000
_FEED_CACHE = 16
_WORD = re.compile(r"\w+", re.UNICODE)
_ENTITY_SELECT = (
    "SELECT e.id, e.bin, e.kind, e.name, e.legal_form, e.status, e.head_surname, "
    "e.head_first_name, e.head_patronymic, e.registration_date, e.region, e.oked, "
    "e.first_seen FROM entities e "
)
_ENTITY_BY = {
    "id": _ENTITY_SELECT + "WHERE e.id = ?",
    "bin": _ENTITY_SELECT + "WHERE e.bin = ?",
}
_SEARCH = (
    _ENTITY_SELECT + "JOIN entities_fts f ON f.rowid = e.id WHERE entities_fts MATCH ? "
    "AND (? IS NULL OR e.legal_form = ?) ORDER BY f.rank LIMIT ?"
)
#: Up to this many identifiers are looked up one by one; more, and the table is scanned.
_LOOKUP_MAX = 20_000
#: (insert, select) of the Parquet parts of a batch / a feed.
_PARTS = {
    "batch": (
        "INSERT INTO batch_parts (batch_seq, part, rows, data) VALUES (?, ?, ?, ?)",
        "SELECT data FROM batch_parts WHERE batch_seq = ? ORDER BY part",
    ),
    "feed": (
        "INSERT INTO feed_parts (feed_id, part, rows, data) VALUES (?, ?, ?, ?)",
        "SELECT data FROM feed_parts WHERE feed_id = ? ORDER BY part",
    ),
}
_CHECKS = (
    "SELECT c.check_id, c.user_name, c.entity_id, e.bin, c.checked_at, c.view, c.run_id, "
    "c.report_sha256 FROM check_log c JOIN entities e ON e.id = c.entity_id "
)
_CHECKS_BY = {
    "entity": _CHECKS + "WHERE c.entity_id = ? ORDER BY c.checked_at DESC, c.check_id DESC LIMIT ?",
    "user": _CHECKS + "WHERE c.user_name = ? ORDER BY c.checked_at DESC, c.check_id DESC LIMIT ?",
}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _ts(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


def _parse_ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _parse_date(text: str | None) -> dt.date | None:
    return None if text is None else dt.date.fromisoformat(text)


def _to_parquet(table: pa.Table) -> memoryview:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", compression_level=1)
    return memoryview(sink.getvalue())


def _from_parquet(blob: bytes) -> pa.Table:
    return pq.read_table(pa.BufferReader(blob))


def _fts_query(text: str) -> str | None:
    """A safe FTS5 query: every word of ``text`` as a quoted prefix, all required."""
    words = _WORD.findall(text)[:12]
    if not words:
        return None
    return " AND ".join('"' + w.replace('"', "") + '"*' for w in words)


class SqliteBase:
    """What the parts of :class:`~registry_combiner.store_sqlite.SqliteStore` share."""

    conn: sqlite3.Connection
    location: str
    _feed_cache: dict[int, tuple[Any, pa.Table]]
    _run_cache: dict[int, RunRecord]
    _run_ids: tuple[int | None, list[int]]
    _reasons: tuple[int | None, dict[int, ReasonCode]]
    _busy_ms: int
    _depth: int

    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def update_profiles(self, profiles: Iterable[EntityProfile], *, feed_id: int) -> int:
        raise NotImplementedError
