"""The depersonalisation pipeline: it passes clean samples and refuses leaky ones."""

from __future__ import annotations

import datetime as dt
import importlib

import numpy as np
import pyarrow as pa
import pytest

from agency_runtime.depersonalise import (
    LEAK_CODES,
    PATTERNS,
    SUPPRESSED,
    DepersonalisationRefused,
    ScanFinding,
    depersonalise,
    source_depersonalisation_plan,
)
from agency_runtime.errors import RuntimeInputError, RuntimeRefused
from sample_protocol import identifier_gen
from sample_protocol.catalogue import SOURCES, get_source
from sample_protocol.records import DepersonalisationReport, is_random_id, new_random_ids

N = 400


def _sample(n: int = N, seed: int = 5) -> pa.Table:
    """A body's table after the random-ID join: the BIN is still there, as at the owner."""
    rng = np.random.default_rng(seed)
    bins = [str(b) for b in identifier_gen.random_bins(rng, n)]
    base = dt.date(2005, 1, 1)
    days = rng.integers(0, 6000, n)
    return pa.table(
        {
            "random_id": list(new_random_ids(n)),
            "bin": bins,
            "name_ru": [f'ТОО "Компания {i}"' for i in range(n)],
            "head_surname": rng.choice(["Ахметов", "Иванова", "Kasymov"], n).tolist(),
            "registration_date": [base + dt.timedelta(days=int(x)) for x in days],
            "kato": [f"{r}{d:02d}10000" for r, d in zip(rng.choice(["75", "71", "63"], n),
                                                      rng.integers(10, 30, n), strict=True)],
            "oked": [f"{x:05d}" for x in rng.choice([46901, 47111, 41201, 1110, 62010], n)],
            "staff_count": pa.array(rng.integers(0, 400, n), pa.int64()),
            "legal_form": rng.choice(["LLP", "JSC", "branch"], n, p=[0.8, 0.15, 0.05]).tolist(),
            "tax_debt_kzt": rng.lognormal(12, 2, n),
            "notes": rng.choice(["", "оптовая торговля", "услуги"], n).tolist(),
        }
    )  # fmt: skip


PLAN = {
    "key": "random_id",
    "direct_identifiers": ["bin", "name_ru", "head_surname"],
    "quasi_identifiers": {
        "registration_date": "date",
        "kato": "kato",
        "oked": "oked",
        "staff_count": "size",
        "legal_form": "category",
    },
    "amounts": ["tax_debt_kzt"],
}


def test_clean_sample_passes_with_a_report():
    table = _sample()
    out, report = depersonalise(table, **PLAN, k=5, rng_seed=1)
    assert isinstance(report, DepersonalisationReport) and report.passed
    assert report.k_target == 5 and report.k_achieved >= 5
    assert report.rows_in == report.rows_out == N == out.num_rows
    assert report.removed_columns == ("bin", "name_ru", "head_surname")
    assert set(report.generalised) == set(PLAN["quasi_identifiers"])
    assert report.dates_coarsened == ("registration_date",)
    assert set(report.top_bottom_coded) == {"tax_debt_kzt"}
    assert report.top_bottom_coded["tax_debt_kzt"] >= 2
    assert report.identifier_scan == dict.fromkeys(PATTERNS, 0)
    assert report.shuffled
    assert out.column_names == [c for c in table.column_names if c not in report.removed_columns]
    # the report travels with the sample: it round-trips
    assert DepersonalisationReport.from_json(report.to_json()) == report


def test_output_holds_no_original_identifier_anywhere():
    table = _sample()
    out, _ = depersonalise(table, **PLAN, rng_seed=2)
    bins = set(table.column("bin").to_pylist())
    for name in out.column_names:
        cells = {str(v) for v in out.column(name).to_pylist()}
        assert not cells & bins, f"column {name!r} holds an original BIN"
    assert all(is_random_id(v) for v in out.column("random_id").to_pylist())


def test_quasi_identifier_combinations_hold_k_entities():
    out, report = depersonalise(_sample(), **PLAN, k=5, rng_seed=3)
    quasi = list(PLAN["quasi_identifiers"])
    combos: dict[tuple, int] = {}
    for row in zip(*(out.column(c).to_pylist() for c in quasi), strict=True):
        if not all(v == SUPPRESSED for v in row):
            combos[row] = combos.get(row, 0) + 1
    assert combos and min(combos.values()) >= 5
    assert min(combos.values()) == report.k_achieved
    for c in quasi:
        stars = out.column(c).to_pylist().count(SUPPRESSED)
        if report.generalised[c] != SUPPRESSED:
            assert report.suppressed_cells[c] == stars


