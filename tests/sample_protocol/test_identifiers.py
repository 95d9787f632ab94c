from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sample_protocol.errors import IdentifierError, ValidationError
from sample_protocol.identifier_columns import identifier_mask, key_mask
from sample_protocol.identifier_gen import random_bins, random_iins
from sample_protocol.identifiers import (
    BIN,
    IIN,
    EntityType,
    Sex,
    UnitType,
    check_digit,
    contains_identifier,
    find_identifiers,
    is_valid_bin,
    is_valid_identifier,
    is_valid_iin,
    mask_identifier,
    parse_bin,
    parse_identifier,
    parse_iin,
    validate_bin,
    validate_identifier,
    validate_iin,
)

KNOWN_IINS = ["850315400015", "900101300017", "020730600011", "751225400018", "850315400608"]
KNOWN_BINS = ["940140000385", "990140004654"]
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _first_sum(s: str) -> int:
    return sum((i + 1) * int(c) for i, c in enumerate(s[:11])) % 11


def _checksum_ok(s: str) -> bool:
    return check_digit(s[:11]) == int(s[11])


# ----------------------------------------------------------------------- known values


@pytest.mark.parametrize("iin", KNOWN_IINS)
def test_known_iins_are_valid(iin):
    assert is_valid_iin(iin)
    assert is_valid_identifier(iin)
    assert not is_valid_bin(iin)
    assert validate_iin(iin) == iin
    assert isinstance(parse_identifier(iin), IIN)


@pytest.mark.parametrize("bin_", KNOWN_BINS)
def test_known_bins_are_valid(bin_):
    assert is_valid_bin(bin_)
    assert is_valid_identifier(bin_)
    assert not is_valid_iin(bin_)
    assert validate_bin(bin_) == bin_
    assert isinstance(parse_identifier(bin_), BIN)


def test_second_weight_series_is_used():
    assert _first_sum("850315400608") == 10
    assert check_digit("85031540060") == 8


def test_no_check_digit_exists_for_some_prefixes():
    assert check_digit("85031540061") is None
    for last in "0123456789":
        assert not is_valid_identifier("85031540061" + last)
    with pytest.raises(IdentifierError) as err:
        validate_iin("850315400610")
    assert err.value.code == "identifier_checksum"
    assert "no check digit exists" in str(err.value)


def test_parse_iin_parts():
    a = parse_iin("850315400015")
    assert (a.birth_date, a.sex, a.century, a.serial) == (
        dt.date(1985, 3, 15),
        Sex.FEMALE,
        1900,
        "0001",
    )
    b = parse_iin("900101300017")
    assert (b.birth_date, b.sex, b.century) == (dt.date(1990, 1, 1), Sex.MALE, 1900)
    c = parse_iin("020730600011")
    assert (c.birth_date, c.sex, c.century) == (dt.date(2002, 7, 30), Sex.FEMALE, 2000)


def test_parse_bin_parts():
    b = parse_bin("940140000385")
    assert (b.registration_year, b.registration_month) == (1994, 1)
    assert (b.entity_type, b.unit, b.serial) == (EntityType.RESIDENT, UnitType.HEAD_OFFICE, "00038")
    assert parse_bin("990140004654").registration_year == 1999


def _some_bin(yymm: str) -> str:
    for serial in range(100):
        first = f"{yymm}40{serial:05d}"
        digit = check_digit(first)
        if digit is not None:
            return first + str(digit)
    raise AssertionError("unreachable")


@pytest.mark.parametrize(("yymm", "year"), [("9001", 1990), ("8912", 2089), ("0006", 2000)])
def test_bin_year_rule(yymm, year):
    # YY >= 90 is 19YY, otherwise 20YY.
    assert parse_bin(_some_bin(yymm)).registration_year == year


def test_enum_digits():
    assert [e.digit for e in EntityType] == [4, 5, 6]
    assert [u.digit for u in UnitType] == [0, 1, 2, 3]


# ----------------------------------------------------------------------- junk and errors


@pytest.mark.parametrize(
    "junk",
    [
        None,
        850315400015,
        8.5e11,
        b"850315400015",
        ["850315400015"],
        "",
        "85031540001",
        "8503154000155",
        "85031540001x",
        "８５０３１５４０００１５",
        "850315400016",
        "850315 400015",
    ],
)
def test_is_valid_never_raises_on_junk(junk):
    assert is_valid_iin(junk) is False
    assert is_valid_bin(junk) is False
    assert is_valid_identifier(junk) is False


