"""``registry_combiner.feeds``: direct feeds checked against their source contract."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from registry_combiner.errors import RegistryInputError, RegistryRefused
from registry_combiner.feeds import LISTS, LISTS_SPEC, feed_spec, ingest_feed
from registry_combiner.store import LISTS_SOURCE
from sample_protocol.catalogue import Mode
from tests.registry_combiner.conftest import Register


def test_lists_contract_is_the_tax_sources_list_fields():
    assert LISTS_SPEC.code == LISTS_SOURCE and LISTS_SPEC.field_names() == LISTS
    assert all(f.dtype == "bool" for f in LISTS_SPEC.fields)
    assert feed_spec("UTILITIES").default_mode is Mode.DIRECT


def test_a_preliminary_or_unknown_source_is_not_a_feed():
    with pytest.raises(RegistryRefused) as err:
        feed_spec("TAX")
    assert err.value.code == "feed_not_direct"
    with pytest.raises(RegistryInputError) as err2:
        feed_spec("NOPE")
    assert err2.value.code == "feed_unknown_source"


def test_legal_entity_feed_fills_profiles_and_search(reg: Register):
    path = reg.world.feeds["LEGAL_ENTITY"]
    done = ingest_feed(reg.store, "LEGAL_ENTITY", path, as_of=dt.date(2025, 1, 1))
    table = pq.read_table(path)
    assert done.feed.rows == table.num_rows == done.profiles == done.entities_new
    first = table.slice(0, 1).to_pylist()[0]
    entity = reg.store.entity(first["bin"])
    assert entity.kind == "legal" and entity.name == first["name_ru"]
    assert entity.legal_form == first["legal_form"] and entity.region == first["kato"]
    assert entity.registration_date == first["registration_date"]
    word = next(w for w in first["name_ru"].replace('"', " ").split() if len(w) > 3)
    assert first["bin"] in {e.bin for e in reg.store.search_entities(word, limit=1000)}
    values = reg.store.feed_values("LEGAL_ENTITY", entity.id)
    assert values["status"] == first["status"] and "bin" not in values
    with pytest.raises(RegistryRefused) as err:
        ingest_feed(reg.store, "LEGAL_ENTITY", path)
    assert err.value.code == "feed_replayed"


def test_lists_feed_marks_entities(reg: Register):
    done = ingest_feed(reg.store, LISTS_SOURCE, reg.world.feeds[LISTS_SOURCE])
    table = pq.read_table(reg.world.feeds[LISTS_SOURCE])
    assert done.lists["bankrupt"] == pc.sum(table["bankrupt"]).as_py() > 0
    bankrupt = table.filter(table["bankrupt"])["bin"][0].as_py()
    assert "bankrupt" in reg.store.lists_of(reg.store.entity(bankrupt).id)


Edit = Callable[[pa.Table], pa.Table]


def _set(column: str, row: int, value: object) -> Edit:
    def edit(t: pa.Table) -> pa.Table:
        values = t[column].to_pylist()
        values[row] = value
        i = t.column_names.index(column)
        tp = t.field(column).type
        return t.set_column(i, pa.field(column, tp), pa.array(values, tp))

    return edit


def _retype(column: str, tp: pa.DataType) -> Edit:
    def edit(t: pa.Table) -> pa.Table:
        i = t.column_names.index(column)
        return t.set_column(i, column, t[column].cast(tp))

    return edit


CASES: list[tuple[str, Edit, str, str]] = [
    ("missing", lambda t: t.drop_columns(["arrears_kzt"]), "feed_missing_column", "arrears_kzt"),
    (
        "extra",
        lambda t: t.append_column("owner_name", pa.array(["x"] * t.num_rows)),
        "feed_extra_column",
        "owner_name",
    ),
    ("type", _retype("arrears_kzt", pa.string()), "feed_wrong_type", "arrears_kzt"),
    ("key-type", _retype("bin", pa.int64()), "feed_wrong_type", "'bin'"),
    ("null", _set("nonpayment_months_12m", 6, None), "feed_null_value", "row 7"),
    ("range", _set("nonpayment_months_12m", 4, 13), "feed_out_of_range", "row 5"),
    ("nan", _set("arrears_kzt", 2, float("nan")), "feed_out_of_range", "row 3"),
    ("category", _set("service_type", 3, "internet"), "feed_bad_category", "row 4"),
    ("bad-iin", _set("bin", 5, "123456789012"), "feed_invalid_identifier", "row 6"),
    ("dup", _set("bin", 9, None), "feed_duplicate_identifier", "row 10"),
]


@pytest.mark.parametrize(
    ("edit", "code", "names"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_bad_feed_names_column_and_row_and_stores_nothing(reg, tmp_path, edit, code, names):
    table = pq.read_table(reg.world.feeds["UTILITIES"])
    if code == "feed_duplicate_identifier":
        edit = _set("bin", 9, table["bin"][0].as_py())
    path = tmp_path / "UTILITIES.parquet"
    pq.write_table(edit(table), path)
    with pytest.raises(RegistryInputError) as err:
        ingest_feed(reg.store, "UTILITIES", path)
    assert err.value.code == code and err.value.exit_code == 2
    assert names in str(err.value) and str(path) in str(err.value)
    assert reg.store.current_feeds() == {} and reg.store.max_entity_id() == 0


def test_unreadable_feed(reg: Register, tmp_path: Path):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(RegistryInputError) as err:
        ingest_feed(reg.store, "UTILITIES", path)
    assert err.value.code == "feed_unreadable"
    with pytest.raises(RegistryInputError) as err:
        ingest_feed(reg.store, "UTILITIES", tmp_path / "none.parquet")
    assert err.value.code == "feed_missing"


def test_a_bin_keyed_source_refuses_an_iin(reg: Register, tmp_path: Path):
    table = pq.read_table(reg.world.feeds["LEGAL_ENTITY"])
    iin = pq.read_table(reg.world.world.extract("TAX"))["bin"]
    an_iin = next(b for b in iin.to_pylist() if b[4] in "0123")
    path = tmp_path / "le.parquet"
    pq.write_table(_set("bin", 2, an_iin)(table), path)
    with pytest.raises(RegistryInputError) as err:
        ingest_feed(reg.store, "LEGAL_ENTITY", path)
    assert err.value.code == "feed_invalid_identifier" and "valid BIN" in str(err.value)
    assert an_iin not in str(err.value)  # identifiers are masked
