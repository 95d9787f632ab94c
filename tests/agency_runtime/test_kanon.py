"""k-anonymity and the value transforms of ``agency_runtime._kanon``."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agency_runtime._kanon import (
    OKED_SECTIONS,
    SUPPRESSED,
    _hierarchy,
    coarsen_dates,
    drop_columns,
    generalise,
    oked_section,
    top_bottom_code,
)
from agency_runtime.errors import RuntimeInputError

# -- hierarchies -------------------------------------------------------------------------


def test_kato_truncates_to_district_then_region_then_star():
    kato = ["751110000", "751120000", "751130000", "752210000", "752220000", "111110000"]
    t = pa.table({"kato": kato * 2})
    out, steps = generalise(t, {"kato": "kato"}, k=2)
    assert steps.levels == {"kato": "full"} and steps.history == ()
    assert out.column("kato").to_pylist() == kato * 2
    out, steps = generalise(t, {"kato": "kato"}, k=4, max_suppressed=0.2)
    assert steps.levels == {"kato": "district"} and steps.history == ("kato:district",)
    assert Counter(out.column("kato").to_pylist()) == {"7511": 6, "7522": 4, SUPPRESSED: 2}
    assert steps.suppressed_cells == {"kato": 2} and steps.suppressed_rows == 2
    assert steps.k_achieved == 4
    out, steps = generalise(t, {"kato": "kato"}, k=10, max_suppressed=0.2)
    assert steps.history == ("kato:district", "kato:region")
    assert Counter(out.column("kato").to_pylist()) == {"75": 10, SUPPRESSED: 2}
    assert steps.k_achieved == 10


def test_kato_reaches_star_when_nothing_else_helps():
    t = pa.table({"kato": ["751110000", "111110000", "631010000"]})
    out, steps = generalise(t, {"kato": "kato"}, k=3, max_suppressed=0.0)
    assert steps.levels == {"kato": SUPPRESSED}
    assert out.column("kato").to_pylist() == [SUPPRESSED] * 3
    assert steps.k_achieved == 3 and steps.suppressed_cells == {"kato": 0}


def test_oked_generalises_to_division_then_section():
    t = pa.table({"oked": ["46901", "46.90.2", "47111", "47190", "01110", "01300"]})
    out, steps = generalise(t, {"oked": "oked"}, k=2, max_suppressed=0.0)
    assert steps.levels == {"oked": "division"}
    assert out.column("oked").to_pylist() == ["46", "46", "47", "47", "01", "01"]
    out, steps = generalise(t, {"oked": "oked"}, k=4, max_suppressed=0.34)
    assert steps.levels == {"oked": "section"}
    assert out.column("oked").to_pylist() == ["G"] * 4 + [SUPPRESSED] * 2


def test_oked_section_mapping_follows_nace():
    assert oked_section("46") == "G" and oked_section("01") == "A" and oked_section("99") == "U"
    assert oked_section("04") is None
    assert len(OKED_SECTIONS) == 88
    assert set(OKED_SECTIONS.values()) == set("ABCDEFGHIJKLMNOPQRSTU")


def test_unknown_oked_division_falls_back_to_first_digit():
    levels = dict(_hierarchy(pa.array(["04111", "34000", "46901", None]), "oked", "o"))
    assert levels["section"].to_pylist() == ["0", "3", "G", None]
    assert levels["full"].to_pylist() == ["04111", "34000", "46901", None]


def test_dates_go_month_quarter_year():
    days = [dt.date(2021, 1, 5), dt.date(2021, 2, 9), dt.date(2021, 3, 1), dt.date(2021, 11, 30)]
    t = pa.table({"d": days * 3})
    out, steps = generalise(t, {"d": "date"}, k=3, max_suppressed=0.0)
    assert steps.levels == {"d": "day"} and out.column("d")[0].as_py() == "2021-01-05"
    out, steps = generalise(t, {"d": "date"}, k=6, max_suppressed=0.25)
    # month merges nothing here (one day per month), so it is skipped
    assert steps.levels == {"d": "quarter"} and steps.history == ("d:quarter",)
    assert Counter(out.column("d").to_pylist()) == {"2021-Q1": 9, SUPPRESSED: 3}
    out, steps = generalise(t, {"d": "date"}, k=12, max_suppressed=0.0)
    assert steps.levels == {"d": "year"} and set(out.column("d").to_pylist()) == {"2021"}
    levels = dict(_hierarchy(pa.array(days), "date", "d"))
    assert levels["month"].to_pylist() == ["2021-01", "2021-02", "2021-03", "2021-11"]


def test_month_start_dates_start_at_month_level():
    t = pa.table({"d": pa.array([dt.date(2021, m, 1) for m in (1, 2, 3)] * 2, pa.date32())})
    out, steps = generalise(t, {"d": "date"}, k=2)
    assert steps.levels == {"d": "month"}
    assert out.column("d").to_pylist()[:3] == ["2021-01", "2021-02", "2021-03"]


def test_numeric_size_goes_to_bands_then_classes():
    t = pa.table({"staff": [0, 3, 4, 12, 20, 40, 70, 90, 300, 100000]})
    out, steps = generalise(t, {"staff": "size"}, k=1)
    assert out.column("staff").to_pylist()[:2] == ["0", "3"]
    out, steps = generalise(t, {"staff": "size"}, k=2, max_suppressed=0.0)
    assert steps.levels == {"staff": "class"}
    assert out.column("staff").to_pylist()[:4] == ["micro"] * 4
    assert out.column("staff").to_pylist()[4:8] == ["small"] * 4


def test_size_bands_nest_in_classes():
    values = np.arange(-2, 6000, dtype=np.float64)
    levels = dict(_hierarchy(pa.array(values), "size", "s"))
    pairs = set(zip(levels["band"].to_pylist(), levels["class"].to_pylist(), strict=True))
    bands = [b for b, _ in pairs]
    assert len(bands) == len(set(bands)), "a band straddles two classes"
    assert {("<0", "<0"), ("5001+", "large"), ("6-15", "micro"), ("16-50", "small")} <= pairs


def test_string_size_classes_merge_into_sme():
    t = pa.table({"size_class": ["micro", "small", "medium", "large", "large", "micro"]})
    out, steps = generalise(t, {"size_class": "size"}, k=2, max_suppressed=0.0)
    assert steps.levels == {"size_class": "sme"}
    assert out.column("size_class").to_pylist() == ["sme", "sme", "sme", "large", "large", "sme"]


def test_category_is_kept_or_starred():
    t = pa.table({"form": ["LLP"] * 5 + ["JSC"]})
    out, steps = generalise(t, {"form": "category"}, k=5, max_suppressed=0.2)
    assert steps.levels == {"form": "full"}
    assert out.column("form").to_pylist() == ["LLP"] * 5 + [SUPPRESSED]
    assert steps.suppressed_cells == {"form": 1}


def test_nulls_are_a_value_until_star():
    t = pa.table({"kato": ["751110000", None, "751110000", None]})
    out, steps = generalise(t, {"kato": "kato"}, k=2)
    assert out.column("kato").to_pylist() == ["751110000", None, "751110000", None]
    assert steps.k_achieved == 2


def test_column_with_most_distinct_values_moves_first():
    n = 40
    t = pa.table(
        {
            "kato": [f"75{i // 4:02d}{i:05d}" for i in range(n)],  # 40 codes, 10 districts
            "form": ["LLP", "JSC"] * (n // 2),  # 2 distinct
            "x": list(range(n)),
        }
    )
    out, steps = generalise(t, {"kato": "kato", "form": "category"}, k=5)
    assert steps.history == ("kato:district", "kato:region")
    assert out.column("form").to_pylist() == t.column("form").to_pylist()
    assert out.column("x").to_pylist() == list(range(n)), "other columns untouched"
    assert out.column_names == ["kato", "form", "x"]
    assert out.schema.field("kato").type == pa.string()


def test_entities_not_rows_are_counted_with_a_key():
    # one entity with 5 rows is a group of one entity, however many rows it has
    t = pa.table({"id": ["a"] * 5 + ["b", "c"], "kato": ["751110000"] * 5 + ["751110000"] * 2})
    _, by_rows = generalise(t, {"kato": "kato"}, k=5)
    assert by_rows.k_achieved == 7
    _, by_entities = generalise(t, {"kato": "kato"}, k=5, key="id", max_suppressed=0.0)
    assert by_entities.k_achieved == 3 and by_entities.suppressed_rows == 7


# -- the property ------------------------------------------------------------------------

KINDS_FOR_TEST = {
    "kato": "kato",
    "oked": "oked",
    "day": "date",
    "staff": "size",
    "form": "category",
}


@st.composite
def tables(draw):
    n = draw(st.integers(0, 120))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    cols = draw(st.sets(st.sampled_from(sorted(KINDS_FOR_TEST)), min_size=1, max_size=4))
    data: dict[str, pa.Array] = {}
    spread = draw(st.integers(1, 30))
    if "kato" in cols:
        data["kato"] = pa.array(
            [f"{r:02d}{d:02d}{s:05d}" for r, d, s in rng.integers(10, 10 + spread, (n, 3))]
        )
    if "oked" in cols:
        data["oked"] = pa.array([f"{d:05d}" for d in rng.integers(1000, 1000 + 300 * spread, n)])
    if "day" in cols:
        days = rng.integers(0, 30 * spread, n)
        data["day"] = pa.array([dt.date(2020, 1, 1) + dt.timedelta(days=int(x)) for x in days])
    if "staff" in cols:
        data["staff"] = pa.array(rng.integers(0, 10 * spread, n), pa.int64())
    if "form" in cols:
        data["form"] = pa.array(rng.choice(["LLP", "JSC", "IE", None], n).tolist())
    data["id"] = pa.array([f"e{i // 2}" for i in range(n)])  # two rows per entity
    k = draw(st.integers(2, 6))
    max_suppressed = draw(st.sampled_from([0.0, 0.05, 0.2]))
    use_key = draw(st.booleans())
    return pa.table(data), {c: KINDS_FOR_TEST[c] for c in sorted(cols)}, k, max_suppressed, use_key


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_generalise_reaches_k_or_suppresses(case):
    table, quasi, k, max_suppressed, use_key = case
    key = "id" if use_key else None
    out, steps = generalise(table, quasi, k, key=key, max_suppressed=max_suppressed)
    n = table.num_rows
    assert out.num_rows == n and out.column("id").equals(table.column("id"))
    rows = list(zip(*(out.column(c).to_pylist() for c in quasi), strict=True)) if n else []
    ids = out.column("id").to_pylist()
    members: dict[tuple, set] = {}
    for i, (r, entity) in enumerate(zip(rows, ids, strict=True)):
        members.setdefault(r, set()).add(entity if key else i)
    size = {r: len(m) for r, m in members.items()}
    live = [size[r] for r in rows if not all(v == SUPPRESSED for v in r)]
    if live:
        assert min(live) >= k, "a group not fully suppressed is smaller than k"
        assert steps.k_achieved == min(live)
    else:
        assert steps.k_achieved == (min(size.values()) if n else 0)
    # the counts match the table
    for c in quasi:
        stars = out.column(c).to_pylist().count(SUPPRESSED)
        assert steps.suppressed_cells[c] == (0 if steps.levels[c] == SUPPRESSED else stars)
    fully_starred = sum(all(v == SUPPRESSED for v in r) for r in rows)
    all_top = all(level == SUPPRESSED for level in steps.levels.values())
    assert steps.suppressed_rows <= math.floor(max_suppressed * n) or all_top
    assert steps.suppressed_rows <= fully_starred
    assert len(steps.history) == len(set(steps.history))


# -- parameters --------------------------------------------------------------------------


def test_generalise_rejects_bad_input():
    t = pa.table({"kato": ["751110000"]})
    with pytest.raises(RuntimeInputError) as e:
        generalise(t, {"kato": "postcode"})
    assert e.value.code == "bad_quasi_kind" and "'kato'" in str(e.value)
    with pytest.raises(RuntimeInputError) as e:
        generalise(t, {"oked": "oked"})
    assert e.value.code == "missing_column" and "'oked'" in str(e.value)
    with pytest.raises(RuntimeInputError) as e:
        generalise(t, {"kato": "kato"}, k=0)
    assert e.value.code == "bad_k"
    with pytest.raises(RuntimeInputError) as e:
        generalise(t, {"kato": "kato"}, max_suppressed=1.0)
    assert e.value.code == "bad_parameter"
    with pytest.raises(RuntimeInputError) as e:
        generalise(pa.table({"d": [1.5]}), {"d": "date"})
    assert e.value.code == "not_a_date" and "'d'" in str(e.value)


def test_generalise_without_quasi_identifiers_counts_everyone():
    t = pa.table({"x": [1, 2, 3]})
    out, steps = generalise(t, {}, k=2)
    assert out.equals(t) and steps.k_achieved == 3 and steps.levels == {}


# -- top/bottom coding, dates, dropping ------------------------------------------------


def test_top_bottom_code_clips_to_quantiles_and_counts():
    values = [float(i) for i in range(101)]
    t = pa.table({"a": values, "b": pa.array(list(range(101)), pa.int64()), "c": ["x"] * 101})
    out, counts = top_bottom_code(t, ["a", "b"], 0.05, 0.95)
    assert counts == {"a": 10, "b": 10}
    a = out.column("a").to_pylist()
    assert min(a) == 5.0 and max(a) == 95.0 and a[50] == 50.0
    assert out.schema.field("b").type == pa.float64()
    assert out.column("c").equals(t.column("c"))


def test_top_bottom_code_keeps_nulls_and_nans_and_clips_infinities():
    t = pa.table({"a": pa.array([None, float("nan"), float("inf"), 1.0, 2.0, 3.0])})
    out, counts = top_bottom_code(t, ["a"], 0.0, 1.0)
    got = out.column("a").to_pylist()
    assert got[0] is None and math.isnan(got[1]) and got[2] == 3.0
    assert counts == {"a": 1}
    empty, counts = top_bottom_code(pa.table({"a": pa.array([None], pa.float64())}), ["a"])
    assert counts == {"a": 0} and empty.column("a").to_pylist() == [None]


def test_top_bottom_code_rejects_bad_input():
    t = pa.table({"s": ["1"], "a": [1.0]})
    with pytest.raises(RuntimeInputError) as e:
        top_bottom_code(t, ["s"])
    assert e.value.code == "not_numeric" and "'s'" in str(e.value)
    with pytest.raises(RuntimeInputError) as e:
        top_bottom_code(t, ["a"], 0.9, 0.1)
    assert e.value.code == "bad_parameter"
    with pytest.raises(RuntimeInputError) as e:
        top_bottom_code(t, ["zz"])
    assert e.value.code == "missing_column"


def test_coarsen_dates_truncates_every_date_column():
    t = pa.table(
        {
            "d": [dt.date(2023, 8, 15), None],
            "ts": pa.array([dt.datetime(2022, 12, 31, 23, 59), dt.datetime(2021, 5, 2)]),
            "x": [1, 2],
        }
    )
    out, cols = coarsen_dates(t)
    assert cols == ("d", "ts")
    assert out.column("d").to_pylist() == [dt.date(2023, 8, 1), None]
    assert out.column("ts").to_pylist() == [dt.date(2022, 12, 1), dt.date(2021, 5, 1)]
    assert out.schema.field("ts").type == pa.date32()
    q, _ = coarsen_dates(t, ["d"], level="quarter")
    y, _ = coarsen_dates(t, ["d"], level="year")
    assert q.column("d")[0].as_py() == dt.date(2023, 7, 1)
    assert y.column("d")[0].as_py() == dt.date(2023, 1, 1)
    assert q.column("ts").equals(t.column("ts")), "columns not named are untouched"


def test_coarsen_dates_rejects_bad_input():
    t = pa.table({"x": [1]})
    with pytest.raises(RuntimeInputError) as e:
        coarsen_dates(t, ["x"])
    assert e.value.code == "not_a_date" and "'x'" in str(e.value)
    with pytest.raises(RuntimeInputError) as e:
        coarsen_dates(t, level="week")
    assert e.value.code == "bad_parameter"


def test_drop_columns_ignores_absent_names():
    t = pa.table({"a": [1], "b": [2], "c": [3]})
    out, removed = drop_columns(t, ["c", "zz", "a", "a"])
    assert out.column_names == ["b"] and removed == ("c", "a")
