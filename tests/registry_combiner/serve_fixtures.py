"""Helpers of the report, search and service tests (a plain module, not a conftest).

The session's ``combined`` register is read only: tests that log checks work on a copy of
its database (:func:`copy_register`, SQLite's online backup).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow.parquet as pq

from registry_combiner.store import DB_FILE
from sample_protocol.identifiers import is_valid_identifier
from tests.registry_combiner.conftest import Register

__all__ = ["copy_register", "legal_entity_rows", "unknown_identifier"]


def copy_register(combined: Register, state: Path) -> Path:
    """A copy of the combined register's database in ``state``; its path."""
    state.mkdir(parents=True, exist_ok=True)
    dest = state / DB_FILE
    src = sqlite3.connect(combined.state / DB_FILE)
    dst = sqlite3.connect(dest)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    return dest


def legal_entity_rows(combined: Register, n: int = 5) -> list[dict[str, object]]:
    """The first ``n`` rows of the LEGAL_ENTITY feed (bin, name, form, head's names)."""
    cols = ["bin", "name_ru", "legal_form", "head_surname", "head_first_name", "status"]
    return pq.read_table(combined.world.feeds["LEGAL_ENTITY"], columns=cols).slice(0, n).to_pylist()


def unknown_identifier(combined: Register) -> str:
    """A valid BIN that the register does not know."""
    return next(
        f"99014000{i:03d}{c}"
        for i in range(1000)
        for c in "0123456789"
        if is_valid_identifier(f"99014000{i:03d}{c}")
        and combined.store.entity(f"99014000{i:03d}{c}") is None
    )