def test_surrounding_white_space_is_stripped():
    assert is_valid_iin(" 850315400015\n")
    assert validate_identifier("\t940140000385 ") == "940140000385"


@pytest.mark.parametrize(
    ("func", "value", "code", "fragment"),
    [
        (validate_iin, "8503154000", "identifier_length", "10 characters"),
        (validate_iin, "85031540001x", "identifier_not_digits", "position 12"),
        (validate_bin, 940140000385, "identifier_type", "found int"),
        (validate_iin, "850315400016", "identifier_checksum", "expected check digit 5, found 6"),
        (validate_iin, "940140000385", "identifier_structure", "BIN"),
        (validate_bin, "850315400015", "identifier_structure", "IIN"),
        (validate_iin, "851315400018", "identifier_structure", "birth date"),
        (validate_iin, "850315000011", "identifier_structure", "7th digit"),
        (validate_identifier, "850375400012", "identifier_structure", "5th digit"),
    ],
)
def test_validate_errors(func, value, code, fragment):
    if code == "identifier_structure":
        assert _checksum_ok(value)  # the structure, not the checksum, is what fails
    with pytest.raises(IdentifierError) as err:
        func(value, where="tax.parquet column 'bin' row 17")
    assert err.value.code == code
    message = str(err.value)
    assert message.startswith("tax.parquet column 'bin' row 17: ")
    assert fragment in message
    assert str(value) not in message  # never echo the whole number


def test_error_masks_identifier():
    with pytest.raises(IdentifierError) as err:
        validate_bin("850315400015")
    assert "********0015" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_mask_identifier():
    assert mask_identifier("850315400015") == "********0015"
    assert mask_identifier("abc") == "***"
    assert mask_identifier("") == ""


def test_check_digit_rejects_bad_input():
    for bad in ("8503154000", "8503154000x", 85031540001):
        with pytest.raises(IdentifierError):
            check_digit(bad)  # type: ignore[arg-type]


def test_parsed_forms_are_frozen_checked_and_masked():
    iin = parse_iin("850315400015")
    assert repr(iin) == "IIN('********0015')"
    assert "850315400015" not in repr(parse_bin("940140000385")) + repr(iin)
    with pytest.raises(dataclasses.FrozenInstanceError):
        iin.value = "900101300017"  # type: ignore[misc]
    with pytest.raises(IdentifierError) as err:
        IIN("850315400015", dt.date(1985, 3, 16), Sex.FEMALE, 1900, "0001")
    assert err.value.code == "identifier_structure"
    with pytest.raises(IdentifierError):
        BIN("940140000385", 2094, 1, EntityType.RESIDENT, UnitType.HEAD_OFFICE, "00038")
    assert IIN("850315400015", dt.date(1985, 3, 15), Sex.FEMALE, 1900, "0001") == iin


# ----------------------------------------------------------------------- properties

iin_parts = st.tuples(
    st.dates(min_value=dt.date(1800, 1, 1), max_value=dt.date(2099, 12, 31)),
    st.sampled_from(list(Sex)),
    st.integers(0, 9999),
)
bin_parts = st.tuples(
    st.integers(1990, 2089),
    st.integers(1, 12),
    st.sampled_from(list(EntityType)),
    st.sampled_from(list(UnitType)),
    st.integers(0, 99999),
)


