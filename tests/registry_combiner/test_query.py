"""``registry_combiner.query``: one entity's view (``show``) and the export."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from registry_combiner.errors import RegistryInputError
from registry_combiner.query import EXPORT_SCHEMA, entity_view, export_current
from registry_combiner.store_sqlite import SqliteStore
from sample_protocol.errors import IdentifierError
from sample_protocol.identifiers import is_valid_identifier
from tests.registry_combiner.conftest import Register


def test_view_of_an_entity(combined: Register):
    lists = pq.read_table(combined.world.feeds["TAX_LISTS"])
    bankrupt = lists.filter(lists["bankrupt"])["bin"][0].as_py()
    view = entity_view(combined.store, bankrupt)
    assert view["entity"]["bin"] == bankrupt and "bankrupt" in view["lists"]
    assert view["run"]["release_id"] == combined.world.release_id
    by_index = {ix["index"]: ix for ix in view["indexes"]}
    assert list(by_index) == [
        "conscientiousness", "financial_stability", "payment_discipline", "business_reputation",
    ]  # fmt: skip
    fs = by_index["financial_stability"]
    assert fs["category"] == "high" and fs["overridden"] and "bankrupt" in fs["overrides"]
    assert fs["reasons"][0]["code"] in {"TAX_LISTS.bankrupt", "TAX_LISTS.pseudo_enterprise"}
    assert fs["coverage"]["preliminary"] == {"TAX": "present"}
    assert set(fs["coverage"]["direct"].values()) <= {"present", "no_record"}
    assert fs["history"][0]["value"] == fs["value"] and 1 <= fs["value"] <= 99
    assert 0.0 <= fs["probability"] <= 1.0


def test_view_names_a_legal_entity_and_is_empty_before_any_run(combined: Register, tmp_path):
    le = pq.read_table(combined.world.feeds["LEGAL_ENTITY"])
    row = le.slice(3, 1).to_pylist()[0]
    view = entity_view(combined.store, row["bin"], history=1)
    assert view["entity"]["name"] == row["name_ru"] and view["entity"]["kind"] == "legal"
    fresh = SqliteStore(tmp_path / "r.sqlite")
    fresh.ensure_entities([row["bin"]])
    empty = entity_view(fresh, row["bin"])
    assert empty["run"] is None and empty["indexes"] == []
    fresh.close()


def test_bad_and_unknown_identifiers(combined: Register):
    with pytest.raises(IdentifierError) as err:
        entity_view(combined.store, "123456789012")
    assert err.value.exit_code == 2
    unknown = next(
        f"99014000{i:03d}{c}"
        for i in range(1000)
        for c in "0123456789"
        if is_valid_identifier(f"99014000{i:03d}{c}")
        and combined.store.entity(f"99014000{i:03d}{c}") is None
    )
    with pytest.raises(RegistryInputError) as err2:
        entity_view(combined.store, unknown)
    assert err2.value.code == "unknown_entity" and unknown not in str(err2.value)


def test_export_writes_the_current_indexes(combined: Register, tmp_path: Path):
    out = tmp_path / "out" / "indexes.parquet"
    done = export_current(combined.store, out)
    table = pq.read_table(out)
    assert table.schema.equals(EXPORT_SCHEMA)
    assert done.rows == table.num_rows == 16_000 and done.entities == 4000
    assert sorted(p.name for p in out.parent.iterdir()) == ["indexes.parquet"]  # no temp file
    assert set(table["category"].to_pylist()) == {"low", "medium", "high"}
    assert table["release_id"].unique().to_pylist() == [combined.world.release_id]
    bins = combined.store.entity_bins()
    assert table["bin"].unique().to_pylist() == bins["bin"].to_pylist()
    view = entity_view(combined.store, bins["bin"][10].as_py())
    mine = table.filter(pc.equal(table["bin"], bins["bin"][10]))
    assert mine["value"].to_pylist() == [ix["value"] for ix in view["indexes"]]
    assert mine["reason1"].to_pylist() == [
        ix["reasons"][0]["code"] if ix["reasons"] else None for ix in view["indexes"]
    ]
    assert not table["partial"].to_numpy(zero_copy_only=False).any()


def test_export_before_any_run_is_empty(tmp_path: Path):
    store = SqliteStore(tmp_path / "r.sqlite")
    done = export_current(store, tmp_path / "e.parquet")
    assert done.rows == 0 and pq.read_table(tmp_path / "e.parquet").num_rows == 0
    store.close()
