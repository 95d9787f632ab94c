"""Arrow tables or record batches of any sizes, regrouped into tables of a set size.

Used where a stream's pieces come out smaller than the work wants them: the scorer's
reader (pyarrow ends a dictionary-encoded batch at every row group) and the register's
``export`` (one small result chunk per 512 entities, written in row groups of 2**18).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa

__all__ = ["rebatch"]


def rebatch(parts: Iterable[pa.Table | pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """The rows of ``parts``, in order, as tables of exactly ``rows`` rows (the last may
    have fewer; none is empty). Each table's columns are one chunk: ``combine_chunks``
    also unifies the dictionaries of dictionary-encoded columns."""
    if rows < 1:
        raise ValueError(f"rows: expected a positive integer, found {rows}")
    pending: list[pa.Table] = []
    size = 0
    for part in parts:
        table = pa.Table.from_batches([part]) if isinstance(part, pa.RecordBatch) else part
        if not table.num_rows:
            continue
        pending.append(table)
        size += table.num_rows
        while size >= rows:
            whole = pa.concat_tables(pending).combine_chunks()
            yield whole.slice(0, rows)
            rest = whole.slice(rows)
            pending, size = ([rest] if rest.num_rows else []), rest.num_rows
    if size:
        yield pa.concat_tables(pending).combine_chunks()