def _build_iin(born: dt.date, sex: Sex, serial: int) -> str | None:
    c = 1 + 2 * (born.year // 100 - 18) + (sex is Sex.FEMALE)
    first = f"{born:%y%m%d}{c}{serial:04d}"
    digit = check_digit(first)
    return None if digit is None else first + str(digit)


@SETTINGS
@given(iin_parts)
def test_iin_from_parts_validates_and_parses_back(parts):
    born, sex, serial = parts
    value = _build_iin(born, sex, serial)
    assume(value is not None)
    assert is_valid_iin(value) and not is_valid_bin(value)
    parsed = parse_identifier(value)
    assert isinstance(parsed, IIN)
    assert (parsed.birth_date, parsed.sex, parsed.serial) == (born, sex, f"{serial:04d}")
    assert parsed.century == born.year // 100 * 100


@SETTINGS
@given(bin_parts)
def test_bin_from_parts_validates_and_parses_back(parts):
    year, month, etype, unit, serial = parts
    first = f"{year % 100:02d}{month:02d}{etype.digit}{unit.digit}{serial:05d}"
    digit = check_digit(first)
    assume(digit is not None)
    value = first + str(digit)
    assert is_valid_bin(value) and not is_valid_iin(value)
    parsed = parse_identifier(value)
    assert isinstance(parsed, BIN)
    assert (parsed.registration_year, parsed.registration_month) == (year, month)
    assert (parsed.entity_type, parsed.unit, parsed.serial) == (etype, unit, f"{serial:05d}")


@settings(SETTINGS, max_examples=25)
@given(st.integers(0, 2**32 - 1))
def test_generated_identifiers_validate_and_parse(seed):
    rng = np.random.default_rng(seed)
    for value in random_iins(rng, 40):
        parsed = parse_iin(value)
        assert 1950 <= parsed.birth_date.year <= 2005
        assert parsed.value == value
    for value in random_bins(rng, 40):
        parsed = parse_bin(value)
        assert 1995 <= parsed.registration_year <= 2026
        assert parsed.value == value


POOL = [
    *random_iins(np.random.default_rng(11), 500).tolist(),
    *random_bins(np.random.default_rng(12), 500).tolist(),
]


digits12 = st.text(alphabet="0123456789", min_size=12, max_size=12)


@st.composite
def checksum_valid(draw):
    first = draw(st.text(alphabet="0123456789", min_size=11, max_size=11))
    digit = check_digit(first)
    assume(digit is not None)
    return first + str(digit)


@SETTINGS
@given(checksum_valid(), st.integers(0, 11), st.integers(1, 9))
def test_single_digit_change(value, pos, delta):
    changed = value[:pos] + str((int(value[pos]) + delta) % 10) + value[pos + 1 :]
    before, after = _first_sum(value) == 10, _first_sum(changed) == 10
    if pos == 11:
        assert not _checksum_ok(changed)  # a changed check digit is always caught
    elif pos == 10 and not before:
        # weight 11 = 0 mod 11: the 11th digit is invisible to the first series
        assert _checksum_ok(changed)
    elif before == after:
        assert not _checksum_ok(changed)  # same series, non-zero weight: always caught
    # A change that moves the number between the two series is caught only ~90% of the time.


def test_single_digit_change_documented_counterexamples():
    assert is_valid_iin("850315400015") and is_valid_iin("850315400025")  # 11th digit
    assert is_valid_iin("850315400045") and is_valid_iin("850315400645")  # series switch


@settings(SETTINGS, max_examples=40)
@given(st.lists(checksum_valid(), max_size=40))
def test_column_mask_agrees_with_scalar_rules(values):
    expected = [is_valid_identifier(v) for v in values]
    assert identifier_mask(values).tolist() == expected
    assert identifier_mask(np.array(values, dtype="<U12")).tolist() == expected
    assert [find_identifiers(v) == [v] for v in values] == expected


@SETTINGS
@given(digits12)
def test_random_numbers_failing_checksum_are_not_flagged(value):
    assume(not _checksum_ok(value))
    assert not is_valid_identifier(value)
    assert find_identifiers(f"id {value} end") == []
    assert not contains_identifier(value)
    assert not identifier_mask([value, f"x{value}y"]).any()


@SETTINGS
@given(st.text(max_size=30), st.text(max_size=30), st.sampled_from(POOL))
def test_embedded_identifier_is_found(prefix, suffix, value):
    text = prefix + value + suffix
    assert value in find_identifiers(text)
    assert contains_identifier(text)
    assert identifier_mask([text, "nothing here"]).tolist() == [True, False]


@SETTINGS
@given(st.text(alphabet="0123456789", min_size=65, max_size=120))
def test_long_digit_runs_match_window_scan(run):
    expected = [
        run[i : i + 12] for i in range(len(run) - 11) if is_valid_identifier(run[i : i + 12])
    ]
    assert find_identifiers(f"a{run}b") == expected


# ----------------------------------------------------------------------- scanning


def test_find_identifiers_examples():
    text = "BIN 940140000385; IIN:850315400015, phone 87011234567, acct 1234567890123"
    assert find_identifiers(text) == ["940140000385", "850315400015"]
    assert find_identifiers("x850315400015850315400015") == ["850315400015", "850315400015"]
    assert find_identifiers("9850315400015") == ["850315400015"]  # glued digits still leak
    assert find_identifiers("850315 400015") == []  # split numbers are not found
    assert find_identifiers("") == []
    assert not contains_identifier(None)  # type: ignore[arg-type]
    with pytest.raises(IdentifierError) as err:
        find_identifiers(b"850315400015")  # type: ignore[arg-type]
    assert err.value.code == "identifier_type"


def test_identifier_mask_strings():
    values = ["940140000385", None, "850315400016", "id 850315400015.", "ё50315400015", "abc"]
    expected = [True, False, False, True, False, False]
    assert identifier_mask(values).tolist() == expected
    arr = pa.array(values)
    assert identifier_mask(arr).tolist() == expected
    assert identifier_mask(arr.slice(2)).tolist() == expected[2:]
    assert identifier_mask(arr.cast(pa.large_string())).tolist() == expected
    assert identifier_mask(arr.dictionary_encode()).tolist() == expected
    assert identifier_mask(pa.chunked_array([arr[:2], arr[2:]])).tolist() == expected
    assert identifier_mask(np.array(values, dtype=object)).tolist() == expected
    assert identifier_mask([]).tolist() == []
    assert identifier_mask(pa.array([None, None], pa.string())).tolist() == [False, False]


def test_identifier_mask_numbers_are_zero_padded():
    # 020730600011 stored as a number loses its leading zero: still a leak.
    ints = [20730600011, 940140000385, 5, -940140000385, None]
    assert identifier_mask(ints).tolist() == [True, True, False, True, False]
    assert identifier_mask(np.array([20730600011, 7], dtype=np.int64)).tolist() == [True, False]
    assert identifier_mask(pa.array([940140000385.0, float("nan"), 1.5, None])).tolist() == [
        True,
        False,
        False,
        False,
    ]
    assert identifier_mask(pa.array([9850315400015], pa.uint64())).tolist() == [True]
    assert identifier_mask([True, False]).tolist() == [False, False]
    assert identifier_mask(pa.array([dt.date(2025, 1, 1)])).tolist() == [False]


def test_identifier_mask_refuses_unknown_arrow_types():
    with pytest.raises(IdentifierError) as err:
        identifier_mask(pa.array([b"850315400015"], pa.binary()))
    assert err.value.code == "identifier_type"
    assert "binary" in str(err.value)


def test_identifier_mask_mixed_python_values():
    assert identifier_mask(["940140000385", 20730600011, b"x", None]).tolist() == [
        True,
        True,
        False,
        False,
    ]


# ----------------------------------------------------------------------- generation


def test_random_iins_shape_uniqueness_and_reproducibility():
    a = random_iins(np.random.default_rng(7), 50_000)
    assert a.shape == (50_000,) and a.dtype == np.dtype("<U12")
    assert len(set(a.tolist())) == 50_000
    assert identifier_mask(a).all()
    assert (random_iins(np.random.default_rng(7), 50_000) == a).all()
    sexes = {parse_iin(v).sex for v in a[:200]}
    assert sexes == {Sex.MALE, Sex.FEMALE}


def test_random_iins_birth_years_and_centuries():
    a = random_iins(np.random.default_rng(1), 2000, birth_years=(1899, 1900))
    centuries = {parse_iin(v).century for v in a}
    assert centuries == {1800, 1900}
    assert {parse_iin(v).birth_date.year for v in a} == {1899, 1900}


def test_random_bins_mix():
    rng = np.random.default_rng(3)
    b = random_bins(
        rng,
        5000,
        years=(2020, 2020),
        entity_type_probs={EntityType.NON_RESIDENT: 1.0},
        unit_probs={UnitType.BRANCH: 0.5, UnitType.PEASANT_FARM: 0.5},
    )
    parsed = [parse_bin(v) for v in b]
    assert {p.entity_type for p in parsed} == {EntityType.NON_RESIDENT}
    assert {p.unit for p in parsed} == {UnitType.BRANCH, UnitType.PEASANT_FARM}
    assert {p.registration_year for p in parsed} == {2020}
    assert len(set(b.tolist())) == 5000


def test_random_without_uniqueness_and_empty():
    rng = np.random.default_rng(0)
    assert random_iins(rng, 0).shape == (0,)
    b = random_bins(
        rng,
        3000,
        years=(2020, 2020),
        unique=False,
        entity_type_probs={EntityType.RESIDENT: 1.0},
        unit_probs={UnitType.HEAD_OFFICE: 1.0},
    )
    assert identifier_mask(b).all()


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda rng: random_iins(rng, -1), "generation_argument"),
        (lambda rng: random_iins(rng, 2.5), "generation_argument"),
        (lambda rng: random_iins(None, 5), "generation_argument"),
        (lambda rng: random_iins(rng, 5, birth_years=(2000, 1990)), "generation_argument"),
        (lambda rng: random_iins(rng, 5, birth_years=(1700, 1990)), "generation_argument"),
        (lambda rng: random_bins(rng, 5, years=(1980, 2000)), "generation_argument"),
        (
            lambda rng: random_bins(rng, 5, entity_type_probs={EntityType.RESIDENT: 0.5}),
            "generation_argument",
        ),
        (lambda rng: random_bins(rng, 5, unit_probs={"office": 1.0}), "generation_argument"),
        (lambda rng: random_iins(rng, 4_000_000, birth_years=(2000, 2000)), "generation_capacity"),
    ],
)
def test_generation_bad_arguments(call, code):
    with pytest.raises(ValidationError) as err:
        call(np.random.default_rng(0))
    assert err.value.code == code


