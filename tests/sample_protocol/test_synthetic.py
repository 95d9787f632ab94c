"""Tests for sample_protocol.synthetic: identifiers, contracts, determinism, truth, files."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from sample_protocol import identifier_columns, identifiers
from sample_protocol.catalogue import SourceSpec, get_source, source_codes
from sample_protocol.errors import CatalogueError, SerdeError, ValidationError
from sample_protocol.synthetic import (
    AS_OF,
    GENERATOR_VERSION,
    INDEX_IDS,
    Economy,
    check_output_dir,
    generate_economy,
    load_economy,
    read_summary,
    roc_auc,
    write_economy,
)

N = 20_000
SEED = 11


@pytest.fixture(scope="module")
def economy() -> Economy:
    return generate_economy(N, SEED)


def contract_violations(spec: SourceSpec, table: pa.Table) -> list[str]:
    """Every way ``table`` breaks ``spec``'s contract (empty when it conforms)."""
    problems: list[str] = []
    if not table.schema.equals(spec.arrow_schema()):
        return [f"schema {table.schema} != {spec.arrow_schema()}"]
    keys = table["bin"]
    if keys.null_count or pc.count_distinct(keys).as_py() != table.num_rows:
        problems.append("key column has nulls or duplicates")
    for f in spec.fields:
        col = table[f.name]
        if not f.nullable and col.null_count:
            problems.append(f"{f.name}: {col.null_count} nulls in a non-nullable field")
        if col.null_count == table.num_rows:
            continue
        if f.min_value is not None or f.max_value is not None:
            bounds = pc.min_max(col).as_py()
            if f.min_value is not None and bounds["min"] < f.min_value:
                problems.append(f"{f.name}: min {bounds['min']} < {f.min_value}")
            if f.max_value is not None and bounds["max"] > f.max_value:
                problems.append(f"{f.name}: max {bounds['max']} > {f.max_value}")
        if f.dtype == "float64" and pc.any(pc.is_nan(col)).as_py():
            problems.append(f"{f.name}: NaN (missing values must be nulls)")
        if f.categories is not None:
            outside = set(pc.unique(col.drop_null()).to_pylist()) - set(f.categories)
            if outside:
                problems.append(f"{f.name}: values outside categories: {sorted(outside)[:5]}")
        if f.dtype == "date32" and pc.max(col).as_py() >= AS_OF:
            problems.append(f"{f.name}: a date on or after the observation date {AS_OF}")
    return problems


def average_ranks(x: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse]


# -- identifiers and the population ---------------------------------------------------------


def test_every_entity_id_is_a_valid_iin_or_bin(economy: Economy) -> None:
    ids = economy.sources["TAX"]["bin"]
    assert identifier_columns.identifier_mask(ids).all()
    values = ids.to_pylist()
    assert len(set(values)) == N
    iins = [v for v in values if identifiers.is_valid_iin(v)]
    bins = [v for v in values if identifiers.is_valid_bin(v)]
    assert len(iins) + len(bins) == N
    share_ie = len(iins) / N
    assert 0.60 <= share_ie <= 0.70
    assert economy.summary.share_individual_entrepreneurs == pytest.approx(share_ie)


def test_bins_have_realistic_type_and_unit_digits(economy: Economy) -> None:
    le = economy.sources["LEGAL_ENTITY"]
    bins = np.array(le["bin"].to_pylist())
    assert all(identifiers.is_valid_bin(b) for b in bins)
    type_digit = np.array([b[4] for b in bins])
    unit_digit = np.array([b[5] for b in bins])
    assert set(type_digit) <= {"4", "5", "6"} and (type_digit == "4").mean() > 0.9
    assert set(unit_digit) <= {"0", "1", "2", "3"} and (unit_digit == "0").mean() > 0.8
    # BIN's YYMM is the registration month
    reg = le["registration_date"].to_pylist()
    assert all(b[:4] == d.strftime("%y%m") for b, d in zip(bins, reg, strict=True))
    # branches carry the branch legal form, joint entrepreneurships theirs
    forms = np.array(le["legal_form"].to_pylist())
    assert (forms[(unit_digit == "1") & (type_digit != "6")] == "branch").all()
    assert (forms[type_digit == "6"] == "joint_ie").all()
    heads = le["head_iin"].drop_null().to_pylist()
    assert heads and all(identifiers.is_valid_iin(h) for h in heads)


