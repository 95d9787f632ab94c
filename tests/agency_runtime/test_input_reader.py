"""Tests of agency_runtime/input_reader.py: streamed, checked population; training-like encoding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agency_runtime._kanon import coarsen_dates, generalise
from agency_runtime.depersonalise import source_depersonalisation_plan
from agency_runtime.errors import RuntimeInputError, RuntimeRefused
from agency_runtime.input_reader import (
    LEVELS,
    generalisation_plan,
    generalise_like_training,
    open_population,
)
from sample_protocol.catalogue import get_source
from sample_protocol.errors import CatalogueError
from sample_protocol.features import FeatureColumn, FeatureKind, FeatureSpec, fit_source_features

from .round_fixtures import economy_for

N = 400
TAX_FIELDS = ("tax_office_code", "tax_regime", "staff_count", "risk_category", "registration_date")


@pytest.fixture(scope="module")
def tax() -> pa.Table:
    return economy_for(N, 11, ("TAX", "STATS")).sources["TAX"]


@pytest.fixture(scope="module")
def stats() -> pa.Table:
    return economy_for(N, 11, ("TAX", "STATS")).sources["STATS"]


def write(table: pa.Table, path: Path) -> Path:
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return path


def read_all(path: Path, fields=TAX_FIELDS, batch_size: int = 64, lean: bool = False) -> pa.Table:
    population = open_population(path, "TAX", fields=fields, batch_size=batch_size, lean=lean)
    return pa.concat_tables(list(population.batches()))


def error(
    path: Path, code: str, fields=TAX_FIELDS, batch_size: int = 64, lean: bool = False
) -> str:
    with pytest.raises(RuntimeInputError) as err:
        read_all(path, fields, batch_size, lean)
    assert err.value.code == code, str(err.value)
    assert err.value.exit_code == 2
    assert str(path) in str(err.value)
    return str(err.value)


def with_value(table: pa.Table, column: str, row: int, value: object) -> pa.Table:
    values = table.column(column).to_pylist()
    values[row] = value
    i = table.column_names.index(column)
    field = table.schema.field(column)
    try:
        array = pa.array(values, field.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        array = pa.array([None if v is None else str(v) for v in values], pa.string())
        field = pa.field(column, pa.string())
    return table.set_column(i, pa.field(column, array.type, nullable=True), array)


# --------------------------------------------------------------------------- streaming


def test_streams_checked_batches(tax: pa.Table, tmp_path: Path) -> None:
    path = write(tax, tmp_path / "TAX.parquet")
    population = open_population(path, "TAX", fields=TAX_FIELDS, batch_size=64)
    assert population.key == "bin" and population.total_rows == N
    batches = list(population.batches())
    assert [b.num_rows for b in batches] == [64] * 6 + [16]
    got = pa.concat_tables(batches)
    assert got.schema == population.schema
    assert got.column_names == ["bin", *TAX_FIELDS]
    expected = tax.select(["bin", *TAX_FIELDS])
    for name in expected.column_names:
        assert got.column(name).to_pylist() == expected.column(name).to_pylist(), name
    assert "taxpayer_name" not in got.column_names  # only what the models read


def test_lean_reads_text_columns_as_dictionaries(tax: pa.Table, tmp_path: Path) -> None:
    path = write(tax, tmp_path / "TAX.parquet")
    population = open_population(path, "TAX", fields=TAX_FIELDS, batch_size=64, lean=True)
    got = pa.concat_tables(list(population.batches()))
    assert got.schema == population.schema
    text = {"tax_office_code", "tax_regime", "risk_category"}
    assert {f.name for f in got.schema if pa.types.is_dictionary(f.type)} == text
    plain = read_all(path)
    for name in plain.column_names:  # the same values, only encoded
        assert got.column(name).to_pylist() == plain.column(name).to_pylist(), name
    # a CSV file has no dictionaries to keep: lean reads it as usual
    csv = read_all(write(tax, tmp_path / "TAX.csv"), lean=True)
    assert csv.equals(plain)


def test_lean_batches_span_small_row_groups(tax: pa.Table, tmp_path: Path) -> None:
    """Read as dictionaries, pyarrow stops at each row group; the batches are joined back
    to the asked size, with the same rows in the same order."""
    path = tmp_path / "TAX.parquet"
    pq.write_table(tax, path, row_group_size=37)
    plain, lean = (
        list(open_population(path, "TAX", fields=TAX_FIELDS, batch_size=64, lean=f).batches())
        for f in (False, True)
    )
    assert [b.num_rows for b in lean] == [b.num_rows for b in plain] == [64] * 6 + [16]
    for a, b in zip(plain, lean, strict=True):
        for name in a.column_names:
            assert a.column(name).to_pylist() == b.column(name).to_pylist(), name


def test_lean_batches_give_the_same_matrices(tax: pa.Table, tmp_path: Path) -> None:
    """Generalised and encoded from dictionaries, the features are those of plain strings:
    nulls, codes cut to a prefix, suppressed levels and unseen values alike."""
    table = with_value(tax, "deregistration_reason", 3, None)
    path = write(table, tmp_path / "TAX.parquet")
    fields = ("tax_office_code", "deregistration_reason", "tax_regime", "risk_category")
    columns = (
        _category("TAX", "deregistration_reason", "bankruptcy", "other"),
        _category("TAX", "tax_office_code", "75", "71"),
        _category("TAX", "tax_regime", "general"),  # the others: unseen in training
        _category("TAX", "risk_category", "high", "low"),
    )
    spec = FeatureSpec(columns=columns)
    for level in ("full", "prefix2", "*"):
        plan = {"tax_office_code": ("code", level)}
        plain, lean = (
            spec.transform(generalise_like_training(read_all(path, fields, lean=flag), plan))
            for flag in (False, True)
        )
        np.testing.assert_array_equal(lean, plain)
        assert np.isnan(plain[3, 0])  # the null stays missing
        assert len(np.unique(plain[:, 2])) == 2  # "general" or another regime


def test_csv_reads_like_parquet(tax: pa.Table, tmp_path: Path) -> None:
    parquet = read_all(write(tax, tmp_path / "TAX.parquet"))
    csv = read_all(write(tax, tmp_path / "TAX.csv"))
    assert csv.equals(parquet)
    population = open_population(tmp_path / "TAX.csv", "TAX", fields=TAX_FIELDS)
    assert population.format == "csv" and population.total_rows is None


def test_iin_key_column(tax: pa.Table, tmp_path: Path) -> None:
    renamed = tax.rename_columns(["iin" if c == "bin" else c for c in tax.column_names])
    path = write(renamed, tmp_path / "TAX.parquet")
    population = open_population(path, "TAX", fields=TAX_FIELDS)
    assert population.key == "iin"
    got = pa.concat_tables(list(population.batches()))
    assert got.column("bin").to_pylist() == tax.column("bin").to_pylist()


# --------------------------------------------------------------------------- bad input


def test_missing_key_and_columns(tax: pa.Table, tmp_path: Path) -> None:
    message = error(write(tax.drop_columns(["bin"]), tmp_path / "a.parquet"), "missing_column")
    assert "'bin'" in message and "'iin'" in message
    message = error(
        write(tax.drop_columns(["staff_count"]), tmp_path / "b.parquet"), "missing_column"
    )
    assert "'staff_count'" in message
    for lean in (False, True):  # a text column read as a dictionary, missing
        message = error(
            write(tax.drop_columns(["tax_regime"]), tmp_path / "c.parquet"), "missing_column",
            lean=lean,
        )  # fmt: skip
        assert "'tax_regime'" in message
    error(write(tax.drop_columns(["staff_count"]), tmp_path / "b.csv"), "missing_column")


def test_wrong_types(tax: pa.Table, tmp_path: Path) -> None:
    as_text = tax.set_column(
        tax.column_names.index("staff_count"),
        "staff_count",
        pc.cast(tax["staff_count"], pa.string()),
    )
    message = error(write(as_text, tmp_path / "a.parquet"), "wrong_type")
    assert "'staff_count'" in message and "whole numbers" in message
    numeric_keys = tax.set_column(0, "bin", pc.cast(tax["bin"], pa.int64()))
    assert "leading zeros" in error(write(numeric_keys, tmp_path / "b.parquet"), "wrong_type")
    bad_csv = with_value(tax, "staff_count", 9, "seven")
    message = error(write(bad_csv, tmp_path / "c.csv"), "wrong_type")
    assert "row 10 (line 11)" in message


@pytest.mark.parametrize(
    ("column", "value", "code"),
    [
        ("staff_count", -5, "out_of_range"),
        ("staff_count", 10**9, "out_of_range"),
        ("tax_regime", None, "null_value"),
        ("risk_category", "extreme", "bad_category"),
        ("bin", "123", "invalid_identifier"),
        ("bin", "123456789012", "invalid_identifier"),
    ],
)
def test_bad_values_name_column_and_row(
    tax: pa.Table, tmp_path: Path, column: str, value: object, code: str
) -> None:
    for suffix in (".parquet", ".csv"):
        path = write(with_value(tax, column, 200, value), tmp_path / f"TAX{suffix}")
        for lean in (False, True):
            message = error(path, code, lean=lean)
            assert repr(column) in message and "row 201" in message
            if column == "bin":
                assert "123456789012" not in message  # identifiers are masked


def test_duplicate_key_names_both_rows(tax: pa.Table, tmp_path: Path) -> None:
    dup = with_value(tax, "bin", 321, tax["bin"][17].as_py())
    for suffix in (".parquet", ".csv"):
        message = error(write(dup, tmp_path / f"TAX{suffix}"), "duplicate_identifier")
        assert "row 322" in message and "first seen in row 18" in message
        assert tax["bin"][17].as_py() not in message


def test_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_bytes(b"PAR1 not a parquet file")
    with pytest.raises(RuntimeInputError) as err:
        open_population(tmp_path / "x.parquet", "TAX", fields=TAX_FIELDS)
    assert err.value.code == "unreadable_extract"
    with pytest.raises(RuntimeInputError) as err:
        open_population(tmp_path / "none.parquet", "TAX", fields=TAX_FIELDS)
    assert err.value.code == "missing_extract"
    with pytest.raises(RuntimeInputError) as err:
        open_population(tmp_path / "x.xlsx", "TAX", fields=TAX_FIELDS)
    assert err.value.code == "unknown_format"
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(RuntimeInputError) as err:
        open_population(tmp_path / "empty.csv", "TAX", fields=TAX_FIELDS)
    assert err.value.code == "unreadable_extract"
    (tmp_path / "latin.csv").write_bytes("bin,r\xe9gime\n".encode("latin-1"))
    with pytest.raises(RuntimeInputError) as err:
        open_population(tmp_path / "latin.csv", "TAX", fields=TAX_FIELDS)
    assert err.value.code == "unreadable_extract"
    with pytest.raises(CatalogueError):
        open_population(tmp_path / "x.parquet", "TAX", fields=["no_such_field"])


def test_ragged_csv_is_unreadable(tax: pa.Table, tmp_path: Path) -> None:
    path = write(tax.slice(0, 50), tmp_path / "TAX.csv")
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("1,2\n")
    error(path, "unreadable_extract")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    row=st.integers(0, N - 1),
    key=st.sampled_from(["", "1", "abcdefghijkl", "1234567890123", "99999999999x", "000000000000"]),
)
def test_any_bad_key_is_refused_at_its_row(
    tax: pa.Table, tmp_path: Path, row: int, key: str
) -> None:
    path = write(with_value(tax, "bin", row, key), tmp_path / "TAX.parquet")
    message = error(path, "invalid_identifier")
    assert f"row {row + 1}" in message


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    row=st.integers(0, N - 1),
    field=st.sampled_from(["staff_count", "audits_3y", "tax_burden_coefficient", "taxes_paid_kzt"]),
    below=st.booleans(),
)
def test_any_out_of_range_value_is_refused(
    tax: pa.Table, tmp_path: Path, row: int, field: str, below: bool
) -> None:
    spec = get_source("TAX").field(field)
    if not below and spec.max_value is None:
        below = True
    value = (spec.min_value or 0) - 1 if below else (spec.max_value or 0) * 2 + 1
    if spec.dtype == "int64":
        value = int(value)
    path = write(with_value(tax, field, row, value), tmp_path / "TAX.parquet")
    message = error(path, "out_of_range", fields=(field,))
    assert f"row {row + 1}" in message and repr(field) in message


def test_bad_batch_size(tax: pa.Table, tmp_path: Path) -> None:
    with pytest.raises(RuntimeInputError):
        open_population(write(tax, tmp_path / "t.parquet"), "TAX", fields=TAX_FIELDS, batch_size=0)


# --------------------------------------------------------------------------- like the training


def _category(source: str, field: str, *categories: str) -> FeatureColumn:
    return FeatureColumn(source, field, FeatureKind.CATEGORY, tuple(categories))


@pytest.mark.parametrize(
    ("field", "categories", "level"),
    [
        ("kato", ("75", "71"), "region"),
        ("kato", ("7511", "7107"), "district"),
        ("kato", ("751110000",), "full"),
        ("oked", ("G", "C"), "section"),
        ("oked", ("46", "47"), "division"),
        ("oked", ("46900",), "full"),
        ("size_class", ("sme", "large"), "sme"),
        ("size_class", ("micro", "small"), "full"),
        ("krp_code", ("105",), "full"),
    ],
)
def test_levels_inferred_from_training_categories(
    field: str, categories: tuple[str, ...], level: str
) -> None:
    spec = FeatureSpec(columns=(_category("STATS", field, *categories),))
    plan = generalisation_plan(get_source("STATS"), [spec])
    assert plan[field][1] == level
    assert level in LEVELS[plan[field][0]]


def test_code_and_date_levels_and_notes() -> None:
    tax = get_source("TAX")
    spec = FeatureSpec(
        columns=(
            _category("TAX", "tax_office_code", "75", "71"),
            FeatureColumn("TAX", "registration_date", FeatureKind.DATE),
            FeatureColumn("TAX", "staff_count", FeatureKind.NUMERIC),
        )
    )
    assert generalisation_plan(tax, [spec]) == {
        "tax_office_code": ("code", "prefix2"),
        "registration_date": ("date", "month"),
    }
    notes = {"generalisation:TAX": json.dumps({"registration_date": "year", "other": "x"})}
    assert generalisation_plan(tax, [spec], notes)["registration_date"] == ("date", "year")
    for bad in ('{"registration_date": "decade"}', "[1, 2]", "not json"):
        with pytest.raises(RuntimeRefused) as err:
            generalisation_plan(tax, [spec], {"generalisation:TAX": bad})
        assert err.value.code == "release_generalisation"


def _training_form(
    raw: pa.Table, source: str, k: int
) -> tuple[pa.Table, dict[str, str], np.ndarray]:
    """What depersonalisation does to the values (without top/bottom coding), and which rows
    kept their quasi-identifiers (not suppressed)."""
    direct, quasi, _ = source_depersonalisation_plan(get_source(source))
    direct = [c for c in direct if c in raw.column_names and c != "bin"]
    table, _ = coarsen_dates(raw.drop_columns(direct))
    table, steps = generalise(table, quasi, k, key="bin")
    kept = np.ones(table.num_rows, dtype=bool)
    for name in (q for q in quasi if steps.levels[q] != "*"):
        cells = pc.fill_null(pc.not_equal(table[name], "*"), True)
        kept &= np.asarray(cells.to_numpy(zero_copy_only=False))
    return table, steps.levels, kept


@pytest.mark.parametrize(("source", "k"), [("STATS", 5), ("STATS", 25), ("TAX", 5), ("TAX", 40)])
def test_raw_rows_get_the_features_of_their_generalised_form(
    tax: pa.Table, stats: pa.Table, source: str, k: int
) -> None:
    raw = {"TAX": tax, "STATS": stats}[source]
    spec_src = get_source(source)
    training, levels, kept = _training_form(raw, source, k)
    assert kept.mean() > 0.9
    spec = fit_source_features(training, spec_src, min_share=0.0)
    # inferred from the categories alone; dates need the release's note (they are strings
    # at any level, so the categories cannot tell)
    notes = {f"generalisation:{source}": json.dumps(levels)}
    for note in (None, notes):
        plan = generalisation_plan(spec_src, [spec], note)
        if note is None and any(LEVELS["date"][2:].count(v) for v in levels.values()):
            continue  # a date at quarter or year: only the note can say so
        ours = spec.transform(generalise_like_training(raw, plan))
        theirs = spec.transform(training)
        np.testing.assert_array_equal(ours[kept], theirs[kept])


def test_a_raw_office_code_lands_in_its_training_category() -> None:
    spec = FeatureSpec(columns=(_category("TAX", "tax_office_code", "75", "71"),))
    plan = generalisation_plan(get_source("TAX"), [spec])
    raw = pa.table({"tax_office_code": ["7506", "7107", "7501", "1905"]})
    generalised = pa.table({"tax_office_code": ["75", "71", "75", "19"]})
    assert spec.transform(generalise_like_training(raw, plan)).tolist() == [
        [0.0],
        [1.0],
        [0.0],
        [2.0],
    ]
    assert (
        spec.transform(generalise_like_training(raw, plan)).tolist()
        == spec.transform(generalised).tolist()
    )
    assert spec.transform(raw).tolist() == [[2.0]] * 4  # without it: every office is "other"
