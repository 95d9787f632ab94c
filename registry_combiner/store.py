"""The register's store: what it received, what it computed, who checked what.

DESIGN
======

One embedded SQLite file (``STATE/register.sqlite``, :data:`DB_FILE`) in WAL mode with
foreign keys on, behind the small :class:`Store` protocol: the combiner, the ingest and the
service only call the protocol, so a server database can be added later as another
implementation (:class:`~registry_combiner.store_sqlite.SqliteStore` is the only one today).
The schema is versioned in code (:mod:`.store_schema`, table ``schema_version``); opening a
store migrates it, and a database newer than the code is refused.

Bulk data is **columnar**: a batch's 8 million rows, a feed's columns and a combine run's
results are stored as Parquet / Arrow IPC blobs in parts, not as one SQL row per value,
because the register must combine 2,000,000 entities within a few times the time pyarrow
needs to read the batches (issue 8) and Python's ``sqlite3`` binds about a million values
a second. Everything that is looked up or searched one entity at a time is plain SQL.

Tables (``*`` = a blob of Parquet or Arrow IPC bytes)
------------------------------------------------------

``entities``
    ``id`` (1, 2, 3...: dense, never deleted or reused; the key used everywhere else and
    the position in the combiner's arrays), ``bin`` (the BIN or IIN, unique),
    ``kind`` (``legal`` for a BIN, ``individual`` for an IIN), and the profile a feed gives:
    ``name``, ``legal_form``, ``status``, ``head_surname``, ``head_first_name``,
    ``head_patronymic``, ``registration_date`` (ISO date), ``region`` (KATO), ``oked``,
    ``profile_feed``; ``first_seen``. Created by any batch or feed that names the entity; the
    profile comes from the ``LEGAL_ENTITY`` feed (an IIN holder has no profile unless a feed
    gives one). ``entities_fts`` (FTS5, ``rowid`` = entity id; columns ``name``,
    ``legal_form``, ``head_surname``, ``head_first_name``, ``head_patronymic``; tokenizer
    ``unicode61 remove_diacritics 2``) indexes the profile for para 32 searches:
    :meth:`Store.search_entities`, or SQL ``SELECT rowid FROM entities_fts WHERE
    entities_fts MATCH ?``.
``releases``
    Release ids the register verified itself (``verify-release`` or ``combine --release``
    on its ``REGISTER`` bundle, which shares the release id of the bodies' bundles):
    ``release_id``, ``sequence``, ``lab``, ``created_at``, ``expires_at``,
    ``manifest_sha256``, ``verified_at``. A batch naming a release that is not here, or is
    expired, is refused.
``batches`` and ``batch_parts*``
    One row per ingested batch (``seq`` = ingest order, ``batch_id`` unique so a replay is
    refused, ``body``, ``source``, ``release_id``, ``as_of``, ``created_at``, ``row_count``,
    ``entities``, ``sha256`` of the data file, ``sealed``, the signed ``manifest`` JSON and
    its ``signature`` text, ``ingested_at``). Its rows are Parquet parts with columns
    ``entity`` (int64 entity id), ``index`` (string), ``probability`` (float64),
    ``value`` (int8), ``category`` (string): :meth:`Store.batch_rows`.
``feeds`` and ``feed_parts*``
    One row per ingested direct feed (``source``, ``file_name``, ``sha256`` unique per
    source, ``as_of``, ``rows``, ``columns`` JSON, ``ingested_at``); its rows are Parquet
    parts with ``entity`` then the source's fields in their contract types, sorted by
    entity. The **current** feed of a source is the one with the latest ``as_of`` (then the
    latest ingested): view ``current_feeds``, :meth:`Store.current_feeds`; one entity's
    values: :meth:`Store.feed_values`.
``list_entries``
    ``(feed_id, list, entity_id)``: the state lists of the ``TAX_LISTS`` feed (bankrupt,
    pseudo-enterprise, invalid registration, inactive, ...). An entity is on a list when
    the current ``TAX_LISTS`` feed has it: :meth:`Store.lists_of`.
``reason_codes``
    ``id`` → ``code`` (``SOURCE.factor``), ``source``, ``factor``, ``kind``
    (``preliminary`` | ``direct`` | ``override``). Today: ``<BODY SOURCE>.preliminary_index``
    (the body's preliminary index moved the risk up), ``<FEED SOURCE>.record`` (the entity's
    record in that feed did), ``TAX_LISTS.<list>`` (a state list forced ``high``).
``runs`` and ``result_chunks*``
    One row per ``combine`` (``run_id``, ``release_id``, ``started_at``, ``finished_at``,
    ``entities``, ``meta`` JSON: ``indexes`` (order of the ``index`` codes), ``sources``
    (bit order of the coverage masks), ``layouts`` (per index the preliminary and direct
    sources its combiner expects), the batches and feeds used, counts). A run is written in
    one transaction, so it exists only complete, and runs are never changed: they are the
    history. Its results are chunks of up to :data:`CHUNK_ENTITIES` entity ids
    (``first_entity``..``last_entity``; packed records since schema version 2, Arrow IPC
    before) with the columns of :data:`RESULT_SCHEMA`, one row per (entity, index).
    The **current** result of an entity is its row in the latest run that has it:
    :meth:`Store.results` (newest first; ``runs=n`` for the trend).
``check_log``
    Para 36: ``check_id``, ``user_name``, ``entity_id``, ``checked_at``, ``view``
    (``basic`` | ``full`` | ``report``...), ``run_id`` (the results shown),
    ``report_sha256`` (of the signed report handed out, if any). Written by the service:
    :meth:`Store.log_check`; read with :meth:`Store.checks_of_entity` (who checked me) and
    :meth:`Store.checks_by_user` (my checks).

Result columns (:data:`RESULT_SCHEMA`)
--------------------------------------

``entity`` (id), ``index`` (int8 position in ``meta["indexes"]``), ``probability``
(calibrated, from the combiner; float64), ``value`` (1-99, published), ``category`` (int8
position in :data:`CATEGORIES`: low, medium, high; published, after overrides), ``flags``
(:data:`FLAG_PARTIAL`: a source the combiner expects did not deliver for the entity;
:data:`FLAG_OVERRIDDEN`: a state list forced ``high``), ``overrides`` (bit ``i`` = list
:data:`OVERRIDE_LISTS` ``[i]`` forced this index), ``present`` / ``missing`` (bit ``j`` =
source ``meta["sources"][j]`` delivered / was expected and did not), ``reason1`` ..
``reason4`` (``reason_codes.id``, 0 = none; override lists first, then by contribution;
``meta["reasons"]`` says which indexes were explained: ``elevated`` = medium and high).

Concurrency
-----------

Every write is one ``BEGIN IMMEDIATE`` transaction (a batch with its entities, a feed with
its profiles and lists, a run with all its chunks; a check is one ``INSERT``), so a process
killed at any point leaves the previous state, and the work can be redone. WAL lets readers
(the service) run while a writer works; writers wait up to ``busy_timeout`` (60 s, then
``store_busy``). A :class:`Store` object is one connection: use one per thread (it caches
the immutable runs, the current feeds and the reason codes it has read, re-reading the
list of runs and codes when a new one was written). Looking up one entity's results reads
and decodes one chunk per run (a fraction of a millisecond); :meth:`Store.feed_values`
loads a feed once per store object.

Runs, feeds (with their lists and profiles) and reason codes are only ever added, so
:meth:`Store.generation` (the latest run and feed ids) and an entity's own row fix what a
view of that entity shows: the service caches report bodies under that key.
:meth:`Store.snapshot` reads several tables as one consistent state.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import pyarrow as pa

__all__ = [
    "CATEGORIES",
    "CHUNK_ENTITIES",
    "DB_FILE",
    "FLAG_OVERRIDDEN",
    "FLAG_PARTIAL",
    "LISTS_SOURCE",
    "OVERRIDE_LISTS",
    "RESULT_SCHEMA",
    "BatchRecord",
    "CheckRecord",
    "EntityProfile",
    "EntityRecord",
    "FeedRecord",
    "ReasonCode",
    "ReleaseRecord",
    "RunRecord",
    "Store",
    "open_store",
]

#: The database file inside the register's state directory.
DB_FILE = "register.sqlite"
#: The feed of the state lists (``list_entries``): the tax body's published lists.
LISTS_SOURCE = "TAX_LISTS"
#: Entity ids per result chunk of a run: a look-up decodes one chunk per run (128: about
#: 18 µs, a 512-id chunk took 49 µs; 16% more bytes on disk).
CHUNK_ENTITIES = 128
#: Published categories, by their code in the results.
CATEGORIES: tuple[str, ...] = ("low", "medium", "high")
#: ``flags`` bit: a source the index's combiner expects did not deliver for the entity.
FLAG_PARTIAL = 1
#: ``flags`` bit: a state list forced the index to ``high``.
FLAG_OVERRIDDEN = 2
#: The state lists that force ``high`` (bit ``i`` of ``overrides`` is list ``i``).
OVERRIDE_LISTS: tuple[str, ...] = ("bankrupt", "pseudo_enterprise", "invalid_registration")

#: One row per (entity, index) of a combine run (see the module notes).
RESULT_SCHEMA = pa.schema(
    [
        pa.field("entity", pa.int64(), nullable=False),
        pa.field("index", pa.int8(), nullable=False),
        pa.field("probability", pa.float64(), nullable=False),
        pa.field("value", pa.int8(), nullable=False),
        pa.field("category", pa.int8(), nullable=False),
        pa.field("flags", pa.int8(), nullable=False),
        pa.field("overrides", pa.int8(), nullable=False),
        pa.field("present", pa.int32(), nullable=False),
        pa.field("missing", pa.int32(), nullable=False),
        pa.field("reason1", pa.int16(), nullable=False),
        pa.field("reason2", pa.int16(), nullable=False),
        pa.field("reason3", pa.int16(), nullable=False),
        pa.field("reason4", pa.int16(), nullable=False),
    ]
)

Ids = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class EntityProfile:
    """What a feed says about an entity (``None`` = not given; existing values are kept)."""

    bin: str
    name: str | None = None
    legal_form: str | None = None
    status: str | None = None
    head_surname: str | None = None
    head_first_name: str | None = None
    head_patronymic: str | None = None
    registration_date: dt.date | None = None
    region: str | None = None
    oked: str | None = None


@dataclass(frozen=True, slots=True)
class EntityRecord:
    """One row of ``entities``."""

    id: int
    bin: str
    kind: str
    name: str | None
    legal_form: str | None
    status: str | None
    head_surname: str | None
    head_first_name: str | None
    head_patronymic: str | None
    registration_date: dt.date | None
    region: str | None
    oked: str | None
    first_seen: dt.datetime


@dataclass(frozen=True, slots=True)
class ReleaseRecord:
    """A release the register verified (its own ``REGISTER`` bundle)."""

    release_id: str
    sequence: int
    lab: str
    created_at: dt.datetime
    expires_at: dt.datetime
    manifest_sha256: str
    verified_at: dt.datetime

    def expired(self, now: dt.datetime) -> bool:
        return now >= self.expires_at


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One ingested batch (``seq`` is 0 until it is stored)."""

    batch_id: str
    body: str
    source: str
    release_id: str
    as_of: dt.date
    created_at: dt.datetime
    row_count: int
    entities: int
    sha256: str
    sealed: bool
    manifest: str
    signature: str
    ingested_at: dt.datetime
    seq: int = 0