def test_registration_dates_cover_thirty_years_and_regions_follow_firms(economy: Economy) -> None:
    tax = economy.sources["TAX"]
    dates = tax["registration_date"]
    first, last = pc.min(dates).as_py(), pc.max(dates).as_py()
    assert first.year <= 1997 and last < AS_OF
    # young entities are common, old ones exist
    young = pc.sum(pc.greater(dates, pa.scalar(dt.date(2023, 1, 1)))).as_py() / N
    assert 0.15 < young < 0.5
    regions = pc.utf8_slice_codeunits(economy.sources["STATS"]["kato"], 0, 2)
    counts = dict(zip(*[c.to_pylist() for c in pc.value_counts(regions).flatten()], strict=True))
    top3 = sorted(counts, key=counts.__getitem__, reverse=True)[:3]
    assert "75" in top3 and "71" in top3  # Almaty and Astana lead
    assert len(counts) >= 18


def test_identifying_strings_look_real(economy: Economy) -> None:
    le = economy.sources["LEGAL_ENTITY"]
    surnames = le["head_surname"].drop_null().to_pylist()
    pattern = re.compile(r"(ov|ova|ev|eva|uly|kyzy)$")
    share = np.mean([bool(pattern.search(s)) for s in surnames])
    assert share > 0.9
    assert any(s.endswith("uly") for s in surnames) and any(s.endswith("ova") for s in surnames)
    phones = le["phone"].drop_null().to_pylist()
    assert all(re.fullmatch(r"\+7 7\d\d \d{3} \d\d \d\d", p) for p in phones)
    assert all(re.fullmatch(r"[a-z]+\d+@[a-z.]+", e) for e in le["email"].drop_null().to_pylist())
    assert all(re.search(r"\d", a) for a in le["street_address"].to_pylist()[:200])
    names = economy.sources["TAX"]["taxpayer_name"].to_pylist()
    assert any(n.startswith("IP ") for n in names) and any(n.startswith('TOO "') for n in names)


# -- contracts ------------------------------------------------------------------------------


@pytest.mark.parametrize("code", source_codes())
def test_every_source_table_follows_its_contract(economy: Economy, code: str) -> None:
    spec = get_source(code)
    table = economy.sources[code]
    assert table.num_rows > 0
    assert contract_violations(spec, table) == []
    assert identifier_columns.identifier_mask(table["bin"]).all()
    if spec.key == "bin":
        assert all(identifiers.is_valid_bin(v) for v in table["bin"].to_pylist())


def test_sources_overlap_partly_and_amounts_are_skewed_with_zeros_and_nulls(
    economy: Economy,
) -> None:
    rows = economy.summary.rows
    assert rows["TAX"] == rows["STATS"] == N
    for sparse in ("COURT", "UTILITIES", "VEHICLES", "CUSTOMS", "FIN_DEPOSITORY"):
        assert 0 < rows[sparse] < N / 2, sparse
    tax = economy.sources["TAX"]
    income = tax["annual_income_kzt"]
    values = np.array(income.drop_null().to_pylist())
    assert income.null_count > 0 and (values == 0).any()
    assert np.mean(values) > 2 * np.median(values)  # right-skewed
    for flag in (
        "inactive",
        "pseudo_enterprise",
        "absent_at_address",
        "bankrupt",
        "invalid_registration",
        "tax_debtor",
    ):
        share = pc.mean(pc.cast(tax[flag], pa.float64())).as_py()
        assert 0 < share < 0.2, flag


# -- determinism and subsets ----------------------------------------------------------------


def test_same_seed_same_economy_and_subsets_match() -> None:
    a = generate_economy(2_000, 5)
    b = generate_economy(2_000, 5)
    assert a.summary == b.summary
    assert a.truth.equals(b.truth)
    for code in a.sources:
        assert a.sources[code].equals(b.sources[code]), code
    subset = generate_economy(2_000, 5, ["court", "TAX"])
    assert tuple(subset.sources) == ("TAX", "COURT")
    assert subset.sources["COURT"].equals(a.sources["COURT"])
    assert subset.truth.equals(a.truth)
    other = generate_economy(2_000, 6)
    assert not other.sources["TAX"].equals(a.sources["TAX"])


