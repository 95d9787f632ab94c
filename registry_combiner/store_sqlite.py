"""The SQLite implementation of :class:`~registry_combiner.store.Store` (design: :mod:`.store`)."""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._sqlite_base import (
    _BUSY_MS,
    _ENTITY_BY,
    _LOOKUP_MAX,
    _SEARCH,
    PART_ROWS,
    _fts_query,
    _now,
    _parse_date,
    _parse_ts,
    _ts,
)
from ._sqlite_computed import ComputedTables
from ._sqlite_received import ReceivedTables
from .errors import StoreError
from .store import (
    EntityProfile,
    EntityRecord,
    Ids,
    ReasonCode,
    ReleaseRecord,
    RunRecord,
)
from .store_schema import SCHEMA_VERSION, current_version, migrate

__all__ = ["PART_ROWS", "SqliteStore"]


class SqliteStore(ReceivedTables, ComputedTables):
    """The store in one SQLite file (WAL, foreign keys on); one object per thread."""

    def __init__(
        self,
        path: str | Path,
        *,
        readonly: bool = False,
        busy_ms: int = _BUSY_MS,
        wal_autocheckpoint: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.readonly = readonly
        self._depth = 0
        self._busy_ms = max(0, int(busy_ms))
        self._feed_cache: dict[int, tuple[Any, pa.Table]] = {}
        self._run_cache: dict[int, RunRecord] = {}
        self._run_ids: tuple[int | None, list[int]] = (None, [])
        self._reasons: tuple[int | None, dict[int, ReasonCode]] = (None, {})
        where = f"register database {self.path}"
        try:
            if readonly:
                uri = f"file:{self.path}?mode=ro"
                self.conn = sqlite3.connect(uri, uri=True, isolation_level=None)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(self.path, isolation_level=None)
            self.conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            self.conn.execute("PRAGMA foreign_keys = ON")
            if not readonly:
                self.conn.execute("PRAGMA journal_mode = WAL")
                self.conn.execute("PRAGMA synchronous = NORMAL")
                if wal_autocheckpoint is not None:
                    self.conn.execute(f"PRAGMA wal_autocheckpoint = {int(wal_autocheckpoint)}")
            self.conn.execute("PRAGMA temp_store = MEMORY")
            if readonly:
                found = current_version(self.conn)
                if found != SCHEMA_VERSION:
                    raise StoreError(
                        f"{where}: expected schema version {SCHEMA_VERSION}, found {found} "
                        "(open it writable once to migrate)",
                        code="store_version",
                    )
            else:
                migrate(self.conn, where=where)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{where}: cannot open ({exc})", code="store_unusable") from None

    def __repr__(self) -> str:
        return f"SqliteStore({self.location!r})"

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def schema_version(self) -> int:
        return current_version(self.conn)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreError(
                f"{self.location}: cannot start a write ({exc}); another process held the "
                f"database for more than {self._busy_ms / 1000:g} s, try again",
                code="store_busy",
            ) from None
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self.conn.execute("COMMIT")

    def checkpoint(self) -> None:
        # PASSIVE: copy what it can without waiting for (or blocking) readers and writers
        self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        if self._depth or self.conn.in_transaction:  # a transaction is one snapshot already
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            if self.conn.in_transaction:
                self.conn.execute("COMMIT")

    # -- releases -----------------------------------------------------------------------

    def record_release(self, release: ReleaseRecord) -> bool:
        with self.transaction():
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO releases (release_id, sequence, lab, created_at, "
                "expires_at, manifest_sha256, verified_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    release.release_id,
                    release.sequence,
                    release.lab,
                    _ts(release.created_at),
                    _ts(release.expires_at),
                    release.manifest_sha256,
                    _ts(release.verified_at),
                ),
            )
            return cur.rowcount == 1

    @staticmethod
    def _release(row: Sequence[Any]) -> ReleaseRecord:
        return ReleaseRecord(
            release_id=row[0],
            sequence=row[1],
            lab=row[2],
            created_at=_parse_ts(row[3]),
            expires_at=_parse_ts(row[4]),
            manifest_sha256=row[5],
            verified_at=_parse_ts(row[6]),
        )

    def release(self, release_id: str) -> ReleaseRecord | None:
        row = self.conn.execute(
            "SELECT release_id, sequence, lab, created_at, expires_at, manifest_sha256, "
            "verified_at FROM releases WHERE release_id = ?",
            (release_id,),
        ).fetchone()
        return None if row is None else self._release(row)

    def releases(self) -> list[ReleaseRecord]:
        rows = self.conn.execute(
            "SELECT release_id, sequence, lab, created_at, expires_at, manifest_sha256, "
            "verified_at FROM releases ORDER BY sequence, release_id"
        ).fetchall()
        return [self._release(r) for r in rows]

    # -- entities -----------------------------------------------------------------------

    def ensure_entities(self, bins: pa.Array | pa.ChunkedArray | Sequence[str]) -> Ids:
        if isinstance(bins, pa.ChunkedArray):
            arr = bins.combine_chunks()
        elif isinstance(bins, pa.Array):
            arr = bins
        else:
            arr = pa.array(list(bins), type=pa.string())
        arr = arr.cast(pa.string())
        if len(arr) == 0:
            return np.zeros(0, dtype=np.int64)
        uniq = pc.unique(arr)
        with self.transaction():  # the write lock: nobody else adds entities meanwhile
            known_bins, known_ids = self._known(uniq)
            at = pc.fill_null(pc.index_in(uniq, value_set=known_bins), -1)
            at = np.asarray(at.to_numpy(zero_copy_only=False), dtype=np.int64)
            found = at >= 0
            ids = np.zeros(len(uniq), dtype=np.int64)
            ids[found] = known_ids[at[found]]
            new = uniq.filter(pa.array(~found))
            if len(new):
                start = self.max_entity_id() + 1
                fifth = pc.utf8_slice_codeunits(new, 4, 5)
                legal = pc.is_in(fifth, value_set=pa.array(["4", "5", "6"]))
                kinds = pc.if_else(legal, "legal", "individual")
                now = _now()
                self.conn.executemany(
                    "INSERT INTO entities (id, bin, kind, first_seen) VALUES (?, ?, ?, ?)",
                    zip(
                        range(start, start + len(new)),
                        new.to_pylist(),
                        kinds.to_pylist(),
                        itertools.repeat(now),
                        strict=False,
                    ),
                )
                ids[~found] = np.arange(start, start + len(new), dtype=np.int64)
        positions = pc.index_in(arr, value_set=uniq).to_numpy(zero_copy_only=False)
        out: Ids = ids[positions.astype(np.int64)]
        return out

    def _known(self, bins: pa.Array) -> tuple[pa.Array, Ids]:
        """(bin, id) of the entities among ``bins``: looked up for a few, scanned for many."""
        rows: list[tuple[int, str]] = []
        if len(bins) <= _LOOKUP_MAX:
            values = bins.to_pylist()
            for i in range(0, len(values), 500):
                part = values[i : i + 500]
                rows += self.conn.execute(
                    "SELECT id, bin FROM entities WHERE bin IN (SELECT value FROM json_each(?))",
                    (json.dumps(part),),
                ).fetchall()
        else:
            rows = self.conn.execute("SELECT id, bin FROM entities").fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        return pa.array([r[1] for r in rows], pa.string()), ids

    @staticmethod
    def _entity(row: Sequence[Any]) -> EntityRecord:
        return EntityRecord(
            id=row[0],
            bin=row[1],
            kind=row[2],
            name=row[3],
            legal_form=row[4],
            status=row[5],
            head_surname=row[6],
            head_first_name=row[7],
            head_patronymic=row[8],
            registration_date=_parse_date(row[9]),
            region=row[10],
            oked=row[11],
            first_seen=_parse_ts(row[12]),
        )

    def entity(self, bin_or_id: str | int) -> EntityRecord | None:
        sql = _ENTITY_BY["id" if isinstance(bin_or_id, int) else "bin"]
        row = self.conn.execute(sql, (bin_or_id,)).fetchone()
        return None if row is None else self._entity(row)

    def max_entity_id(self) -> int:
        row = self.conn.execute("SELECT max(id) FROM entities").fetchone()
        return int(row[0] or 0)

    def entity_bins(self) -> pa.Table:
        rows = self.conn.execute("SELECT id, bin FROM entities ORDER BY id").fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        return pa.table({"id": ids, "bin": pa.array([r[1] for r in rows], pa.string())})

    def update_profiles(self, profiles: Iterable[EntityProfile], *, feed_id: int) -> int:
        rows = [
            (
                p.name,
                p.legal_form,
                p.status,
                p.head_surname,
                p.head_first_name,
                p.head_patronymic,
                None if p.registration_date is None else p.registration_date.isoformat(),
                p.region,
                p.oked,
                feed_id,
                p.bin,
            )
            for p in profiles
        ]
        if not rows:
            return 0
        with self.transaction():
            c = self.conn
            c.executemany(
                "UPDATE entities SET name = coalesce(?, name), legal_form = coalesce(?, "
                "legal_form), status = coalesce(?, status), head_surname = coalesce(?, "
                "head_surname), head_first_name = coalesce(?, head_first_name), "
                "head_patronymic = coalesce(?, head_patronymic), registration_date = "
                "coalesce(?, registration_date), region = coalesce(?, region), oked = "
                "coalesce(?, oked), profile_feed = ? WHERE bin = ?",
                rows,
            )
            c.execute(
                "DELETE FROM entities_fts WHERE rowid IN "
                "(SELECT id FROM entities WHERE profile_feed = ?)",
                (feed_id,),
            )
            c.execute(
                "INSERT INTO entities_fts (rowid, name, legal_form, head_surname, "
                "head_first_name, head_patronymic) SELECT id, name, legal_form, head_surname, "
                "head_first_name, head_patronymic FROM entities WHERE profile_feed = ?",
                (feed_id,),
            )
        return len(rows)

    def search_entities(
        self, query: str, *, legal_form: str | None = None, limit: int = 20
    ) -> list[EntityRecord]:
        limit = max(1, min(int(limit), 1000))
        text = query.strip()
        if re.fullmatch(r"[0-9]{12}", text):
            found = self.entity(text)
            return [] if found is None else [found]
        match = _fts_query(text)
        if match is None:
            return []
        form = legal_form or None
        rows = self.conn.execute(_SEARCH, (match, form, form, limit)).fetchall()
        return [self._entity(r) for r in rows]