def test_probabilities_accept_string_keys():
    b = random_bins(np.random.default_rng(0), 10, entity_type_probs={"joint_ie": 1.0})
    assert {parse_bin(v).entity_type for v in b} == {EntityType.JOINT_IE}


def test_key_mask_exact_keys_only():
    values = ["940140000385", None, "850315400016", " 940140000385", "850315400015", "ab"]
    arr = pa.array(values)
    assert key_mask(arr).tolist() == [True, False, False, False, True, False]
    assert key_mask(arr, bins_only=True).tolist() == [True, False, False, False, False, False]
    assert key_mask(arr.slice(3)).tolist() == [False, True, False]
    assert key_mask(arr.cast(pa.large_string())).tolist() == key_mask(arr).tolist()
    assert key_mask(pa.array([], pa.string())).tolist() == []


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.text(alphabet="0123456789", min_size=11, max_size=13),
                          st.text(max_size=13)), max_size=30))  # fmt: skip
def test_key_mask_agrees_with_scalar_checks(values):
    arr = pa.array(values, pa.string())
    assert key_mask(arr).tolist() == [is_valid_identifier(v) for v in values]
    assert key_mask(arr, bins_only=True).tolist() == [is_valid_bin(v) for v in values]


def _with_check_digit(first11: str) -> str | None:
    digit = check_digit(first11)
    return None if digit is None else first11 + str(digit)  # None: no check digit exists


@pytest.mark.parametrize("century", range(0, 10))
def test_key_mask_leap_days_in_every_century(century):
    """29 February (and 30, 31) of years 00, 04, 01 and 96: the column rules' leap year
    (from the last two digits and the century digit) is the scalar rules' own."""
    values = []
    for yy in ("00", "04", "01", "96"):
        for dd in ("28", "29", "30", "31"):
            found = _with_check_digit(f"{yy}02{dd}{century}0001")
            if found is not None:
                values.append(found)
    assert len(values) >= 8
    expected = [is_valid_identifier(v) for v in values]
    assert key_mask(pa.array(values)).tolist() == expected
    if 1 <= century <= 6:  # 28 February is a valid birth date in any year
        assert all(ok for v, ok in zip(values, expected, strict=True) if v[4:6] == "28")


def test_key_mask_any_twelve_bytes():
    """Any 12 bytes of UTF-8 text, from NUL to the highest lead byte, give False, not an
    error or a wrapped-around sum."""
    values = ["é" * 6, "\x00" * 12, "\U0010ffff" * 3, "/" * 12, ":" * 12, "9" * 12, "0" * 12]
    assert key_mask(pa.array(values)).tolist() == [is_valid_identifier(v) for v in values]
