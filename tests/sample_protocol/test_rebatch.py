"""``sample_protocol.rebatch``: pieces of any sizes, regrouped into tables of one size."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sample_protocol.rebatch import rebatch


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=12), st.integers(1, 50), st.booleans())
def test_rows_are_kept_in_order_in_tables_of_the_size(sizes, rows, as_batches):
    start = 0
    parts = []
    for n in sizes:
        table = pa.table({"x": list(range(start, start + n))})
        parts.append(table.to_batches()[0] if as_batches and n else table)
        start += n
    out = list(rebatch(parts, rows))
    assert all(t.num_rows == rows for t in out[:-1])
    assert all(0 < t.num_rows <= rows for t in out)
    assert [v for t in out for v in t["x"].to_pylist()] == list(range(start))
    assert all(t["x"].num_chunks == 1 for t in out)


def test_dictionaries_of_the_pieces_are_unified():
    a = pa.table({"c": pa.array(["x", "y", "x"]).dictionary_encode()})
    b = pa.table({"c": pa.array(["z", "x"]).dictionary_encode()})
    (whole,) = rebatch([a, b], 10)
    assert whole["c"].num_chunks == 1
    assert whole["c"].to_pylist() == ["x", "y", "x", "z", "x"]
    assert sorted(whole["c"].chunk(0).dictionary.to_pylist()) == ["x", "y", "z"]


def test_a_size_below_one_is_refused():
    with pytest.raises(ValueError, match="positive"):
        list(rebatch([pa.table({"x": [1]})], 0))
