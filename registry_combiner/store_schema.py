"""The register's SQLite schema, as numbered migrations (see :mod:`.store` for the design).

:data:`MIGRATIONS` is the whole history: migration ``n`` takes the database from version
``n - 1`` to ``n``. :func:`migrate` applies the missing ones, each in its own transaction
together with its row in ``schema_version``, so that a database is always at exactly one
version. A database newer than the code is refused, never downgraded.

To change the schema, append a migration; never edit one that has shipped.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass

from .errors import StoreError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration", "current_version", "migrate"]


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: its version, what it does and its SQL script."""

    version: int
    description: str
    sql: str


_V1 = """
CREATE TABLE entities (
    id INTEGER PRIMARY KEY,
    bin TEXT NOT NULL UNIQUE CHECK (length(bin) = 12),
    kind TEXT NOT NULL CHECK (kind IN ('legal', 'individual')),
    name TEXT,
    legal_form TEXT,
    status TEXT,
    head_surname TEXT,
    head_first_name TEXT,
    head_patronymic TEXT,
    registration_date TEXT,
    region TEXT,
    oked TEXT,
    first_seen TEXT NOT NULL,
    profile_feed INTEGER
) STRICT;

CREATE VIRTUAL TABLE entities_fts USING fts5(
    name, legal_form, head_surname, head_first_name, head_patronymic,
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TABLE releases (
    release_id TEXT PRIMARY KEY,
    sequence INTEGER NOT NULL,
    lab TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    verified_at TEXT NOT NULL
) STRICT;

CREATE TABLE batches (
    seq INTEGER PRIMARY KEY,
    batch_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    source TEXT NOT NULL,
    release_id TEXT NOT NULL REFERENCES releases (release_id),
    as_of TEXT NOT NULL,
    created_at TEXT NOT NULL,
    row_count INTEGER NOT NULL,
    entities INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    sealed INTEGER NOT NULL,
    manifest TEXT NOT NULL,
    signature TEXT NOT NULL,
    ingested_at TEXT NOT NULL
) STRICT;
CREATE INDEX batches_by_source ON batches (source, release_id, as_of);

CREATE TABLE batch_parts (
    batch_seq INTEGER NOT NULL REFERENCES batches (seq),
    part INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (batch_seq, part)
) STRICT;

CREATE TABLE feeds (
    feed_id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    file_name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    as_of TEXT NOT NULL,
    rows INTEGER NOT NULL,
    columns TEXT NOT NULL,
    ingested_at TEXT NOT NULL,
    UNIQUE (source, sha256)
) STRICT;
CREATE INDEX feeds_by_source ON feeds (source, as_of, feed_id);

CREATE TABLE feed_parts (
    feed_id INTEGER NOT NULL REFERENCES feeds (feed_id),
    part INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (feed_id, part)
) STRICT;

CREATE VIEW current_feeds AS
    SELECT f.* FROM feeds f
    WHERE f.feed_id = (
        SELECT g.feed_id FROM feeds g WHERE g.source = f.source
        ORDER BY g.as_of DESC, g.feed_id DESC LIMIT 1
    );

CREATE TABLE list_entries (
    feed_id INTEGER NOT NULL REFERENCES feeds (feed_id),
    list TEXT NOT NULL,
    entity_id INTEGER NOT NULL REFERENCES entities (id),
    PRIMARY KEY (feed_id, list, entity_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX list_entries_by_entity ON list_entries (entity_id, feed_id);

CREATE TABLE reason_codes (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    factor TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('preliminary', 'direct', 'override'))
) STRICT;

CREATE TABLE runs (
    run_id INTEGER PRIMARY KEY,
    release_id TEXT NOT NULL REFERENCES releases (release_id),
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    entities INTEGER NOT NULL,
    meta TEXT NOT NULL
) STRICT;

CREATE TABLE result_chunks (
    run_id INTEGER NOT NULL REFERENCES runs (run_id),
    first_entity INTEGER NOT NULL,
    last_entity INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (run_id, first_entity)
) STRICT;

CREATE TABLE check_log (
    check_id INTEGER PRIMARY KEY,
    user_name TEXT NOT NULL,
    entity_id INTEGER NOT NULL REFERENCES entities (id),
    checked_at TEXT NOT NULL,
    view TEXT NOT NULL,
    run_id INTEGER REFERENCES runs (run_id),
    report_sha256 TEXT
) STRICT;
CREATE INDEX check_log_by_entity ON check_log (entity_id, checked_at);
CREATE INDEX check_log_by_user ON check_log (user_name, checked_at);
"""

#: Every migration, oldest first.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "entities, releases, batches, feeds, lists, runs and results, check log", _V1),
    # No table changes: new result chunks are packed records (registry_combiner.
    # _result_chunks), which code of version 1 cannot read; it refuses the database.
    Migration(2, "result chunks written as packed records (version 1 chunks still read)", ""),
)
#: The version this code writes and reads.
SCHEMA_VERSION = MIGRATIONS[-1].version


def current_version(conn: sqlite3.Connection) -> int:
    """The database's schema version (0 for an empty database)."""
    row = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if row is None:
        return 0
    got = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(got[0] or 0)


def migrate(conn: sqlite3.Connection, *, where: str) -> int:
    """Bring the database up to :data:`SCHEMA_VERSION`; return the version it was at.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Raises
    :class:`StoreError` (``store_too_new``) for a database written by newer code.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL"
        ") STRICT"
    )
    before = current_version(conn)
    if before > SCHEMA_VERSION:
        raise StoreError(
            f"{where}: expected schema version {SCHEMA_VERSION} or older, found {before} "
            "(written by a newer registry-combiner; upgrade it, never downgrade the database)",
            code="store_too_new",
        )
    for step in MIGRATIONS:
        if step.version <= before:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if current_version(conn) >= step.version:  # another process got there first
                conn.execute("ROLLBACK")
                continue
            for statement in _statements(step.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                (step.version, step.description, dt.datetime.now(dt.UTC).isoformat()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return before


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (executescript would commit on its own)."""
    out: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                out.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        out.append(buffer.strip())
    return out