def test_shuffle_changes_order_but_not_the_rows():
    table = _sample()
    a, _ = depersonalise(table, **PLAN, rng_seed=10)
    b, _ = depersonalise(table, **PLAN, rng_seed=11)
    c, _ = depersonalise(table, **PLAN, rng_seed=10)
    assert a.equals(c), "the same seed gives the same permutation"
    assert a.column("random_id").to_pylist() != b.column("random_id").to_pylist()
    kept = [r for r in table.column("random_id").to_pylist()]
    assert a.column("random_id").to_pylist() != kept

    def rows(t: pa.Table) -> list[tuple]:
        return sorted(zip(*(t.column(n).to_pylist() for n in t.column_names), strict=True))

    assert rows(a) == rows(b)
    unseeded, report = depersonalise(table, **PLAN)
    assert rows(unseeded) == rows(a) and report.shuffled


def test_leaked_phone_in_free_text_is_refused_without_showing_it():
    table = _sample()
    notes = table.column("notes").to_pylist()
    phone = "+7 701 555 12 34"
    notes[17] = f"звонить директору {phone}"
    notes[300] = "тел. 87015551234"
    table = table.set_column(table.column_names.index("notes"), "notes", pa.array(notes))
    with pytest.raises(DepersonalisationRefused) as e:
        depersonalise(table, **PLAN, rng_seed=4)
    err = e.value
    assert isinstance(err, RuntimeRefused) and err.exit_code == 3
    assert err.code == "leak_phone" == LEAK_CODES["phone"]
    message = str(err)
    assert "'notes'" in message and "phone" in message and "2 rows" in message
    assert "input row 17" in message
    digits = "".join(ch for ch in message if ch.isdigit())
    assert "5551234" not in digits and "555 12 34" not in message
    assert err.findings == (ScanFinding("notes", "phone", 2, 17),)


def test_forgotten_identifier_column_is_refused():
    plan = dict(PLAN, direct_identifiers=["name_ru", "head_surname"])  # the BIN is left in
    with pytest.raises(DepersonalisationRefused) as e:
        depersonalise(_sample(), **plan, rng_seed=4)
    assert e.value.code == "leak_iin_bin" and "'bin'" in str(e.value)
    assert f"{N} rows" in str(e.value)


def test_bin_stored_as_integer_is_refused():
    table = _sample(50)
    as_int = pa.array([int(b) for b in table.column("bin").to_pylist()], pa.int64())
    table = table.append_column("bin_number", as_int)
    with pytest.raises(DepersonalisationRefused) as e:
        depersonalise(table, **PLAN, rng_seed=4)
    assert e.value.code == "leak_iin_bin" and "'bin_number'" in str(e.value)


def test_surname_left_in_is_refused():
    plan = dict(PLAN, direct_identifiers=["bin", "name_ru"])
    with pytest.raises(DepersonalisationRefused) as e:
        depersonalise(_sample(), **plan, rng_seed=4)
    assert e.value.code == "leak_person_name" and "'head_surname'" in str(e.value)
    assert "Ахметов" not in str(e.value) and "Kasymov" not in str(e.value)


def test_key_must_hold_random_ids_only():
    table = _sample(20)
    keys = table.column("random_id").to_pylist()
    keys[3] = table.column("bin")[3].as_py()
    table = table.set_column(0, "random_id", pa.array(keys))
    with pytest.raises(DepersonalisationRefused) as e:
        depersonalise(table, **PLAN, rng_seed=4)
    assert e.value.code == "bad_key" and "'random_id'" in str(e.value)
    assert "input row 3" in str(e.value) and keys[3] not in str(e.value)


def test_too_few_entities_for_k_is_refused():
    with pytest.raises(DepersonalisationRefused) as e:
        depersonalise(_sample(4), **PLAN, k=5, rng_seed=4)
    assert e.value.code == "k_not_met" and "at least 5" in str(e.value)
    with pytest.raises(DepersonalisationRefused) as e:
        depersonalise(_sample(0), **PLAN, rng_seed=4)
    assert e.value.code == "empty_sample"


def test_binary_column_is_refused_as_unscannable():
    table = _sample(20).append_column("blob", pa.array([b"x"] * 20, pa.binary()))
    with pytest.raises(DepersonalisationRefused) as e:
        depersonalise(table, **PLAN, rng_seed=4)
    assert e.value.code == "unscannable_column" and "'blob'" in str(e.value)


