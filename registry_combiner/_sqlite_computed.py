"""Runs, results and the check log in the SQLite store (design: :mod:`.store`)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa

from ._result_chunks import chunk_table, entity_rows, pack_chunks
from ._sqlite_base import (
    _CHECKS_BY,
    SqliteBase,
    _now,
    _parse_ts,
    _ts,
)
from .errors import StoreError
from .store import (
    CHUNK_ENTITIES,
    RESULT_SCHEMA,
    CheckRecord,
    ReasonCode,
    RunRecord,
)

__all__ = ["ComputedTables"]

_LOG_CHECK = (
    "INSERT INTO check_log (user_name, entity_id, checked_at, view, run_id, report_sha256) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


class ComputedTables(SqliteBase):
    """What the register computed and served: reason codes, runs and results, checks."""

    # -- runs and results ---------------------------------------------------------------

    def reason_code_ids(self, codes: Iterable[ReasonCode]) -> dict[str, int]:
        wanted = list(codes)
        with self.transaction():
            self.conn.executemany(
                "INSERT OR IGNORE INTO reason_codes (code, source, factor, kind) "
                "VALUES (?, ?, ?, ?)",
                ((c.code, c.source, c.factor, c.kind) for c in wanted),
            )
        rows = self.conn.execute("SELECT code, id FROM reason_codes").fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def reason_codes(self) -> dict[int, ReasonCode]:
        # Codes are only ever added (never changed or deleted): re-read when a new one is.
        top = self.conn.execute("SELECT max(id) FROM reason_codes").fetchone()[0]
        if top != self._reasons[0]:
            rows = self.conn.execute("SELECT id, code, source, factor, kind FROM reason_codes")
            codes = {
                int(r[0]): ReasonCode(code=r[1], source=r[2], factor=r[3], kind=r[4]) for r in rows
            }
            self._reasons = (top, codes)
        return dict(self._reasons[1])

    def write_run(self, run: RunRecord, chunks: Iterable[pa.Table]) -> RunRecord:
        # Compute and serialise every chunk first (packed records, LZ4, ~17 bytes a row:
        # :mod:`._result_chunks`), so the write lock is held only for the inserts, not for
        # the whole combine.
        packed: list[tuple[int, int, int, bytes]] = []
        for table in chunks:
            if table.num_rows == 0:
                continue
            if table.schema != RESULT_SCHEMA:
                raise StoreError(
                    f"{self.location}: a result chunk's schema differs from RESULT_SCHEMA",
                    code="store_schema",
                )
            for item in pack_chunks(table, CHUNK_ENTITIES, where=self.location):
                if packed and item[0] <= packed[-1][1]:
                    raise StoreError(
                        f"{self.location}: result tables overlap or are out of entity order "
                        f"(entity {item[0]} after {packed[-1][1]})",
                        code="store_schema",
                    )
                packed.append(item)
        finished = dt.datetime.now(dt.UTC)
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO runs (release_id, started_at, finished_at, entities, meta) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    run.release_id,
                    _ts(run.started_at),
                    _ts(finished),
                    run.entities,
                    json.dumps(run.meta, sort_keys=True),
                ),
            )
            run_id = int(cur.lastrowid or 0)
            self.conn.executemany(
                "INSERT INTO result_chunks (run_id, first_entity, last_entity, rows, data) "
                "VALUES (?, ?, ?, ?, ?)",
                ((run_id, *item) for item in packed),
            )
        return RunRecord(
            run_id=run_id,
            release_id=run.release_id,
            started_at=run.started_at,
            finished_at=finished,
            entities=run.entities,
            meta=run.meta,
        )

    @staticmethod
    def _run(row: Sequence[Any]) -> RunRecord:
        return RunRecord(
            run_id=row[0],
            release_id=row[1],
            started_at=_parse_ts(row[2]),
            finished_at=_parse_ts(row[3]),
            entities=row[4],
            meta=json.loads(row[5]),
        )

    def runs(self, *, limit: int = 20) -> list[RunRecord]:
        rows = self.conn.execute(
            "SELECT run_id, release_id, started_at, finished_at, entities, meta FROM runs "
            "ORDER BY run_id DESC LIMIT ?",
            (max(1, int(limit)),),
        ).fetchall()
        return [self._run(r) for r in rows]

    def latest_run(self) -> RunRecord | None:
        found = self.runs(limit=1)
        return found[0] if found else None

    def _run_by_id(self, run_id: int) -> RunRecord:
        cached = self._run_cache.get(run_id)
        if cached is None:  # runs never change once written: parse each one once
            row = self.conn.execute(
                "SELECT run_id, release_id, started_at, finished_at, entities, meta FROM runs "
                "WHERE run_id = ?",
                (run_id,),
            ).fetchone()
            cached = self._run_cache[run_id] = self._run(row)
        return cached

    def generation(self) -> tuple[int, int]:
        row = self.conn.execute(
            "SELECT (SELECT max(run_id) FROM runs), (SELECT max(feed_id) FROM feeds)"
        ).fetchone()
        return int(row[0] or 0), int(row[1] or 0)

    def _run_ids_newest_first(self) -> list[int]:
        # Runs are only ever added, with growing ids: re-read the list when a new one is.
        top = self.conn.execute("SELECT max(run_id) FROM runs").fetchone()[0]
        if top != self._run_ids[0]:
            ids = [r[0] for r in self.conn.execute("SELECT run_id FROM runs ORDER BY run_id DESC")]
            self._run_ids = (top, ids)
        return self._run_ids[1]

    def _entity_chunks(self, entity_id: int) -> Iterator[tuple[RunRecord, Any]]:
        """(run, blob of the chunk whose range holds ``entity_id``), newest run first."""
        for run_id in self._run_ids_newest_first():
            chunk = self.conn.execute(
                "SELECT data, last_entity FROM result_chunks WHERE run_id = ? AND "
                "first_entity <= ? ORDER BY first_entity DESC LIMIT 1",
                (run_id, entity_id),
            ).fetchone()
            if chunk is not None and chunk[1] >= entity_id:
                yield self._run_by_id(run_id), chunk[0]

    def result_rows(
        self, entity_id: int, *, runs: int = 1
    ) -> list[tuple[RunRecord, list[dict[str, Any]]]]:
        out: list[tuple[RunRecord, list[dict[str, Any]]]] = []
        for run, blob in self._entity_chunks(entity_id):
            if len(out) >= runs:
                break
            mine = entity_rows(blob, entity_id, where=self.location)
            if mine:
                out.append((run, mine))
        return out

    def results(self, entity_id: int, *, runs: int = 1) -> list[tuple[RunRecord, pa.Table]]:
        return [
            (run, pa.Table.from_pylist(rows, schema=RESULT_SCHEMA))
            for run, rows in self.result_rows(entity_id, runs=runs)
        ]

    def run_results(self, run_id: int) -> Iterator[pa.Table]:
        cur = self.conn.execute(
            "SELECT data FROM result_chunks WHERE run_id = ? ORDER BY first_entity", (run_id,)
        )
        for (blob,) in cur:
            yield chunk_table(blob, where=self.location)

    # -- check log ----------------------------------------------------------------------

    def log_check(
        self,
        *,
        user_name: str,
        entity_id: int,
        view: str,
        run_id: int | None = None,
        report_sha256: str | None = None,
        at: dt.datetime | None = None,
    ) -> int:
        when = _ts(at) if at is not None else _now()
        params = (user_name, entity_id, when, view, run_id, report_sha256)
        if self._depth:  # inside the caller's transaction
            cur = self.conn.execute(_LOG_CHECK, params)
            return int(cur.lastrowid or 0)
        try:  # one statement is its own write transaction, committed when it returns
            cur = self.conn.execute(_LOG_CHECK, params)
        except sqlite3.OperationalError as exc:
            raise StoreError(
                f"{self.location}: cannot record the check ({exc}); another process held "
                f"the database for more than {self._busy_ms / 1000:g} s, try again",
                code="store_busy",
            ) from None
        return int(cur.lastrowid or 0)

    def _checks(self, by: str, value: Any, limit: int) -> list[CheckRecord]:
        rows = self.conn.execute(_CHECKS_BY[by], (value, max(1, int(limit)))).fetchall()
        return [
            CheckRecord(
                check_id=r[0],
                user_name=r[1],
                entity_id=r[2],
                bin=r[3],
                checked_at=_parse_ts(r[4]),
                view=r[5],
                run_id=r[6],
                report_sha256=r[7],
            )
            for r in rows
        ]

    def checks_of_entity(self, entity_id: int, *, limit: int = 100) -> list[CheckRecord]:
        return self._checks("entity", entity_id, limit)

    def checks_by_user(self, user_name: str, *, limit: int = 100) -> list[CheckRecord]:
        return self._checks("user", user_name, limit)