def test_tiny_economies_work() -> None:
    eco = generate_economy(1, 0)
    assert eco.truth.num_rows == 4 and eco.sources["TAX"].num_rows == 1
    for code, table in eco.sources.items():
        assert contract_violations(get_source(code), table) == [], code


# -- truth ----------------------------------------------------------------------------------


def test_truth_table_shape_and_reputation_is_any_adverse_outcome(economy: Economy) -> None:
    truth = economy.truth
    assert truth.column_names == ["bin", "index", "true_probability", "outcome"]
    assert truth.num_rows == 4 * N
    assert set(pc.unique(truth["index"]).to_pylist()) == set(INDEX_IDS)
    p = truth["true_probability"]
    assert pc.min(p).as_py() > 0 and pc.max(p).as_py() < 1
    parts = {i: np.array(economy.truth_for(i)["outcome"]) for i in INDEX_IDS}
    anyof = parts["conscientiousness"] | parts["financial_stability"] | parts["payment_discipline"]
    assert (parts["business_reputation"] == anyof).all()
    ids = economy.truth_for("payment_discipline")["bin"]
    assert ids.equals(economy.sources["TAX"]["bin"])


def test_truth_is_in_no_source_table(economy: Economy) -> None:
    truth_cols = {"true_probability", "outcome", "index"}
    for index in INDEX_IDS:
        part = economy.truth_for(index)
        p = np.array(part["true_probability"])
        y = np.array(part["outcome"], dtype=np.float64)
        for code, table in economy.sources.items():
            assert not truth_cols & set(table.column_names), code
            pos = np.array(pc.index_in(table["bin"], value_set=part["bin"]))
            for name in table.column_names[1:]:
                col = table[name]
                if pa.types.is_string(col.type):
                    continue
                if pa.types.is_date32(col.type):
                    col = pc.cast(col, pa.int32())
                v = np.array(pc.cast(col, pa.float64()).fill_null(np.nan))
                ok = ~np.isnan(v)
                if ok.sum() < 50 or v[ok].std() == 0:
                    continue
                prob, outcome = p[pos][ok], y[pos][ok]
                spearman = abs(np.corrcoef(average_ranks(v[ok]), average_ranks(prob))[0, 1])
                assert spearman < 0.9, (index, code, name, "probability")
                assert abs(np.corrcoef(v[ok], prob)[0, 1]) < 0.9, (index, code, name)
                if outcome.std() > 0:
                    assert abs(np.corrcoef(v[ok], outcome)[0, 1]) < 0.9, (index, code, name)
                    # no column reproduces the outcome
                    assert (v[ok] == outcome).mean() < 0.99, (index, code, name)


# -- API errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -5, 10_000_001, 2.5, True, "100"])
def test_bad_entity_counts_are_refused(n: object) -> None:
    with pytest.raises(ValidationError) as info:
        generate_economy(n, 1)  # type: ignore[arg-type]
    assert info.value.code == "bad_entity_count"
    assert "entities" in str(info.value)


def test_bad_seed_and_sources_are_refused() -> None:
    with pytest.raises(ValidationError) as info:
        generate_economy(10, -1)
    assert info.value.code == "bad_seed"
    with pytest.raises(CatalogueError) as info2:
        generate_economy(10, 1, ["TAX", "BANKS"])
    assert info2.value.code == "unknown_source"
    assert "'BANKS'" in str(info2.value) and "CUSTOMS" in str(info2.value)
    with pytest.raises(ValidationError) as info3:
        generate_economy(10, 1, [])
    assert info3.value.code == "no_sources"
    with pytest.raises(CatalogueError):
        generate_economy(10, 1, ["COURT"]).source("TAX")
    with pytest.raises(CatalogueError):
        generate_economy(10, 1).truth_for("luck")


# -- files ----------------------------------------------------------------------------------


