"""``registry_combiner.store`` / ``store_sqlite`` / ``store_schema``: the SQLite store."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from registry_combiner.errors import RegistryRefused, StoreError
from registry_combiner.store import (
    DB_FILE,
    LISTS_SOURCE,
    RESULT_SCHEMA,
    BatchRecord,
    EntityProfile,
    FeedRecord,
    ReasonCode,
    ReleaseRecord,
    RunRecord,
    Store,
    open_store,
)
from registry_combiner.store_schema import SCHEMA_VERSION
from registry_combiner.store_sqlite import SqliteStore
from sample_protocol.identifier_gen import random_bins, random_iins

NOW = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / DB_FILE)
    yield s
    s.close()


def _bins(n: int, seed: int = 0) -> list[str]:
    return [str(b) for b in random_bins(np.random.default_rng(seed), n)]


def _release(store: SqliteStore, rid: str = "rel1-x") -> ReleaseRecord:
    rec = ReleaseRecord(rid, 1, "nce-lab", NOW, NOW + dt.timedelta(days=365), "0" * 64, NOW)
    store.record_release(rec)
    return rec


def _batch(batch_id: str = "bat-1", rows: int = 3) -> BatchRecord:
    return BatchRecord(
        batch_id=batch_id,
        body="tax-body",
        source="TAX",
        release_id="rel1-x",
        as_of=dt.date(2026, 1, 1),
        created_at=NOW,
        row_count=rows,
        entities=rows,
        sha256="1" * 64,
        sealed=False,
        manifest="{}",
        signature="sig",
        ingested_at=NOW,
    )


def test_open_creates_the_schema_in_wal_mode_with_foreign_keys(tmp_path):
    s = open_store(tmp_path)
    assert isinstance(s, Store) and isinstance(s, SqliteStore)
    assert s.schema_version() == SCHEMA_VERSION
    assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    s.close()
    again = open_store(tmp_path / DB_FILE)  # idempotent, and a file path works too
    assert again.schema_version() == SCHEMA_VERSION
    again.close()


def test_a_database_from_newer_code_is_refused(tmp_path):
    SqliteStore(tmp_path / DB_FILE).close()
    conn = sqlite3.connect(tmp_path / DB_FILE)
    conn.execute("INSERT INTO schema_version VALUES (99, 'future', '2030-01-01')")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as err:
        SqliteStore(tmp_path / DB_FILE)
    assert err.value.code == "store_too_new"


def test_a_version_1_database_is_migrated_and_its_result_chunks_still_read(tmp_path):
    """A register of version 1 wrote Arrow IPC result chunks; opened by this code it is
    migrated (version 2 adds no table) and reads them as before, beside packed ones."""
    s = SqliteStore(tmp_path / DB_FILE)
    _release(s)
    s.ensure_entities(_bins(5))
    meta = {"indexes": ["a", "b"], "sources": ["TAX"]}
    s.write_run(RunRecord("rel1-x", NOW, NOW, 5, dict(meta)), [_chunk([1, 2], 10)])
    old = _chunk([3, 5], 20)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(
        sink, old.schema, options=pa.ipc.IpcWriteOptions(compression="lz4")
    ) as w:
        w.write_table(old)
    with s.transaction():
        s.conn.execute(
            "INSERT INTO result_chunks (run_id, first_entity, last_entity, rows, data) "
            "VALUES (1, 3, 5, 4, ?)", (sink.getvalue().to_pybytes(),),
        )  # fmt: skip
        s.conn.execute("DELETE FROM schema_version WHERE version = 2")
    s.close()
    again = SqliteStore(tmp_path / DB_FILE)
    assert again.schema_version() == SCHEMA_VERSION == 2
    ((run, rows),) = again.result_rows(5)
    assert run.run_id == 1 and [r["value"] for r in rows] == [20, 20]
    assert [t["value"].to_pylist() for _, t in again.results(2)] == [[10, 10]]
    assert pa.concat_tables(again.run_results(1)).equals(
        pa.concat_tables([_chunk([1, 2], 10), old])
    )
    again.close()


def test_readonly_store_needs_a_migrated_database(tmp_path):
    sqlite3.connect(tmp_path / "empty.sqlite").close()
    with pytest.raises(StoreError) as err:
        SqliteStore(tmp_path / "empty.sqlite", readonly=True)
    assert err.value.code == "store_version"


def test_ensure_entities_is_stable_and_knows_bins_from_iins(store):
    bins = _bins(3)
    iin = str(random_iins(np.random.default_rng(1), 1)[0])
    ids = store.ensure_entities(pa.array([bins[0], iin, bins[0], bins[1]]))
    assert ids[0] == ids[2] and len(set(ids.tolist())) == 3
    again = store.ensure_entities([bins[1], bins[2], iin])
    assert again[0] == ids[3] and again[2] == ids[1] and again[1] == 4
    assert store.entity(bins[0]).kind == "legal"
    assert store.entity(iin).kind == "individual"
    assert store.entity(int(ids[1])).bin == iin
    assert store.max_entity_id() == 4
    assert store.entity_bins()["bin"].to_pylist()[:2] == [bins[0], iin]


def test_a_failed_transaction_leaves_nothing(store):
    _release(store)
    with pytest.raises(RuntimeError), store.transaction():
        ids = store.ensure_entities(_bins(3))
        store.add_batch(_batch(), pa.table({"entity": ids}))
        raise RuntimeError("killed")
    assert store.max_entity_id() == 0
    assert store.batches() == []


def test_batch_round_trip_and_replay_refused(store):
    _release(store)
    ids = store.ensure_entities(_bins(3))
    rows = pa.table({"entity": ids, "index": ["a", "b", "c"], "probability": [0.1, 0.2, 0.3]})
    stored = store.add_batch(_batch(), rows)
    assert stored.seq == 1 and store.has_batch("bat-1")
    assert store.batch_rows(1).equals(rows)
    assert [b.batch_id for b in store.batches(source="TAX", release_id="rel1-x")] == ["bat-1"]
    with pytest.raises(RegistryRefused) as err:
        store.add_batch(_batch(), rows)
    assert err.value.code == "batch_replayed"
    assert len(store.batches()) == 1


def test_a_batch_needs_a_known_release(store):
    with pytest.raises(StoreError) as err:
        store.add_batch(_batch(), pa.table({"entity": [1]}))
    assert err.value.code == "store_integrity"


def test_profiles_feed_the_name_search(store):
    bins = _bins(3)
    store.ensure_entities(bins)
    feed = store.add_feed(
        FeedRecord("LEGAL_ENTITY", "le.parquet", "2" * 64, dt.date(2026, 1, 1), 3, ("bin",), NOW),
        pa.table({"entity": [1, 2, 3]}),
        profiles=[
            EntityProfile(
                bins[0], name='ТОО "Алтын Дала"', legal_form="LLP", head_surname="Ахметов"
            ),
            EntityProfile(bins[1], name='TOO "Temir Group"', legal_form="LLP"),
            EntityProfile(bins[2], name="Temir Trans AO", legal_form="JSC", head_surname="Li"),
        ],
    )
    assert feed.feed_id == 1
    assert [e.bin for e in store.search_entities("алтын")] == [bins[0]]
    assert [e.bin for e in store.search_entities("АХМЕТ")] == [bins[0]]  # prefix, any case
    assert {e.bin for e in store.search_entities("temir")} == {bins[1], bins[2]}
    assert [e.bin for e in store.search_entities("temir", legal_form="JSC")] == [bins[2]]
    assert [e.bin for e in store.search_entities(bins[1])] == [bins[1]]
    for hostile in ('" OR 1=1 --', "NEAR(a b)", "*", "'; DROP TABLE entities; --", ""):
        store.search_entities(hostile)  # never an FTS5 syntax error
    assert store.max_entity_id() == 3
    # a later feed updates the profile and the index
    store.add_feed(
        FeedRecord("LEGAL_ENTITY", "le2.parquet", "3" * 64, dt.date(2026, 2, 1), 1, ("bin",), NOW),
        pa.table({"entity": [1]}),
        profiles=[EntityProfile(bins[0], name="Жана Атау")],
    )
    assert store.search_entities("алтын") == []
    assert store.entity(bins[0]).legal_form == "LLP"  # kept: not given by the new feed


def test_current_feed_values_and_lists(store):
    ids = store.ensure_entities(_bins(4))
    old = FeedRecord(LISTS_SOURCE, "l1", "4" * 64, dt.date(2026, 1, 1), 2, ("bin",), NOW)
    new = FeedRecord(LISTS_SOURCE, "l2", "5" * 64, dt.date(2026, 2, 1), 1, ("bin",), NOW)
    store.add_feed(old, pa.table({"entity": ids[:2], "bankrupt": [True, True]}),
                   lists={"bankrupt": ids[:2]})  # fmt: skip
    store.add_feed(new, pa.table({"entity": ids[1:2], "bankrupt": [True]}),
                   lists={"bankrupt": ids[1:2]})  # fmt: skip
    assert store.lists_of(int(ids[0])) == ()
    assert store.lists_of(int(ids[1])) == ("bankrupt",)
    assert store.current_feeds()[LISTS_SOURCE].file_name == "l2"
    assert store.feed_values(LISTS_SOURCE, int(ids[1])) == {"bankrupt": True}
    assert store.feed_values(LISTS_SOURCE, int(ids[0])) is None
    assert store.feed_values("COURT", int(ids[0])) is None
    assert store.has_feed(LISTS_SOURCE, "4" * 64)
    with pytest.raises(RegistryRefused) as err:
        store.add_feed(old, pa.table({"entity": ids[:1]}))
    assert err.value.code == "feed_replayed"


def _chunk(entities: list[int], run_value: int) -> pa.Table:
    n = len(entities) * 2
    cols = {
        "entity": np.repeat(entities, 2),
        "index": np.tile([0, 1], len(entities)),
        "probability": np.full(n, 0.5),
        "value": np.full(n, run_value),
        "category": np.ones(n),
        "flags": np.zeros(n),
        "overrides": np.zeros(n),
        "present": np.full(n, 3),
        "missing": np.zeros(n),
        "reason1": np.full(n, 1),
        "reason2": np.zeros(n),
        "reason3": np.zeros(n),
        "reason4": np.zeros(n),
    }
    return pa.Table.from_arrays(
        [pa.array(cols[f.name]).cast(f.type) for f in RESULT_SCHEMA], schema=RESULT_SCHEMA
    )


def test_runs_keep_history_and_find_an_entity_in_its_chunk(store):
    _release(store)
    store.ensure_entities(_bins(5))
    ids = store.reason_code_ids([ReasonCode("TAX.preliminary_index", "TAX", "p", "preliminary")])
    assert ids == {"TAX.preliminary_index": 1}
    meta = {"indexes": ["a", "b"], "sources": ["TAX"]}
    for value in (10, 20):
        run = store.write_run(
            RunRecord("rel1-x", NOW, NOW, 5, dict(meta)),
            [_chunk([1, 2], value), _chunk([3, 5], value)],
        )
    assert run.run_id == 2 and run.finished_at >= NOW
    assert store.latest_run().run_id == 2
    found = store.results(3, runs=5)
    assert [r.run_id for r, _ in found] == [2, 1]
    assert [t["value"].to_pylist() for _, t in found] == [[20, 20], [10, 10]]
    assert store.results(4) == []  # in a chunk's range but not in the run
    assert sum(t.num_rows for t in store.run_results(1)) == 8
    assert store.reason_codes()[1].source == "TAX"
    with pytest.raises(StoreError):
        store.write_run(RunRecord("rel1-x", NOW, NOW, 1, {}), [pa.table({"x": [1]})])
    with pytest.raises(StoreError, match="out of entity order"):  # chunk ranges would overlap
        store.write_run(RunRecord("rel1-x", NOW, NOW, 5, {}), [_chunk([3, 5], 1), _chunk([4], 1)])
    assert len(store.runs()) == 2  # the failed runs left nothing


def test_check_log(store):
    bins = _bins(2)
    ids = store.ensure_entities(bins)
    first = store.log_check(user_name="alice", entity_id=int(ids[0]), view="basic", at=NOW)
    store.log_check(
        user_name="bob",
        entity_id=int(ids[0]),
        view="report",
        report_sha256="a" * 64,
        at=NOW + dt.timedelta(minutes=1),
    )
    store.log_check(user_name="alice", entity_id=int(ids[1]), view="full")
    who = store.checks_of_entity(int(ids[0]))
    assert [c.user_name for c in who] == ["bob", "alice"]
    assert who[1].check_id == first and who[1].bin == bins[0] and who[1].checked_at == NOW
    assert [c.view for c in store.checks_by_user("alice")] == ["full", "basic"]
    with pytest.raises(sqlite3.IntegrityError):
        store.log_check(user_name="eve", entity_id=999, view="basic")


def test_generation_snapshot_and_caches_follow_new_runs_and_codes(store, tmp_path):
    """What a server caches is keyed by ``generation()``; reason codes and run ids it
    re-reads only when new ones were written (by any connection)."""
    assert store.generation() == (0, 0)
    _release(store)
    store.ensure_entities(_bins(5))
    other = SqliteStore(tmp_path / DB_FILE)  # another connection writes
    try:
        other.reason_code_ids([ReasonCode("TAX.preliminary_index", "TAX", "p", "preliminary")])
        assert set(store.reason_codes()) == {1}
        meta = {"indexes": ["a", "b"], "sources": ["TAX"]}
        other.write_run(RunRecord("rel1-x", NOW, NOW, 5, dict(meta)), [_chunk([1, 2, 3], 10)])
        assert store.generation() == (1, 0) and [r.run_id for r, _ in store.results(2)] == [1]
        other.reason_code_ids([ReasonCode("COURT.record", "COURT", "record", "direct")])
        assert set(store.reason_codes()) == {1, 2}  # the new code is seen
        codes = store.reason_codes()
        codes.clear()  # a copy: the store's cache is not the caller's
        assert set(store.reason_codes()) == {1, 2}
        with store.snapshot():  # one consistent state: the next run is not seen inside
            before = store.generation()
            other.write_run(RunRecord("rel1-x", NOW, NOW, 5, dict(meta)), [_chunk([2], 30)])
            assert store.generation() == before
            assert [r.run_id for r, _ in store.results(2, runs=5)] == [1]
        assert store.generation() == (2, 0)
        found = store.results(2, runs=5)
        assert [(r.run_id, t["value"].to_pylist()) for r, t in found] == [
            (2, [30, 30]),
            (1, [10, 10]),
        ]
        store.checkpoint()
    finally:
        other.close()


def test_a_check_waits_for_another_writer_then_fails_clearly(tmp_path):
    store = SqliteStore(tmp_path / DB_FILE, busy_ms=50)
    ids = store.ensure_entities(_bins(1))
    blocker = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError) as err:
            store.log_check(user_name="alice", entity_id=int(ids[0]), view="basic")
        assert err.value.code == "store_busy"
        blocker.execute("ROLLBACK")
        assert store.checks_by_user("alice") == []
        check = store.log_check(user_name="alice", entity_id=int(ids[0]), view="basic")
        assert [c.check_id for c in store.checks_by_user("alice")] == [check]
        with store.transaction():  # inside a caller's transaction it joins it
            store.log_check(user_name="bob", entity_id=int(ids[0]), view="basic")
        assert len(store.checks_by_user("bob")) == 1
    finally:
        blocker.close()
        store.close()
