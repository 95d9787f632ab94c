"""``registry_combiner._result_chunks``: packed result chunks, and version-1 IPC ones."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_combiner._result_chunks import (
    RECORD,
    chunk_table,
    entity_rows,
    pack_chunk,
    pack_chunks,
)
from registry_combiner.errors import StoreError
from registry_combiner.store import RESULT_SCHEMA


def _table(entities: list[int], seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = len(entities)
    columns = {}
    for f in RESULT_SCHEMA:
        dtype = np.dtype(f.type.to_pandas_dtype())
        if f.name == "entity":
            columns[f.name] = np.asarray(entities, dtype=dtype)
        elif f.name == "probability":
            columns[f.name] = np.round(rng.random(n), 4)
        else:
            info = np.iinfo(dtype)
            columns[f.name] = rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)
    return pa.Table.from_arrays([pa.array(columns[f.name]) for f in RESULT_SCHEMA],
                                schema=RESULT_SCHEMA)  # fmt: skip


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 2**40), min_size=0, max_size=60), st.integers(0, 2**16))
def test_packed_and_ipc_chunks_read_the_same(entities, seed):
    """Every column's full range, any entity order and repeats: a packed chunk gives back
    the table, and one entity's rows, exactly as the Arrow IPC chunk of version 1 does."""
    table = _table(sorted(entities), seed)
    for blob in (pack_chunk(table), _ipc(table)):
        assert chunk_table(blob).equals(table)
        for entity in {*entities[:5], 0}:
            expected = table.filter(pa.compute.equal(table["entity"], entity)).to_pylist()
            assert entity_rows(blob, entity) == expected


def test_a_packed_record_is_37_bytes_in_schema_order():
    assert RECORD.itemsize == 37 and RECORD.names == tuple(RESULT_SCHEMA.names)
    blob = pack_chunk(_table([7, 7, 9], 1))
    assert blob[:6] == b"KZRC1\x00" and int.from_bytes(blob[6:10], "little") == 3


def test_a_damaged_chunk_is_a_store_error():
    blob = bytearray(pack_chunk(_table(list(range(1, 300)), 2)))
    blob[20:40] = bytes(20)
    with pytest.raises(StoreError) as err:
        entity_rows(bytes(blob), 5, where="register.sqlite")
    assert err.value.code == "store_corrupt" and "register.sqlite" in str(err.value)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 2_000), min_size=1, max_size=300).map(sorted),
    st.integers(1, 64),
    st.integers(0, 2**32 - 1),
)
def test_pack_chunks_cuts_every_n_entity_ids_and_loses_nothing(entities, per_chunk, seed):
    table = _table(entities, seed)
    chunks = list(pack_chunks(table, per_chunk))
    first_id = entities[0]
    rows = []
    for first, last, n, blob in chunks:
        part = chunk_table(blob)
        ids = part["entity"].to_pylist()
        assert n == part.num_rows and ids[0] == first and ids[-1] == last
        # every id of a chunk lies in one window of per_chunk ids from the first id
        assert (first - first_id) // per_chunk == (last - first_id) // per_chunk
        rows.append(part)
    assert [c[0] for c in chunks] == sorted(c[0] for c in chunks)
    assert pa.concat_tables(rows).equals(table)


def test_pack_chunks_refuses_rows_out_of_entity_order():
    with pytest.raises(StoreError, match="not sorted by entity"):
        list(pack_chunks(_table([3, 1, 2], 0), 2))