def test_write_and_load_round_trip(tmp_path: Path) -> None:
    eco = generate_economy(3_000, 2, ["TAX", "UTILITIES"])
    out = write_economy(eco, tmp_path / "eco")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [
        "economy.json",
        "observed/outcomes.parquet",
        "sources/TAX.parquet",
        "sources/UTILITIES.parquet",
        "truth/truth.parquet",
    ]
    meta = json.loads((out / "economy.json").read_text())
    assert meta["seed"] == 2 and meta["n_entities"] == 3_000
    assert meta["generator_version"] == GENERATOR_VERSION
    assert meta["sources"] == ["TAX", "UTILITIES"]
    assert set(meta["oracle_auc"]) == set(INDEX_IDS) == set(meta["outcome_rates"])
    assert set(meta["files"]) == set(files) - {"economy.json"}
    assert "true_probability" not in pq.read_schema(out / "sources/TAX.parquet").names
    assert read_summary(out).files == meta["files"]
    back = load_economy(out)
    assert back.sources["TAX"].equals(eco.sources["TAX"])
    assert back.truth.equals(eco.truth)
    assert back.summary.oracle_auc == eco.summary.oracle_auc


def test_observed_outcomes_hold_the_outcomes_but_no_probability(tmp_path: Path) -> None:
    eco = generate_economy(2_000, 3, ["TAX"])
    observed = eco.observed_outcomes()
    assert observed.column_names == ["bin", *(f"outcome_{i}" for i in INDEX_IDS)]
    assert observed.num_rows == 2_000
    for index in INDEX_IDS:
        truth = eco.truth_for(index)
        assert observed["bin"].equals(truth["bin"])
        assert observed[f"outcome_{index}"].equals(truth["outcome"])
    out = write_economy(eco, tmp_path / "eco")
    assert pq.read_table(out / "observed/outcomes.parquet").equals(observed)


def test_write_refuses_a_non_empty_directory_unless_asked(tmp_path: Path) -> None:
    first = generate_economy(500, 1, ["TAX", "COURT"])
    assert check_output_dir(tmp_path / "new") == tmp_path / "new"  # may not exist yet
    out = write_economy(first, tmp_path / "eco")
    with pytest.raises(ValidationError) as info:
        write_economy(first, out)
    assert info.value.code == "output_exists" and str(out) in str(info.value)
    with pytest.raises(ValidationError):
        check_output_dir(out)  # the check a caller makes before generating
    second = generate_economy(400, 2, ["TAX"])
    write_economy(second, out, overwrite=True)
    assert not (out / "sources/COURT.parquet").exists()  # stale source removed
    assert load_economy(out).summary.n_entities == 400
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValidationError):
        write_economy(second, tmp_path / "file")


def test_load_refuses_missing_tampered_or_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        load_economy(tmp_path)
    assert info.value.code == "no_economy" and "economy.json" in str(info.value)
    out = write_economy(generate_economy(300, 3, ["TAX"]), tmp_path / "eco")
    tax = out / "sources/TAX.parquet"
    data = bytearray(tax.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tax.write_bytes(bytes(data))
    with pytest.raises(ValidationError) as info2:
        load_economy(out)
    assert info2.value.code == "checksum_mismatch" and "TAX.parquet" in str(info2.value)
    tax.unlink()
    with pytest.raises(ValidationError) as info3:
        load_economy(out)
    assert info3.value.code == "missing_file"
    (out / "economy.json").write_text('{"kind": "Something"}')
    with pytest.raises(SerdeError) as info4:
        load_economy(out)
    assert "economy.json" in str(info4.value)


# -- the AUC helper -------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 6)), min_size=2, max_size=60).filter(
        lambda rows: len({r[0] for r in rows}) == 2
    )
)
def test_roc_auc_matches_scikit_learn_with_ties(rows: list[tuple[bool, int]]) -> None:
    y = np.array([r[0] for r in rows])
    s = np.array([r[1] for r in rows], dtype=np.float64)
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))


def test_roc_auc_without_both_classes_is_nan() -> None:
    assert np.isnan(roc_auc(np.array([True, True]), np.array([0.1, 0.2])))


def test_generated_values_are_clipped_to_the_contract_range():
    """Regression: at 1,000,000 entities a Poisson tail gave tax_sanctions_3y = 227 > 200,
    which every body's contract check (rightly) refuses."""
    import pyarrow as _pa

    from sample_protocol.catalogue import get_source
    from sample_protocol.synthetic._common import _within_range

    field = get_source("TAX").field("tax_sanctions_3y")
    clipped = _within_range(_pa.array([0, 5, 227, None], _pa.int64()), field)
    assert clipped.to_pylist() == [0, 5, 200, None]
    assert clipped.type == _pa.int64()
    text = _pa.array(["a", None])
    assert _within_range(text, field) is text  # only numbers are clipped
