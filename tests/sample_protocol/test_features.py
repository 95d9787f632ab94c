"""``sample_protocol.features``: encodings, round trip, replay, no row dropped."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sample_protocol.catalogue import get_source
from sample_protocol.errors import ValidationError
from sample_protocol.features import (
    FeatureColumn,
    FeatureKind,
    FeatureSpec,
    date_string_to_months,
    fit_source_features,
)


def _table() -> pa.Table:
    return pa.table(
        {
            "TAX__registration_date": pa.array(
                [dt.date(2000, 1, 15), dt.date(2001, 3, 1), None, dt.date(2023, 12, 31)]
            ),
            "TAX__deregistration_date": pa.array(["2023-Q3", "*", None, "2020"]),
            "TAX__tax_regime": pa.array(["general", "general", None, "patent"]),
            "TAX__non_filing": pa.array([True, False, None, True]),
            "TAX__tax_debt_kzt": pa.array([1.5, None, 0.0, 1e9]),
            "TAX__staff_count": pa.array([1, 2, None, 4], pa.int64()),
            "TAX__tax_office_code": pa.array(["75", "75", "*", "11"]),
        }
    )


def test_each_encoding():
    spec = fit_source_features(_table(), get_source("TAX"))
    kinds = {c.field: c.encoding for c in spec.columns}
    assert kinds["registration_date"] is FeatureKind.DATE
    assert kinds["deregistration_date"] is FeatureKind.DATE  # a generalised string date
    assert kinds["tax_regime"] is FeatureKind.CATEGORY
    assert kinds["non_filing"] is FeatureKind.BOOL
    assert kinds["tax_debt_kzt"] is FeatureKind.NUMERIC
    X = spec.transform(_table())
    assert X.dtype == np.float32 and X.shape == (4, len(spec))
    col = {c.field: X[:, j] for j, c in enumerate(spec.columns)}
    np.testing.assert_array_equal(col["registration_date"], [0, 14, np.nan, 287])
    np.testing.assert_array_equal(col["deregistration_date"], [283, np.nan, np.nan, 245.5])
    np.testing.assert_array_equal(col["tax_regime"], [0, 0, np.nan, 1])
    np.testing.assert_array_equal(col["non_filing"], [1, 0, np.nan, 1])
    np.testing.assert_array_equal(col["tax_debt_kzt"], [1.5, np.nan, 0, 1e9])
    np.testing.assert_array_equal(col["tax_office_code"], [0, 0, np.nan, 1])  # '*' is missing


def test_rare_and_unseen_share_a_code():
    values = ["a"] * 200 + ["b"] * 100 + ["c"]  # c: under 1%
    t = pa.table({"STATS__size_class": values})
    spec = fit_source_features(t, get_source("STATS"))
    [col] = spec.columns
    assert col.categories == ("a", "b") and col.other_code == 2
    got = spec.transform(pa.table({"size_class": ["c", "zzz", "b", "a"]}))[:, 0]
    np.testing.assert_array_equal(got, [2, 2, 1, 0])


def test_round_trip_and_replay():
    table = _table()
    spec = fit_source_features(table, get_source("TAX"))
    again = FeatureSpec.from_json(spec.to_json())
    assert again == spec
    np.testing.assert_array_equal(again.transform(table), spec.transform(table))
    # a body's own table: bare field names, same encoding
    bare = table.rename_columns([c.split("__", 1)[1] for c in table.column_names])
    np.testing.assert_array_equal(again.transform(bare), spec.transform(table))


def test_missing_column_refused_or_nan():
    spec = fit_source_features(_table(), get_source("TAX"))
    short = _table().drop_columns(["TAX__tax_regime"])
    with pytest.raises(ValidationError) as err:
        spec.transform(short)
    assert err.value.code == "missing_feature_column" and "tax_regime" in str(err.value)
    X = spec.transform(short, allow_missing=True)
    assert np.isnan(X[:, spec.names.index("TAX__tax_regime")]).all()


def test_bad_values_refused():
    with pytest.raises(ValidationError) as err:
        date_string_to_months("July 2023")
    assert err.value.code == "bad_date_string" and "July 2023" in str(err.value)
    spec = FeatureSpec(
        columns=(FeatureColumn(source="TAX", field="non_filing", encoding=FeatureKind.BOOL),)
    )
    with pytest.raises(ValidationError) as err:
        spec.transform(pa.table({"non_filing": ["yes"]}))
    assert err.value.code == "bad_feature_type" and "TAX__non_filing" in str(err.value)
    col = FeatureColumn(source="TAX", field="x", encoding=FeatureKind.NUMERIC)
    with pytest.raises(ValidationError) as err:
        FeatureSpec(columns=(col, col))
    assert err.value.code == "bad_feature_spec"


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.sampled_from(["micro", "small", "medium", "*"])), min_size=1),
    st.lists(st.one_of(st.none(), st.floats(-1e12, 1e12)), min_size=1),
)
def test_no_row_dropped_and_replay_equal(cats, amounts):
    n = min(len(cats), len(amounts))
    t = pa.table(
        {"STATS__size_class": cats[:n], "FIN_DEPOSITORY__revenue_kzt": pa.array(amounts[:n])}
    )
    for code in ("STATS", "FIN_DEPOSITORY"):
        spec = fit_source_features(t, get_source(code))
        X = spec.transform(t)
        nulls = [v is None or v == "*" for v in (cats if code == "STATS" else amounts)[:n]]
        # a field missing in every row is no feature; otherwise one column, no row dropped
        assert X.shape == (n, 0 if all(nulls) else 1)
        assert FeatureSpec.from_json(spec.to_json()).transform(t).tobytes() == X.tobytes()
        if not all(nulls):
            assert np.isnan(X[:, 0]).tolist() == nulls


def test_date_strings():
    assert date_string_to_months("2000-01-31") == 0.0
    assert date_string_to_months("2010-Q4") == 130.0
    assert math.isnan(date_string_to_months("*"))


def test_a_field_missing_in_every_row_is_not_a_feature():
    """A quasi-identifier suppressed to '*' everywhere carries nothing (and breaks HGB)."""
    table = _table().append_column("TAX__suspension_start_date", pa.array(["*", "*", None, "*"]))
    spec = fit_source_features(table, get_source("TAX"))
    names = {c.field for c in spec.columns}
    assert "suspension_start_date" not in names
    assert {"registration_date", "tax_regime"} <= names
    assert not np.isnan(spec.transform(table)).all(axis=0).any()


def test_min_observed_leaves_out_barely_seen_fields():
    # tax_debt_kzt is observed in 3 rows, staff_count in 3, tax_office_code in 3
    spec = fit_source_features(_table(), get_source("TAX"), min_observed=4)
    assert {c.field for c in spec.columns} == set()
    spec = fit_source_features(_table(), get_source("TAX"), min_observed=3)
    assert {"tax_debt_kzt", "staff_count", "tax_office_code"} <= {c.field for c in spec.columns}
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(ValidationError) as err:
            fit_source_features(_table(), get_source("TAX"), min_observed=bad)
        assert err.value.code == "bad_min_observed"


# --------------------------------------------------------------------------- fast paths


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.dates(dt.date(1900, 1, 1), dt.date(2100, 12, 31))),
                max_size=50))  # fmt: skip
def test_dates_become_the_months_numpy_gives(dates):
    col = FeatureColumn("TAX", "registration_date", FeatureKind.DATE)
    got = FeatureSpec(columns=(col,)).transform(pa.table({"registration_date": pa.array(
        dates, pa.date32())}))[:, 0]  # fmt: skip
    expected = [math.nan if d is None else float((d.year - 2000) * 12 + d.month - 1) for d in dates]
    np.testing.assert_array_equal(got, np.array(expected, dtype=np.float32))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 9000), st.integers(1, 6))
def test_blocked_interleave_is_a_plain_stack(n, k):
    rng = np.random.default_rng(n)
    columns = [FeatureColumn("TAX", f"f{i}", FeatureKind.NUMERIC) for i in range(k)]
    data = {f"f{i}": rng.normal(size=n) for i in range(k)}
    got = FeatureSpec(columns=tuple(columns)).transform(pa.table(data))
    expected = np.stack([data[f"f{i}"] for i in range(k)], axis=1).astype(np.float32)
    assert got.shape == (n, k) and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)


def test_dictionary_columns_encode_like_strings():
    """Chunks with different dictionaries, a value twice in one dictionary, nulls, unused
    values: each row encodes as its string would."""
    col = FeatureColumn("TAX", "tax_regime", FeatureKind.CATEGORY, ("general", "patent"))
    spec = FeatureSpec(columns=(col,))
    first = pa.DictionaryArray.from_arrays(
        pa.array([0, 1, None, 2], pa.int32()), pa.array(["patent", "retail", "patent", "unused"])
    )
    second = pa.array(["general", None, "other"]).dictionary_encode()
    chunked = pa.chunked_array([first, second])
    plain = chunked.cast(pa.string())
    got = spec.transform(pa.table({"tax_regime": chunked}))
    expected = spec.transform(pa.table({"tax_regime": plain}))
    np.testing.assert_array_equal(got, expected)
    assert got[:, 0].tolist()[:2] == [1.0, 2.0] and math.isnan(got[2, 0])


def test_placeholder_dates_far_apart_are_encoded():
    """Dates thousands of years apart (placeholders) are encoded row by row, not through
    a table of every day between them."""
    col = FeatureColumn("TAX", "registration_date", FeatureKind.DATE)
    days = pa.array([-(2**31) + 1, 2**31 - 1, 0, None], pa.int32()).cast(pa.date32())
    got = FeatureSpec(columns=(col,)).transform(pa.table({"registration_date": days}))[:, 0]
    expected = (
        np.array([-(2**31) + 1, 2**31 - 1, 0], dtype="datetime64[D]")
        .astype("datetime64[M]")
        .astype(np.int64)
        - 360
    ).astype(np.float32)
    np.testing.assert_array_equal(got[:3], expected)
    assert math.isnan(got[3])


def test_unused_dictionary_values_are_not_parsed():
    """A dictionary column may hold values no row has (after a filter): only the rows'
    values are read, as for plain strings."""
    col = FeatureColumn("TAX", "deregistration_date", FeatureKind.DATE)
    encoded = pa.array(["2020-01", "garbage", "2021-Q1"]).dictionary_encode()
    table = pa.table({"deregistration_date": encoded}).filter(pa.array([True, False, True]))
    plain = table.cast(pa.schema([("deregistration_date", pa.string())]))
    spec = FeatureSpec(columns=(col,))
    np.testing.assert_array_equal(spec.transform(table), spec.transform(plain))
    assert spec.transform(table)[:, 0].tolist() == [240.0, 253.0]
