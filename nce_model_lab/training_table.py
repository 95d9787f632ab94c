"""Join a round's accepted samples into one training table, and say how complete it is.

Every accepted sample of a request (``LAB/rounds/<request_id>/samples/<SOURCE>.parquet``,
keyed by the random ID column ``rid``) is joined on ``rid`` into
``LAB/rounds/<request_id>/training.parquet``: one row per random ID seen in any sample,
sorted by ``rid``, with each source's columns prefixed ``<SOURCE>__`` and the tax body's
``outcome_<index>`` columns (the training targets) kept as they are. A source that has no
row for an entity leaves nulls there. :class:`Coverage` (also written as
``coverage.json``) gives each source's rows and their share of the random IDs, and how
many entities every received source covers.

Before joining, each stored sample's SHA-256 is checked against the registry, so that a
file changed on disk since it was accepted is never used.

Example::

    coverage = build_training_table("lab", "req-20250303-...")
    coverage.rids, [(s.source, s.rows, s.share) for s in coverage.sources]
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sample_protocol import _atomic
from sample_protocol.catalogue import get_source
from sample_protocol.records import sha256_file
from sample_protocol.serde import Record

from .errors import LabError
from .labdir import LabDir, LabRegistry

__all__ = [
    "KEY",
    "OUTCOME_PREFIX",
    "SOURCE_SEPARATOR",
    "Coverage",
    "SourceCoverage",
    "build_training_table",
    "join_samples",
]

#: Name of the random-ID column of every sample and of the training table.
KEY = "rid"
#: Prefix of the tax body's outcome columns (``outcome_<index id>``).
OUTCOME_PREFIX = "outcome_"
#: Between the source code and the field name in the training table's columns.
SOURCE_SEPARATOR = "__"
_PRESENT = "__present__"


@dataclass(frozen=True, slots=True)
class SourceCoverage(Record):
    """One source's part of a training table."""

    source: str
    body: str
    rows: int
    share: float


@dataclass(frozen=True, slots=True)
class Coverage(Record):
    """How complete a round's training table is.

    ``rids``: rows of the table (random IDs seen in any sample); ``complete_rows``:
    entities present in every received source; ``missing``: requested sources not yet
    received; ``outcomes``: the outcome columns present.
    """

    request_id: str
    sample_size: int
    rids: int
    sources: tuple[SourceCoverage, ...]
    missing: tuple[str, ...]
    complete_rows: int
    outcomes: tuple[str, ...]
    training_file: str


def join_samples(samples: dict[str, pa.Table]) -> tuple[pa.Table, dict[str, int], int]:
    """Join ``{source: sample}`` on ``rid``.

    Returns the table (sorted by ``rid``), rows per source, and the number of rows present
    in every source. Outcome columns keep their names; other columns get ``SOURCE__``.

    >>> a = pa.table({"rid": ["r2", "r1"], "x": [2, 1], "outcome_y": [True, False]})
    >>> b = pa.table({"rid": ["r1"], "z": ["u"]})
    >>> t, rows, complete = join_samples({"TAX": a, "STATS": b})
    >>> t.column_names, t["STATS__z"].to_pylist(), rows, complete
    (['rid', 'TAX__x', 'outcome_y', 'STATS__z'], ['u', None], {'TAX': 2, 'STATS': 1}, 1)
    """
    if not samples:
        return pa.table({KEY: pa.array([], pa.string())}), {}, 0
    rids = pc.unique(pa.chunked_array([t[KEY].combine_chunks() for t in samples.values()]))
    joined = pa.table({KEY: rids})
    rows: dict[str, int] = {}
    markers = []
    for i, (source, table) in enumerate(samples.items()):
        names = [
            c if c == KEY or c.startswith(OUTCOME_PREFIX) else f"{source}{SOURCE_SEPARATOR}{c}"
            for c in table.column_names
        ]
        marker = f"{_PRESENT}{i}"
        part = table.rename_columns(names).append_column(
            marker, pa.array([True] * table.num_rows, pa.bool_())
        )
        rows[source] = table.num_rows
        markers.append(marker)
        joined = joined.join(part, KEY, join_type="left outer", use_threads=False)
    joined = joined.sort_by(KEY)
    everywhere = pa.array([True] * joined.num_rows, pa.bool_())
    for marker in markers:
        everywhere = pc.and_(everywhere, pc.is_valid(joined[marker]))
    complete = int(pc.sum(pc.cast(everywhere, pa.int64())).as_py() or 0)
    return joined.drop_columns(markers), rows, complete


def build_training_table(
    lab_dir: str | os.PathLike[str],
    request_id: str,
    *,
    registry: LabRegistry | None = None,
) -> Coverage:
    """(Re)write the training table of ``request_id`` from its accepted samples.

    Runs under the lab directory's lock, so that two ingests finishing together cannot
    leave a table that misses a sample the registry says was accepted.
    """
    labdir = LabDir(lab_dir)
    with labdir._locked():
        return _build(labdir, request_id, registry or labdir.read_registry())


def _concrete_types(table: pa.Table, source: str) -> pa.Table:
    """Give all-null columns (Arrow type ``null``) their contract type, so joins work."""
    spec = get_source(source)
    names = set(spec.field_names())
    for i, fld in enumerate(table.schema):
        if pa.types.is_null(fld.type):
            target = spec.field(fld.name).arrow_type() if fld.name in names else pa.float64()
            table = table.set_column(i, fld.name, table.column(i).cast(target))
    return table


def _build(labdir: LabDir, request_id: str, reg: LabRegistry) -> Coverage:
    entry = reg.requests.get(request_id)
    if entry is None:
        raise LabError(
            f"{labdir.root}: no request {request_id!r} in the lab registry "
            f"(known: {', '.join(sorted(reg.requests)) or 'none'})",
            code="unknown_request",
        )
    accepted = reg.samples_of(request_id)
    order = [s for s in entry.sources if s in accepted]
    tables: dict[str, pa.Table] = {}
    for source in order:
        sample = accepted[source]
        path = labdir.root / sample.file
        found = sha256_file(path)
        if found != sample.sha256:
            raise LabError(
                f"{path}: stored sample of {source} changed since it was accepted (expected "
                f"sha256 {sample.sha256}, found {found}); refusing to use it",
                code="lab_sample_changed",
            )
        tables[source] = _concrete_types(pq.read_table(path), source)
    table, rows, complete = join_samples(tables)
    target = labdir.training_path(request_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _atomic.atomic_path(target, mode=0o600) as tmp:
        pq.write_table(table, tmp)
    n = table.num_rows
    coverage = Coverage(
        request_id=request_id,
        sample_size=entry.sample_size,
        rids=n,
        sources=tuple(
            SourceCoverage(
                source=s,
                body=accepted[s].body,
                rows=rows[s],
                share=round(rows[s] / n, 6) if n else 0.0,
            )
            for s in order
        ),
        missing=tuple(s for s in entry.sources if s not in accepted),
        complete_rows=complete,
        outcomes=tuple(c for c in table.column_names if c.startswith(OUTCOME_PREFIX)),
        training_file=labdir.relative(target),
    )
    _atomic.write_bytes(labdir.coverage_path(request_id), coverage.canonical_bytes() + b"\n")
    return coverage