@pytest.mark.parametrize(
    ("change", "code", "named"),
    [
        ({"k": 1}, "bad_k", "k"),
        ({"key": "nope"}, "missing_column", "'nope'"),
        ({"amounts": ["tax_debt_kzt", "missing_amount"]}, "missing_column", "'missing_amount'"),
        ({"direct_identifiers": ["bin", "kato"]}, "bad_plan", "'kato'"),
        ({"amounts": ["random_id"]}, "bad_plan", "'random_id'"),
        ({"quasi_identifiers": {"kato": "postcode"}}, "bad_quasi_kind", "postcode"),
        ({"direct_identifiers": "bin"}, "bad_plan", "string"),
    ],
)
def test_bad_plans_are_input_errors(change, code, named):
    kwargs = dict(PLAN, rng_seed=4)
    kwargs.update(change)
    with pytest.raises(RuntimeInputError) as e:
        depersonalise(_sample(20), **kwargs)
    assert e.value.code == code and named in str(e.value)


# -- the catalogue plan -------------------------------------------------------------------------


def test_plan_follows_the_catalogue_flags():
    direct, quasi, _ = source_depersonalisation_plan(get_source("LEGAL_ENTITY"))
    assert {"bin", "iin", "name_ru", "head_iin", "street_address", "phone", "email"} <= set(direct)
    assert quasi["registration_date"] == "date" and quasi["kato"] == "kato"
    assert quasi["oked"] == "oked" and quasi["legal_form"] == "category"
    tax_direct, tax_quasi, tax_amounts = source_depersonalisation_plan(get_source("TAX"))
    assert "taxpayer_name" in tax_direct and tax_quasi["tax_office_code"] == "code"
    assert "tax_debt_kzt" in tax_amounts and "staff_count" not in tax_amounts
    stats = source_depersonalisation_plan(get_source("STATS"))[1]
    assert stats["size_class"] == "size" and stats["oked_section"] == "category"
    assert stats["secondary_oked"] == "oked"


def test_plan_covers_every_catalogue_field_once():
    for source in SOURCES.values():
        direct, quasi, amounts = source_depersonalisation_plan(source)
        for f in source.fields:
            roles = [f.name in direct, f.name in quasi, f.name in amounts]
            assert sum(roles) <= 1, f"{source.code}.{f.name} has two roles"
            assert roles[0] == f.direct_identifier and roles[1] == f.quasi_identifier


def test_plan_keeps_only_the_requested_columns():
    source = get_source("TAX")
    direct, quasi, amounts = source_depersonalisation_plan(
        source, ["taxpayer_name", "registration_date", "tax_debt_kzt"]
    )
    assert direct == ("taxpayer_name",) and quasi == {"registration_date": "date"}
    assert amounts == ("tax_debt_kzt",)


def _economy_or_skip():
    try:
        synthetic = importlib.import_module("sample_protocol.synthetic")
    except ImportError as exc:  # pragma: no cover - the generator is another module's
        pytest.skip(f"synthetic economy unavailable: {exc}")
    return synthetic.generate_economy(600, seed=3, sources=["LEGAL_ENTITY"])


def test_synthetic_legal_entity_table_passes_with_the_catalogue_plan():
    table = _economy_or_skip().sources["LEGAL_ENTITY"]
    source = get_source("LEGAL_ENTITY")
    keys = list(new_random_ids(table.num_rows))
    table = table.append_column("random_id", pa.array(keys))
    direct, quasi, amounts = source_depersonalisation_plan(source, table.column_names)
    out, report = depersonalise(
        table, key="random_id", direct_identifiers=direct, quasi_identifiers=quasi,
        amounts=amounts, k=5, rng_seed=1,
    )  # fmt: skip
    assert report.passed and "street_address" not in out.column_names
    # and leaving the address in is refused
    leaky = [c for c in direct if c != "street_address"]
    with pytest.raises(DepersonalisationRefused) as e:
        depersonalise(
            table, key="random_id", direct_identifiers=leaky, quasi_identifiers=quasi,
            amounts=amounts, k=5, rng_seed=1,
        )  # fmt: skip
    assert e.value.code.startswith("leak_") and "'street_address'" in str(e.value)
    assert ("street_address", "street_address") in {(f.column, f.pattern) for f in e.value.findings}
