"""Batches, feeds and state lists in the SQLite store (design: :mod:`.store`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ._sqlite_base import (
    _FEED_CACHE,
    _PARTS,
    PART_ROWS,
    SqliteBase,
    _from_parquet,
    _parse_ts,
    _to_parquet,
    _ts,
)
from .errors import RegistryRefused, StoreError
from .store import (
    LISTS_SOURCE,
    BatchRecord,
    EntityProfile,
    FeedRecord,
    Ids,
)

__all__ = ["ReceivedTables"]


class ReceivedTables(SqliteBase):
    """What the register received: batches and feeds (Parquet parts), state lists."""

    # -- parts --------------------------------------------------------------------------

    def _write_parts(self, kind: str, owner: int, rows: pa.Table) -> None:
        for part, start in enumerate(range(0, max(rows.num_rows, 1), PART_ROWS)):
            piece = rows.slice(start, PART_ROWS)
            self.conn.execute(_PARTS[kind][0], (owner, part, piece.num_rows, _to_parquet(piece)))

    def _read_parts(self, kind: str, owner: int) -> pa.Table:
        blobs = self.conn.execute(_PARTS[kind][1], (owner,)).fetchall()
        if not blobs:
            raise StoreError(
                f"{self.location}: no rows stored for {kind} {owner}", code="store_missing"
            )
        return pa.concat_tables([_from_parquet(b[0]) for b in blobs])

    # -- batches ------------------------------------------------------------------------

    def has_batch(self, batch_id: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM batches WHERE batch_id = ?", (batch_id,))
        return row.fetchone() is not None

    def add_batch(self, record: BatchRecord, rows: pa.Table) -> BatchRecord:
        with self.transaction():
            try:
                cur = self.conn.execute(
                    "INSERT INTO batches (batch_id, body, source, release_id, as_of, created_at, "
                    "row_count, entities, sha256, sealed, manifest, signature, ingested_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.batch_id,
                        record.body,
                        record.source,
                        record.release_id,
                        record.as_of.isoformat(),
                        _ts(record.created_at),
                        record.row_count,
                        record.entities,
                        record.sha256,
                        int(record.sealed),
                        record.manifest,
                        record.signature,
                        _ts(record.ingested_at),
                    ),
                )
            except sqlite3.IntegrityError as exc:
                if "batch_id" in str(exc):
                    raise RegistryRefused(
                        f"batch {record.batch_id}: already ingested; refusing a replay",
                        code="batch_replayed",
                    ) from None
                raise StoreError(
                    f"batch {record.batch_id}: {exc}", code="store_integrity"
                ) from None
            seq = int(cur.lastrowid or 0)
            self._write_parts("batch", seq, rows)
        return dataclasses.replace(record, seq=seq)

    @staticmethod
    def _batch(row: Sequence[Any]) -> BatchRecord:
        return BatchRecord(
            seq=row[0],
            batch_id=row[1],
            body=row[2],
            source=row[3],
            release_id=row[4],
            as_of=dt.date.fromisoformat(row[5]),
            created_at=_parse_ts(row[6]),
            row_count=row[7],
            entities=row[8],
            sha256=row[9],
            sealed=bool(row[10]),
            manifest=row[11],
            signature=row[12],
            ingested_at=_parse_ts(row[13]),
        )

    def batches(
        self, *, source: str | None = None, release_id: str | None = None
    ) -> list[BatchRecord]:
        sql = (
            "SELECT seq, batch_id, body, source, release_id, as_of, created_at, row_count, "
            "entities, sha256, sealed, manifest, signature, ingested_at FROM batches WHERE 1 = 1"
        )
        params: list[Any] = []
        if source is not None:
            sql += " AND source = ?"
            params.append(source)
        if release_id is not None:
            sql += " AND release_id = ?"
            params.append(release_id)
        return [self._batch(r) for r in self.conn.execute(sql + " ORDER BY seq", params)]

    def batch_rows(self, seq: int) -> pa.Table:
        return self._read_parts("batch", seq)

    # -- feeds --------------------------------------------------------------------------

    def has_feed(self, source: str, sha256: str) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM feeds WHERE source = ? AND sha256 = ?", (source, sha256)
        ).fetchone()
        return row is not None

    def add_feed(
        self,
        record: FeedRecord,
        rows: pa.Table,
        *,
        lists: Mapping[str, Ids] | None = None,
        profiles: Iterable[EntityProfile] = (),
    ) -> FeedRecord:
        with self.transaction():
            try:
                cur = self.conn.execute(
                    "INSERT INTO feeds (source, file_name, sha256, as_of, rows, columns, "
                    "ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.source,
                        record.file_name,
                        record.sha256,
                        record.as_of.isoformat(),
                        record.rows,
                        json.dumps(list(record.columns)),
                        _ts(record.ingested_at),
                    ),
                )
            except sqlite3.IntegrityError:
                raise RegistryRefused(
                    f"feed {record.file_name} ({record.source}): this file (sha256 "
                    f"{record.sha256[:16]}…) was already ingested",
                    code="feed_replayed",
                ) from None
            feed_id = int(cur.lastrowid or 0)
            self._write_parts("feed", feed_id, rows)
            for name, ids in (lists or {}).items():
                self.conn.executemany(
                    "INSERT OR IGNORE INTO list_entries (feed_id, list, entity_id) "
                    "VALUES (?, ?, ?)",
                    ((feed_id, name, int(e)) for e in ids),
                )
            self.update_profiles(profiles, feed_id=feed_id)
        return dataclasses.replace(record, feed_id=feed_id)

    def current_feeds(self) -> dict[str, FeedRecord]:
        rows = self.conn.execute(
            "SELECT feed_id, source, file_name, sha256, as_of, rows, columns, ingested_at "
            "FROM current_feeds ORDER BY source"
        ).fetchall()
        return {
            r[1]: FeedRecord(
                feed_id=r[0],
                source=r[1],
                file_name=r[2],
                sha256=r[3],
                as_of=dt.date.fromisoformat(r[4]),
                rows=r[5],
                columns=tuple(json.loads(r[6])),
                ingested_at=_parse_ts(r[7]),
            )
            for r in rows
        }

    def feed_rows(self, feed_id: int) -> pa.Table:
        return self._read_parts("feed", feed_id)

    def feed_values(self, source: str, entity_id: int) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT feed_id FROM current_feeds WHERE source = ?", (source,)
        ).fetchone()
        if row is None:
            return None
        feed_id = int(row[0])
        cached = self._feed_cache.get(feed_id)
        if cached is None:
            table = self.feed_rows(feed_id)
            keys = table["entity"].to_numpy()
            if len(self._feed_cache) >= _FEED_CACHE:
                self._feed_cache.pop(next(iter(self._feed_cache)))
            cached = self._feed_cache[feed_id] = (keys, table)
        keys, table = cached
        at = int(np.searchsorted(keys, entity_id))
        if at >= len(keys) or keys[at] != entity_id:
            return None
        values: dict[str, Any] = table.slice(at, 1).to_pylist()[0]
        values.pop("entity", None)
        return values

    def lists_of(self, entity_id: int) -> tuple[str, ...]:
        rows = self.conn.execute(
            "SELECT list FROM list_entries WHERE entity_id = ? AND feed_id = "
            "(SELECT feed_id FROM current_feeds WHERE source = ?) ORDER BY list",
            (entity_id, LISTS_SOURCE),
        ).fetchall()
        return tuple(r[0] for r in rows)
