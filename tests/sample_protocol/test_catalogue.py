"""Tests for sample_protocol.catalogue: the para 24 sources and the four indexes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sample_protocol.catalogue import (
    DTYPES,
    INDEXES,
    SOURCES,
    Catalogue,
    FieldSpec,
    IndexSpec,
    Mode,
    SourceSpec,
    get_index,
    get_source,
    index_ids,
    source_codes,
)
from sample_protocol.errors import CatalogueError, SerdeError, ValidationError

PARA_24 = (
    "TAX",
    "PERMITS",
    "LEGAL_ENTITY",
    "STATS",
    "ADDRESSES",
    "FIN_DEPOSITORY",
    "LEGAL_STATS",
    "COURT",
    "VEHICLES",
    "UTILITIES",
    "REAL_ESTATE",
    "CIVIL_STATUS",
    "TRANSPORT",
)
INDEX_IDS = (
    "conscientiousness",
    "financial_stability",
    "payment_discipline",
    "business_reputation",
)


def write_json(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


# -- the packaged rule set ----------------------------------------------------------------


def test_thirteen_para_24_sources_in_order_plus_optional_customs() -> None:
    assert source_codes() == (*PARA_24, "CUSTOMS")
    assert tuple(SOURCES) == source_codes()
    assert [SOURCES[c].paragraph for c in PARA_24] == [f"24.{i}" for i in range(1, 14)]
    assert not any(SOURCES[c].optional for c in PARA_24)
    assert SOURCES["CUSTOMS"].optional


def test_four_indexes_with_twelve_month_horizon() -> None:
    assert index_ids() == INDEX_IDS
    assert tuple(INDEXES) == INDEX_IDS
    assert all(get_index(i).horizon_months == 12 for i in INDEX_IDS)
    assert "pseudo-enterprise" in get_index("conscientiousness").target


def test_mappings_are_read_only() -> None:
    with pytest.raises(TypeError):
        SOURCES["X"] = SOURCES["TAX"]  # type: ignore[index]
    with pytest.raises(TypeError):
        INDEXES["x"] = INDEXES["conscientiousness"]  # type: ignore[index]


def test_default_modes_follow_design() -> None:
    cat = Catalogue.default()
    preliminary = {s.code for s in cat.preliminary_sources()}
    assert preliminary == {"TAX", "LEGAL_STATS", "CIVIL_STATUS", "CUSTOMS"}
    assert {s.code for s in cat.direct_sources()} == set(source_codes()) - preliminary
    assert cat.mode("TAX") is Mode.PRELIMINARY
    assert cat.mode("COURT") is Mode.DIRECT


@pytest.mark.parametrize("code", (*PARA_24, "CUSTOMS"))
def test_every_source_is_well_formed(code: str) -> None:
    src = get_source(code)
    names = src.field_names()
    assert len(names) == len(set(names))
    assert 4 <= len(names) <= 40
    assert all(f.dtype in DTYPES for f in src.fields)
    assert set(src.informs) <= set(INDEX_IDS) and src.informs
    schema = src.arrow_schema()
    assert schema.names == ["bin", *names]
    assert schema.field("bin").type == pa.string() and not schema.field("bin").nullable
    # an empty table of that schema builds, and the sample form renames only the key
    assert pa.Table.from_pylist([], schema=schema).num_columns == len(names) + 1
    assert src.arrow_schema(keyed_by="random_id").names == ["random_id", *names]
    assert src.model_fields() == tuple(f for f in src.fields if not f.direct_identifier)
    for f in src.fields:
        if f.dtype == "category":
            assert f.categories and f.arrow_type() == pa.string()
        if f.min_value is not None and f.max_value is not None:
            assert f.min_value <= f.max_value


def test_every_source_informs_the_reputation_index_and_preliminary_ones_inform_some() -> None:
    cat = Catalogue.default()
    for src in cat.preliminary_sources():
        assert len(src.informs) >= 1
    assert all("business_reputation" in s.informs for s in cat.sources)
    assert {s.code for s in cat.sources_informing("payment_discipline")} >= {"TAX", "UTILITIES"}


def test_tax_has_the_lists_and_amounts_of_para_24_1() -> None:
    tax = get_source("TAX")
    lists = (
        "inactive",
        "pseudo_enterprise",
        "absent_at_address",
        "bankrupt",
        "invalid_registration",
        "illegal_reorganisation",
        "tax_debtor",
    )
    for name in lists:
        assert tax.field(name).dtype == "bool"
    for name in ("tax_debt_kzt", "vat_refund_kzt", "payroll_taxes_kzt", "total_assets_kzt"):
        f = tax.field(name)
        assert f.dtype == "float64" and f.unit == "KZT"
    assert tax.field("tax_regime").categories is not None
    assert 25 <= len(tax.fields) <= 40


def test_identifier_flags_mark_what_depersonalisation_removes() -> None:
    le = get_source("LEGAL_ENTITY")
    direct = {f.name for f in le.direct_identifiers()}
    assert {"head_iin", "head_surname", "name_ru", "street_address", "phone", "email"} <= direct
    assert {"kato", "oked", "registration_date"} <= {f.name for f in le.quasi_identifiers()}
    assert not direct & {f.name for f in le.model_fields()}
    assert {f.name for f in get_source("STATS").quasi_identifiers()} >= {"kato", "size_class"}
    # identifiers that are themselves amounts or counts would be a catalogue mistake
    for src in SOURCES.values():
        for f in src.direct_identifiers():
            assert f.dtype == "string", (src.code, f.name)


def test_catalogue_round_trips_through_json() -> None:
    cat = Catalogue.default()
    assert Catalogue.from_json(cat.to_json()) == cat
    tax = get_source("TAX")
    assert SourceSpec.from_json(tax.to_json()) == tax


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(DTYPES),
    st.booleans(),
    st.booleans(),
)
def test_arrow_type_matches_dtype(dtype: str, nullable: bool, direct: bool) -> None:
    cats = ("a", "b") if dtype == "category" else None
    f = FieldSpec("x_1", dtype, nullable=nullable, direct_identifier=direct, categories=cats)
    assert f.arrow_field().nullable is nullable
    assert f.arrow_field().type == f.arrow_type()
    assert FieldSpec.from_json(f.to_json()) == f


# -- look-up errors -------------------------------------------------------------------------


def test_unknown_source_names_it_and_lists_known_ones() -> None:
    with pytest.raises(CatalogueError) as info:
        get_source("BANKS")
    assert info.value.code == "unknown_source"
    assert "'BANKS'" in str(info.value) and "TAX" in str(info.value)
    assert isinstance(info.value, KeyError)


def test_unknown_index_and_field() -> None:
    with pytest.raises(CatalogueError) as info:
        get_index("solvency")
    assert info.value.code == "unknown_index" and "conscientiousness" in str(info.value)
    with pytest.raises(CatalogueError) as info:
        get_source("TAX").field("salary")
    assert info.value.code == "unknown_field"
    assert "'salary'" in str(info.value) and "tax_debt_kzt" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"name": "Bad Name", "dtype": "int64"}, "bad_field_name"),
        ({"name": "bin", "dtype": "string"}, "bad_field_name"),
        ({"name": "x", "dtype": "decimal"}, "bad_dtype"),
        ({"name": "x", "dtype": "string", "min_value": 0.0}, "bad_bounds"),
        ({"name": "x", "dtype": "int64", "min_value": 5.0, "max_value": 1.0}, "bad_bounds"),
        ({"name": "x", "dtype": "category"}, "bad_categories"),
        ({"name": "x", "dtype": "category", "categories": ("a", "a")}, "bad_categories"),
        ({"name": "x", "dtype": "int64", "categories": ("a",)}, "bad_categories"),
    ],
)
def test_bad_field_specs_are_refused(kwargs: dict[str, object], code: str) -> None:
    with pytest.raises(ValidationError) as info:
        FieldSpec(**kwargs)  # type: ignore[arg-type]
    assert info.value.code == code
    assert repr(kwargs["name"]) in str(info.value)


def test_bad_source_and_index_specs_are_refused() -> None:
    f = FieldSpec("amount", "float64")
    base: dict[str, object] = {
        "code": "NEW",
        "owner": "o",
        "paragraph": "24.14",
        "default_mode": Mode.DIRECT,
        "key": "bin_iin",
        "fields": (f,),
        "informs": ("conscientiousness",),
    }
    SourceSpec(**base)  # type: ignore[arg-type]
    bad: list[tuple[dict[str, object], str]] = [
        ({"code": "new"}, "bad_source_code"),
        ({"paragraph": "twenty"}, "bad_paragraph"),
        ({"key": "iban"}, "bad_key"),
        ({"fields": ()}, "no_fields"),
        ({"fields": (f, f)}, "duplicate_field"),
        ({"informs": ()}, "informs_nothing"),
    ]
    for change, code in bad:
        with pytest.raises(ValidationError) as info:
            SourceSpec(**{**base, **change})  # type: ignore[arg-type]
        assert info.value.code == code
    with pytest.raises(ValidationError) as info:
        IndexSpec("x", "X", "e", "t", horizon_months=0)
    assert info.value.code == "bad_horizon"
    with pytest.raises(ValidationError):
        SourceSpec(**base).arrow_schema(keyed_by="amount")  # type: ignore[arg-type]


# -- configuration files --------------------------------------------------------------------


def test_mode_override_from_file(tmp_path: Path) -> None:
    path = write_json(tmp_path / "rules.json", {"modes": {"COURT": "preliminary", "TAX": "direct"}})
    cat = Catalogue.from_file(path)
    assert cat.mode("COURT") is Mode.PRELIMINARY
    assert cat.mode("TAX") is Mode.DIRECT
    assert "COURT" in {s.code for s in cat.preliminary_sources()}
    assert "TAX" in {s.code for s in cat.direct_sources()}
    # the default catalogue is untouched
    assert Catalogue.default().mode("TAX") is Mode.PRELIMINARY
    assert cat.with_modes({"TAX": "preliminary"}).mode("TAX") is Mode.PRELIMINARY


def test_fields_sources_indexes_override_and_drop(tmp_path: Path) -> None:
    new_source = {
        "code": "BANKS",
        "owner": "Agency for Regulation of Financial Markets",
        "paragraph": "24.14",
        "default_mode": "preliminary",
        "key": "bin_iin",
        "informs": ["payment_discipline", "credit"],
        "fields": [{"name": "overdue_loans", "dtype": "int64", "min_value": 0}],
    }
    override = {
        "version": "rules-2023.1",
        "fields": {"TRANSPORT": [{"name": "violations_3y", "dtype": "int64", "min_value": 0}]},
        "sources": [new_source],
        "indexes": [{"id": "credit", "name": "Credit", "estimates": "e", "target": "t"}],
        "drop_sources": ["CUSTOMS"],
    }
    cat = Catalogue.from_file(write_json(tmp_path / "r.json", override))
    assert cat.version == "rules-2023.1"
    assert cat.source("TRANSPORT").field_names() == ("violations_3y",)
    assert cat.source_codes()[-1] == "BANKS" and "CUSTOMS" not in cat.source_codes()
    assert cat.mode("BANKS") is Mode.PRELIMINARY
    assert cat.index("credit").horizon_months == 12
    # a whole rule set written out reads back as itself
    full = write_json(tmp_path / "full.json", json.loads(cat.to_json()))
    assert Catalogue.from_file(full) == cat


@pytest.mark.parametrize(
    ("content", "error", "code", "needle"),
    [
        ({"modes": {"BANKS": "direct"}}, CatalogueError, "unknown_source", "'BANKS'"),
        ({"modes": {"TAX": "secret"}}, ValidationError, "bad_mode", "'secret'"),
        ({"fields": {"NOPE": []}}, CatalogueError, "unknown_source", "'NOPE'"),
        ({"drop_sources": ["NOPE"]}, CatalogueError, "unknown_source", "'NOPE'"),
        ({"colour": "red"}, ValidationError, "bad_catalogue", "colour"),
        ([1, 2], ValidationError, "bad_catalogue", "list"),
        # a record refused by its own checks is reported by serde, with the check's message
        ({"fields": {"TAX": [{"name": "x", "dtype": "money"}]}}, SerdeError, "bad_record", "money"),
        ({"fields": {"TAX": [{"name": "x"}]}}, SerdeError, "bad_record", "dtype"),
        (
            {"sources": [{**json.loads(get_source("COURT").to_json()), "informs": ["luck"]}]},
            CatalogueError,
            "unknown_index",
            "'luck'",
        ),
    ],
)
def test_bad_override_files_give_clear_errors(
    tmp_path: Path, content: object, error: type[Exception], code: str, needle: str
) -> None:
    path = write_json(tmp_path / "bad.json", content)
    with pytest.raises(error) as info:
        Catalogue.from_file(path)
    assert info.value.code == code  # type: ignore[attr-defined]
    assert str(path) in str(info.value)
    assert needle in str(info.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError) as info:
        Catalogue.from_file(tmp_path / "missing.json")
    assert info.value.code == "no_catalogue" and "missing.json" in str(info.value)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(SerdeError) as info2:
        Catalogue.from_file(bad)
    assert "bad.json" in str(info2.value) and "not valid JSON" in str(info2.value)
    full = json.loads(Catalogue.default().to_json())
    full["sources"].append(full["sources"][0])
    with pytest.raises(ValidationError) as info3:
        Catalogue.from_file(write_json(tmp_path / "dup.json", full))
    assert "TAX" in str(info3.value) and "twice" in str(info3.value)