@dataclass(frozen=True, slots=True)
class FeedRecord:
    """One ingested direct feed (``feed_id`` is 0 until it is stored)."""

    source: str
    file_name: str
    sha256: str
    as_of: dt.date
    rows: int
    columns: tuple[str, ...]
    ingested_at: dt.datetime
    feed_id: int = 0


@dataclass(frozen=True, slots=True)
class ReasonCode:
    """A reason code: ``code`` is ``SOURCE.factor``."""

    code: str
    source: str
    factor: str
    kind: str


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One combine run (``run_id`` is 0 until it is stored); ``meta`` as the notes say."""

    release_id: str
    started_at: dt.datetime
    finished_at: dt.datetime
    entities: int
    meta: dict[str, Any] = field(default_factory=dict)
    run_id: int = 0

    @property
    def indexes(self) -> tuple[str, ...]:
        return tuple(self.meta.get("indexes", ()))

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self.meta.get("sources", ()))


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """One check of the check log (para 36)."""

    check_id: int
    user_name: str
    entity_id: int
    bin: str
    checked_at: dt.datetime
    view: str
    run_id: int | None
    report_sha256: str | None


@runtime_checkable
class Store(Protocol):
    """What the ingest, the combiner and the service need from a database."""

    location: str

    def close(self) -> None: ...

    def schema_version(self) -> int: ...

    def transaction(self) -> AbstractContextManager[None]:
        """One write transaction; nested calls join the outer one."""
        ...

    def snapshot(self) -> AbstractContextManager[None]:
        """Reads inside see one consistent state of the database (no writes inside)."""
        ...

    def checkpoint(self) -> None:
        """Copy committed writes from the write-ahead log into the database (not waiting
        for anyone; a server calls it from a background thread, see :func:`open_store`)."""
        ...

    def generation(self) -> tuple[int, int]:
        """``(latest run id, latest feed id)``, 0 for none: it changes whenever a run or a
        feed is stored. Runs, feeds, their lists and reason codes are only ever added, so
        what a view shows of an entity is fixed by this and the entity's own row."""
        ...

    # -- releases -----------------------------------------------------------------------

    def record_release(self, release: ReleaseRecord) -> bool:
        """Store a verified release; False if it was already known."""
        ...

    def release(self, release_id: str) -> ReleaseRecord | None: ...

    def releases(self) -> list[ReleaseRecord]: ...

    # -- entities -----------------------------------------------------------------------

    def ensure_entities(self, bins: pa.Array | pa.ChunkedArray | Sequence[str]) -> Ids:
        """The entity id of each BIN/IIN (valid ones only), creating the unknown ones."""
        ...

    def entity(self, bin_or_id: str | int) -> EntityRecord | None: ...

    def max_entity_id(self) -> int: ...

    def entity_bins(self) -> pa.Table:
        """``id`` (int64), ``bin`` (string) of every entity, by id."""
        ...

    def update_profiles(self, profiles: Iterable[EntityProfile], *, feed_id: int) -> int: ...

    def search_entities(
        self, query: str, *, legal_form: str | None = None, limit: int = 20
    ) -> list[EntityRecord]:
        """Entities whose name, legal form or head's names hold every word of ``query`` (as
        word prefixes; FTS5 syntax is neutralised), best first; a 12-digit ``query`` is
        looked up as a BIN/IIN. ``legal_form`` filters on the exact legal form."""
        ...

    # -- batches ------------------------------------------------------------------------

    def has_batch(self, batch_id: str) -> bool: ...

    def add_batch(self, record: BatchRecord, rows: pa.Table) -> BatchRecord:
        """Store a verified batch and its rows (``bin`` already mapped to ``entity``)."""
        ...

    def batches(
        self, *, source: str | None = None, release_id: str | None = None
    ) -> list[BatchRecord]: ...

    def batch_rows(self, seq: int) -> pa.Table: ...

    # -- feeds --------------------------------------------------------------------------

    def has_feed(self, source: str, sha256: str) -> bool: ...

    def add_feed(
        self,
        record: FeedRecord,
        rows: pa.Table,
        *,
        lists: Mapping[str, Ids] | None = None,
        profiles: Iterable[EntityProfile] = (),
    ) -> FeedRecord: ...

    def current_feeds(self) -> dict[str, FeedRecord]: ...

    def feed_rows(self, feed_id: int) -> pa.Table: ...

    def feed_values(self, source: str, entity_id: int) -> dict[str, Any] | None: ...

    def lists_of(self, entity_id: int) -> tuple[str, ...]: ...

    # -- runs and results ---------------------------------------------------------------

    def reason_code_ids(self, codes: Iterable[ReasonCode]) -> dict[str, int]: ...

    def reason_codes(self) -> dict[int, ReasonCode]: ...

    def write_run(self, run: RunRecord, chunks: Iterable[pa.Table]) -> RunRecord:
        """Store a run and its results in one transaction.

        ``chunks``: tables of ``RESULT_SCHEMA`` rows sorted by entity, each table's
        entities after the previous table's (the store cuts them into its own chunks). It
        may be a generator that computes them; they are all consumed before
        the write transaction starts (so ``meta`` may be completed by the generator, and
        other writers wait only for the inserts). ``finished_at`` is the time the last
        chunk was computed."""
        ...

    def runs(self, *, limit: int = 20) -> list[RunRecord]: ...

    def latest_run(self) -> RunRecord | None: ...

    def results(self, entity_id: int, *, runs: int = 1) -> list[tuple[RunRecord, pa.Table]]:
        """The entity's rows in the newest ``runs`` runs that have it, newest first."""
        ...

    def result_rows(
        self, entity_id: int, *, runs: int = 1
    ) -> list[tuple[RunRecord, list[dict[str, Any]]]]:
        """:meth:`results` as plain rows (dicts keyed by ``RESULT_SCHEMA``'s names), the
        form a view or a report is built from."""
        return [(run, table.to_pylist()) for run, table in self.results(entity_id, runs=runs)]

    def run_results(self, run_id: int) -> Iterator[pa.Table]: ...

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
    ) -> int: ...

    def checks_of_entity(self, entity_id: int, *, limit: int = 100) -> list[CheckRecord]: ...

    def checks_by_user(self, user_name: str, *, limit: int = 100) -> list[CheckRecord]: ...


def open_store(
    location: str | os.PathLike[str],
    *,
    readonly: bool = False,
    busy_ms: int | None = None,
    wal_autocheckpoint: int | None = None,
) -> Store:
    """Open (creating and migrating when writable) the store at ``location``.

    ``location`` is a state directory (the database is ``DB_FILE`` inside it) or a
    ``.sqlite`` file. ``busy_ms``: how long a write waits for another writer (default
    60 s), then fails with ``store_busy``. ``wal_autocheckpoint``: after a commit that
    leaves at least this many pages in the write-ahead log, that commit copies them into
    the database (SQLite's default 1,000; 0 never): a server sets it high and calls
    :meth:`Store.checkpoint` from a background thread instead, so that no request waits
    for a checkpoint's disk flush.
    """
    from .store_sqlite import SqliteStore

    path = Path(location)
    if path.is_dir() or not path.suffix:
        path = path / DB_FILE
    options: dict[str, Any] = {"readonly": readonly, "wal_autocheckpoint": wal_autocheckpoint}
    if busy_ms is not None:
        options["busy_ms"] = busy_ms
    return SqliteStore(path, **options)
