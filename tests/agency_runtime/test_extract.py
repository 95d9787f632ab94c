"""Tests of agency_runtime/extract.py: reading a body's own extract against its contract."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agency_runtime.errors import RuntimeInputError
from agency_runtime.extract import extract_format, read_extract, read_keyed_file
from sample_protocol.catalogue import FieldSpec, get_source
from sample_protocol.errors import CatalogueError
from sample_protocol.identifiers import is_valid_bin, is_valid_iin
from sample_protocol.synthetic import generate_economy


@pytest.fixture(scope="module")
def economy_tables() -> dict[str, pa.Table]:
    eco = generate_economy(400, seed=11, sources=["TAX", "STATS", "LEGAL_ENTITY"])
    return dict(eco.sources)


@pytest.fixture()
def stats(economy_tables: dict[str, pa.Table]) -> pa.Table:
    return economy_tables["STATS"]


def _write(table: pa.Table, path: Path) -> Path:
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return path


def _replace(table: pa.Table, column: str, values: Sequence[object], tp: pa.DataType) -> pa.Table:
    i = table.column_names.index(column)
    return table.set_column(i, pa.field(column, tp), pa.array(values, type=tp))


def _set_row(table: pa.Table, column: str, row: int, value: object) -> pa.Table:
    values = table.column(column).to_pylist()
    values[row] = value
    return _replace(table, column, values, table.schema.field(column).type)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_round_trip_matches_the_contract(
    tmp_path: Path, economy_tables: dict[str, pa.Table], suffix: str
) -> None:
    table = economy_tables["TAX"]
    path = _write(table, tmp_path / f"TAX{suffix}")
    ext = read_extract(path, "TAX")
    assert ext.format == suffix.removeprefix(".")
    assert ext.rows_read == table.num_rows == ext.rows_kept
    assert ext.table.schema.equals(get_source("TAX").arrow_schema())
    assert ext.table.equals(table.cast(get_source("TAX").arrow_schema()))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_keep_and_fields_select_rows_and_columns(
    tmp_path: Path, stats: pa.Table, suffix: str
) -> None:
    path = _write(stats, tmp_path / f"STATS{suffix}")
    wanted = set(stats.column("bin").to_pylist()[5:15]) | {"990140000135"}  # one not present
    ext = read_extract(path, "STATS", fields=["size_class", "kato"], keep=wanted, batch_size=32)
    assert ext.table.column_names == ["bin", "size_class", "kato"]
    assert ext.rows_read == stats.num_rows
    assert set(ext.table.column("bin").to_pylist()) == wanted - {"990140000135"}


def test_missing_column_names_file_and_column(tmp_path: Path, stats: pa.Table) -> None:
    path = _write(stats.drop_columns(["size_class"]), tmp_path / "STATS.parquet")
    with pytest.raises(RuntimeInputError) as err:
        read_extract(path, "STATS")
    assert err.value.code == "missing_column"
    assert "size_class" in str(err.value) and str(path) in str(err.value)
    # a column not asked for may be missing
    assert read_extract(path, "STATS", fields=["kato"]).rows_read == stats.num_rows


def test_missing_column_csv(tmp_path: Path, stats: pa.Table) -> None:
    path = _write(stats.drop_columns(["kato"]), tmp_path / "STATS.csv")
    with pytest.raises(RuntimeInputError) as err:
        read_extract(path, "STATS")
    assert err.value.code == "missing_column" and "'kato'" in str(err.value)


def test_wrong_parquet_type_names_column(
    tmp_path: Path, economy_tables: dict[str, pa.Table]
) -> None:
    table = economy_tables["TAX"]
    as_text = [str(v) for v in table.column("staff_count").to_pylist()]
    path = _write(_replace(table, "staff_count", as_text, pa.string()), tmp_path / "TAX.parquet")
    with pytest.raises(RuntimeInputError) as err:
        read_extract(path, "TAX")
    assert err.value.code == "wrong_type"
    assert "'staff_count'" in str(err.value) and "int64" in str(err.value)
    assert "string" in str(err.value)


def test_wrong_csv_value_names_row_and_line(
    tmp_path: Path, economy_tables: dict[str, pa.Table]
) -> None:
    table = economy_tables["TAX"]
    values: list[object] = [str(v) for v in table.column("staff_count").to_pylist()]
    values[17] = "twelve"
    path = _write(_replace(table, "staff_count", values, pa.string()), tmp_path / "TAX.csv")
    with pytest.raises(RuntimeInputError) as err:
        read_extract(path, "TAX", batch_size=8)
    message = str(err.value)
    assert err.value.code == "wrong_type"
    assert "'staff_count' row 18 (line 19)" in message and "'twelve'" in message


def test_bad_csv_date_names_row(tmp_path: Path, economy_tables: dict[str, pa.Table]) -> None:
    table = economy_tables["TAX"]
    dates: list[object] = [d.isoformat() for d in table.column("registration_date").to_pylist()]
    dates[3] = "2023-02-30"
    bad = _replace(table, "registration_date", dates, pa.string())
    path = _write(bad, tmp_path / "TAX.csv")
    with pytest.raises(RuntimeInputError) as err:
        read_extract(path, "TAX", fields=["registration_date"])
    assert err.value.code == "wrong_type" and "row 4" in str(err.value)


def test_null_in_non_nullable_field(tmp_path: Path, stats: pa.Table) -> None:
    path = _write(_set_row(stats, "kato", 9, None), tmp_path / "STATS.parquet")
    with pytest.raises(RuntimeInputError) as err:
        read_extract(path, "STATS")
    assert err.value.code == "null_value" and "'kato' row 10" in str(err.value)


def test_out_of_range_value(tmp_path: Path, economy_tables: dict[str, pa.Table]) -> None:
    table = _set_row(economy_tables["TAX"], "tax_debt_kzt", 250, -5.0)
    path = _write(table, tmp_path / "TAX.parquet")
    with pytest.raises(RuntimeInputError) as err:
        read_extract(path, "TAX", batch_size=100)
    message = str(err.value)
    assert err.value.code == "out_of_range"
    assert "'tax_debt_kzt' row 251" in message and "-5.0" in message and "KZT" in message


def test_non_finite_number_refused(tmp_path: Path, economy_tables: dict[str, pa.Table]) -> None:
    table = _set_row(economy_tables["TAX"], "taxes_paid_kzt", 0, float("nan"))
    with pytest.raises(RuntimeInputError) as err:
        read_extract(_write(table, tmp_path / "TAX.parquet"), "TAX")
    assert err.value.code == "out_of_range" and "row 1" in str(err.value)


def test_bad_category(tmp_path: Path, stats: pa.Table) -> None:
    path = _write(_set_row(stats, "size_class", 2, "gigantic"), tmp_path / "STATS.csv")
    with pytest.raises(RuntimeInputError) as err:
        read_extract(path, "STATS")
    assert err.value.code == "bad_category"
    assert "'size_class' row 3" in str(err.value) and "micro" in str(err.value)


def _broken_checksum(value: str) -> str:
    return value[:11] + str((int(value[11]) + 1) % 10)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_invalid_identifier_named_by_row_and_masked(
    tmp_path: Path, stats: pa.Table, suffix: str
) -> None:
    original = stats.column("bin")[40].as_py()
    path = _write(_set_row(stats, "bin", 40, _broken_checksum(original)), tmp_path / f"S{suffix}")
    with pytest.raises(RuntimeInputError) as err:
        read_extract(path, "STATS", batch_size=16)
    message = str(err.value)
    assert err.value.code == "invalid_identifier"
    assert "'bin' row 41" in message and "checksum" in message
    assert original[:8] not in message  # masked: only the last 4 digits show


def test_identifier_not_digits_and_empty(tmp_path: Path, stats: pa.Table) -> None:
    path = _write(_set_row(stats, "bin", 0, "ABC"), tmp_path / "S.parquet")
    with pytest.raises(RuntimeInputError) as err:
        read_extract(path, "STATS")
    assert err.value.code == "invalid_identifier" and "row 1" in str(err.value)
    path = _write(_set_row(stats, "bin", 2, None), tmp_path / "S2.parquet")
    with pytest.raises(RuntimeInputError) as err:
        read_extract(path, "STATS")
    assert err.value.code == "invalid_identifier" and "empty" in str(err.value)


def test_numeric_key_column_refused(tmp_path: Path, stats: pa.Table) -> None:
    numbers = [int(v) for v in stats.column("bin").to_pylist()]
    path = _write(_replace(stats, "bin", numbers, pa.int64()), tmp_path / "S.parquet")
    with pytest.raises(RuntimeInputError) as err:
        read_extract(path, "STATS")
    assert err.value.code == "wrong_type" and "leading zeros" in str(err.value)


def test_bin_keyed_source_refuses_an_iin(
    tmp_path: Path, economy_tables: dict[str, pa.Table], stats: pa.Table
) -> None:
    le = economy_tables["LEGAL_ENTITY"]
    assert all(is_valid_bin(v) for v in le.column("bin").to_pylist())
    iin = next(v for v in stats.column("bin").to_pylist() if is_valid_iin(v))
    path = _write(_set_row(le, "bin", 5, iin), tmp_path / "LE.parquet")
    with pytest.raises(RuntimeInputError) as err:
        read_extract(path, "LEGAL_ENTITY")
    assert err.value.code == "invalid_identifier"
    assert "row 6" in str(err.value) and "BIN" in str(err.value)


def test_duplicate_identifier(tmp_path: Path, stats: pa.Table) -> None:
    twice = _set_row(stats, "bin", 300, stats.column("bin")[7].as_py())
    with pytest.raises(RuntimeInputError) as err:
        read_extract(_write(twice, tmp_path / "S.parquet"), "STATS", batch_size=64)
    message = str(err.value)
    assert err.value.code == "duplicate_identifier"
    assert "row 301" in message and "row 8" in message


def test_format_and_file_errors(tmp_path: Path, stats: pa.Table) -> None:
    with pytest.raises(RuntimeInputError) as err:
        extract_format(tmp_path / "x.xlsx")
    assert err.value.code == "unknown_format"
    with pytest.raises(RuntimeInputError) as err:
        read_extract(tmp_path / "absent.parquet", "STATS")
    assert err.value.code == "missing_extract"
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(RuntimeInputError) as err:
        read_extract(junk, "STATS")
    assert err.value.code == "unreadable_extract" and str(junk) in str(err.value)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(RuntimeInputError) as err:
        read_extract(empty, "STATS")
    assert err.value.code == "unreadable_extract"


def test_unknown_field_is_a_catalogue_error(tmp_path: Path, stats: pa.Table) -> None:
    path = _write(stats, tmp_path / "S.parquet")
    with pytest.raises(CatalogueError) as err:
        read_extract(path, "STATS", fields=["no_such_field"])
    assert err.value.code == "unknown_field"


def test_parquet_widening_casts(tmp_path: Path, stats: pa.Table) -> None:
    """Narrower integer types and dictionary strings are accepted and cast."""
    table = pa.table(
        {
            "bin": pc.cast(stats.column("bin"), pa.large_string()),
            "n": pa.array(list(range(stats.num_rows)), type=pa.int16()),
            "d": pa.array([dt.date(2024, 1, 2)] * stats.num_rows, type=pa.date64()),
            "c": pc.dictionary_encode(stats.column("size_class")),
        }
    )
    fields = [
        FieldSpec("n", "int64", max_value=10_000),
        FieldSpec("d", "date32"),
        FieldSpec("c", "category", categories=("micro", "small", "medium", "large")),
    ]
    ext = read_keyed_file(_write(table, tmp_path / "w.parquet"), fields)
    assert ext.table.schema.field("n").type == pa.int64()
    assert ext.table.schema.field("d").type == pa.date32()
    assert ext.table.column("c").to_pylist() == stats.column("size_class").to_pylist()


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(st.integers(min_value=0, max_value=399), min_size=1, max_size=40, unique=True),
    batch=st.integers(min_value=1, max_value=64),
)
def test_row_numbers_do_not_depend_on_batching(
    tmp_path: Path, stats: pa.Table, rows: list[int], batch: int
) -> None:
    """The first bad row is reported the same, whatever the batch size."""
    bad = stats
    for r in rows:
        bad = _set_row(bad, "kato", r, None)
    path = _write(bad, tmp_path / "bad.parquet")
    with pytest.raises(RuntimeInputError) as err:
        read_extract(path, "STATS", fields=["kato"], batch_size=batch)
    assert f"row {min(rows) + 1}:" in str(err.value)


def test_bad_cells_are_described_without_personal_data():
    from agency_runtime.extract import _short

    assert _short(960101300127) == "a 12-digit number (********0127)"
    assert "960101300127" not in _short("Иванов 960101300127")
    assert "Ivanov" not in _short("Ivanov")
    assert _short("SIMPLIFIED") == "'SIMPLIFIED'"  # a category code is shown
    assert _short(75) == "75"  # so is a small count


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)), max_size=40),
    st.integers(0, 5),
)
def test_numbers_fast_path_agrees_with_a_row_by_row_check(values, cut):
    from agency_runtime.extract import _numbers_within

    spec = FieldSpec("x", "float64", min_value=-1e6, max_value=1e6)
    arr = pa.array(values, pa.float64()).slice(min(cut, len(values)))
    expected = all(
        v is None or (v == v and abs(v) != float("inf") and -1e6 <= v <= 1e6)
        for v in arr.to_pylist()
    )
    assert _numbers_within(arr, spec) is expected
    ints = pa.array([None if v is None or v != v or abs(v) > 1e12 else int(v) for v in values],
                    pa.int64())  # fmt: skip
    assert _numbers_within(ints, spec) is all(
        v is None or -1e6 <= v <= 1e6 for v in ints.to_pylist()
    )
