"""The value scanner of ``agency_runtime._pii_scan``: what it finds and what it leaves."""

from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agency_runtime._pii_scan import (
    FLOAT_IDENTIFIER_SHARE,
    PATTERNS,
    ScanFinding,
    iban_checksum_ok,
    scan_findings,
    scan_table,
    scan_values,
    unscannable_columns,
)
from sample_protocol import identifier_columns, identifier_gen, identifiers
from sample_protocol.records import new_random_ids

RNG_SEED = 20260

# -- generators of realistic examples ----------------------------------------------------


def _phones(rng: np.random.Generator, n: int) -> list[str]:
    mobile = [700, 701, 702, 705, 707, 708, 747, 771, 775, 776, 777, 778]
    out = []
    for i in range(n):
        code = str(mobile[rng.integers(len(mobile))])
        a, b, c = (
            f"{rng.integers(1000):03d}",
            f"{rng.integers(100):02d}",
            f"{rng.integers(100):02d}",
        )
        city = i % 5 == 4
        if city:  # Astana 7172 + 6 digits, Almaty 727 + 7 digits
            code, a, b, c = ("7172", a[:2], b, c) if i % 2 else ("727", a, b, c)
        rest = f"{a}{b}{c}"
        formats = [
            f"+7 {code} {a} {b} {c}",
            f"+7({code}){a}-{b}-{c}",
            f"8 ({code}) {a} {b} {c}",
            f"8{code}{rest}",
            f"+7{code}{rest}",
            f"8-{code}-{a}-{b}-{c}",
            f"+7 ({code}) {a}-{b}-{c}",
            f"8 {code} {rest}",
        ]
        phone = formats[i % len(formats)]
        context = ["{}", "тел.: {}", "Call {} after 5pm", "контакт {}, спросить", "моб{}"]
        out.append(context[rng.integers(len(context))].format(phone))
    return out


def _emails(rng: np.random.Generator, n: int) -> list[str]:
    locals_ = ["info", "a.ivanov", "buh_2023", "zhanna-k", "sales+kz", "ерлан"]
    domains = ["mail.kz", "gmail.com", "inbox.kz", "company.com.kz", "почта.қаз", "yandex.ru"]
    context = ["{}", "e-mail: {}", "<{}>", "пишите на {} или звоните"]
    return [
        context[i % len(context)].format(
            f"{locals_[rng.integers(len(locals_))]}{rng.integers(100)}@"
            f"{domains[rng.integers(len(domains))]}"
        )
        for i in range(n)
    ]


def _iban(rng: np.random.Generator, *, valid: bool = True) -> str:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    bank = "".join(rng.choice(list("0123456789"), 3))
    account = "".join(rng.choice(list(alphabet), 13))
    bban = bank + account
    numeric = int("".join(str(int(ch, 36)) for ch in bban + "KZ00"))
    check = 98 - numeric % 97
    if not valid:
        check = (check + 1 + rng.integers(90)) % 97 + 2  # any other pair of digits
        check = check if check != 98 - numeric % 97 else (check + 1) % 97 + 2
    return f"KZ{check:02d}{bban}"


def _spaced(iban: str) -> str:
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))


LATIN_STEMS = ["Akhmet", "Ivan", "Petr", "Nurpeis", "Sarsenbai", "Kuznets", "Smirn", "Abdrakhman"]
CYR_STEMS = ["Ахмет", "Иван", "Петр", "Нурпеис", "Сарсенбай", "Кузнец", "Смирн", "Жумабай"]
LATIN_SUFFIXES = ["ov", "ova", "ev", "eva", "in", "ina"]
CYR_SUFFIXES = ["ов", "ова", "ев", "ева", "ин", "ина"]


def _names(rng: np.random.Generator, n: int) -> list[str]:
    out = []
    for i in range(n):
        kind = i % 6
        if kind == 0:
            name = rng.choice(LATIN_STEMS) + rng.choice(LATIN_SUFFIXES)
        elif kind == 1:
            name = rng.choice(CYR_STEMS) + rng.choice(CYR_SUFFIXES)
        elif kind == 2:  # Kazakh patronymic-style surnames
            name = rng.choice(["Ерлан", "Нұрлан", "Асқар", "Serik", "Marat"]) + rng.choice(
                ["ұлы", "қызы", "uly", "kyzy"] if i % 2 else ["ұлы", "қызы"]
            )
        elif kind == 3:  # Surname Name Patronymic, the surname without a suffix
            name = f"{rng.choice(['Ким', 'Пак', 'Цой', 'Ли'])} {rng.choice(['Виктор', 'Анна'])} "
            name += rng.choice(["Ильич", "Кузьмич", "Ильинична", "Сергеевич", "Петровна"])
        elif kind == 4:  # surname with initials
            name = rng.choice(["Ким В.П.", "Цой А. Б.", "В.П. Ким", "Tsoi A.B."])
        else:
            name = rng.choice(CYR_STEMS) + "ович"
        context = ["{}", "директор {}", "ИП {}", "{} (руководитель)", "Head: {}"]
        out.append(context[rng.integers(len(context))].format(name))
    return out


def _addresses(rng: np.random.Generator, n: int) -> list[str]:
    streets = ["Абая", "Достык", "Толе би", "Сейфуллина", "Мира"]
    formats = [
        "г. Алматы, ул. {s}, {h}",
        "улица {s} {h}",
        "пр. {s} {h}, кв. {f}",
        "мкр Самал-2, д. {h}",
        "Абай көшесі, {h}",
        "Достық даңғылы {h}",
        "{h} Main St.",
        "{h}th Avenue",
        "Almaty, Abai ave. {h}, office {f}",
        "Astana, Kabanbai batyr str. {h}",
        "дом {h}",
        "кв. {f}",
        "проспект {s}",
    ]
    return [
        formats[i % len(formats)].format(
            s=rng.choice(streets), h=int(rng.integers(1, 300)), f=int(rng.integers(1, 200))
        )
        for i in range(n)
    ]


def _hits(values: list[str]) -> dict[str, np.ndarray]:
    return scan_values(pa.array(values, pa.string()))


def _misses(mask: np.ndarray, values: list[str]) -> list[str]:
    return [v for v, m in zip(values, mask, strict=True) if not m]


# -- each pattern finds its realistic examples --------------------------------------------


def test_phones_are_found():
    values = _phones(np.random.default_rng(RNG_SEED), 400)
    masks = _hits(values)
    assert _misses(masks["phone"], values) == []


def test_emails_are_found():
    values = _emails(np.random.default_rng(RNG_SEED), 300)
    assert _misses(_hits(values)["email"], values) == []


def test_valid_ibans_are_found_and_invalid_ones_are_not():
    rng = np.random.default_rng(RNG_SEED)
    good = [_iban(rng) for _ in range(150)]
    assert all(iban_checksum_ok(g) for g in good)
    values = good + [f"счёт {_spaced(g)} в банке" for g in good]
    assert _misses(_hits(values)["iban"], values) == []
    bad = [_iban(rng, valid=False) for _ in range(150)]
    assert not any(iban_checksum_ok(b) for b in bad)
    assert not _hits(bad + [_spaced(b) for b in bad])["iban"].any()


def test_iban_checksum_example_from_the_standard():
    assert iban_checksum_ok("KZ86125KZT5004100100")
    assert not iban_checksum_ok("KZ86125KZT5004100101")
    assert not iban_checksum_ok("KZ")


def test_person_names_are_found():
    values = _names(np.random.default_rng(RNG_SEED), 360)
    assert _misses(_hits(values)["person_name"], values) == []


def test_common_nouns_that_end_like_surnames_do_not_hide_a_name():
    values = ["Магазин Иванов", "Машина Петрова, Магазин", "Магазин Машина", "Berlin Main"]
    assert _hits(values)["person_name"].tolist() == [True, True, False, False]


def test_street_addresses_are_found():
    values = _addresses(np.random.default_rng(RNG_SEED), 390)
    assert _misses(_hits(values)["street_address"], values) == []


# -- and leaves ordinary values alone -------------------------------------------------------


def _ordinary(rng: np.random.Generator) -> list[str]:
    plain = [str(x) for x in rng.integers(0, 10**10, 200)]
    amounts = [f"{x:.2f}" for x in rng.uniform(0, 1e9, 100)]
    amounts += [f"{x:,.2f}".replace(",", " ") for x in rng.uniform(1e3, 1e11, 100)]
    amounts += ["87 012 345 678", "87012345678.50", "-1 500 000", "1e9", "0"]
    kato = [f"{r:02d}{d:02d}{s:05d}" for r, d, s in rng.integers(10, 80, (100, 3))]
    oked = [f"{x:05d}" for x in rng.integers(1000, 99000, 100)]
    oked += [f"{x // 1000:02d}.{x // 10 % 100:02d}.{x % 10}" for x in rng.integers(1000, 99000, 50)]
    base = dt.date(2000, 1, 1)
    days = [base + dt.timedelta(days=int(x)) for x in rng.integers(0, 9000, 100)]
    dates = [d.isoformat() for d in days] + [d.strftime("%d.%m.%Y") for d in days]
    dates += [f"{d.year}-Q{(d.month - 1) // 3 + 1}" for d in days] + [
        d.strftime("%Y-%m") for d in days
    ]
    words = [
        "ТОО Ромашка", "Магазин", "Машина", "Магазин Машина Бензин", "Торговый дом", "LLP",
        "trade services", "Berlin", "Main office", "Алматы", "Astana", "3 кв. 2023",
        "100 кв. м", "Silk Road Logistics", "прочие расходы", "Площадь 100", "Основа",
        "оптовая торговля", "+7 495 123 45 67", "TOO \"Altyn Trade\"", "*", "G", "micro",
        "2023-Q3", "sme", "16-50", "5001+", "<0", "Kazakhstan",
    ]  # fmt: skip
    return plain + amounts + kato + oked + dates + words + list(new_random_ids(200))


def test_ordinary_values_are_not_flagged():
    values = _ordinary(np.random.default_rng(RNG_SEED))
    masks = _hits(values)
    flagged = {p: [v for v, m in zip(values, masks[p], strict=True) if m] for p in PATTERNS}
    assert flagged == {p: [] for p in PATTERNS}


def test_twelve_digit_numbers_failing_the_check_digit_are_not_flagged():
    rng = np.random.default_rng(RNG_SEED)
    numbers = [f"{x:012d}" for x in rng.integers(0, 10**12, 3000)]
    invalid = [s for s in numbers if not identifiers.is_valid_identifier(s)]
    values = invalid + [f"договор № {s} от 01.02.2023" for s in invalid[:500]]
    assert not _hits(values)["iin_bin"].any()


# -- IINs and BINs ----------------------------------------------------------------------------


def _valid_ids(seed: int, n: int) -> list[str]:
    rng = np.random.default_rng(seed)
    iins = list(identifier_gen.random_iins(rng, n))
    bins = list(identifier_gen.random_bins(rng, n))
    return [str(x) for x in iins + bins]


_TEXT = st.text(alphabet=st.characters(exclude_categories=("Nd", "Cs")), max_size=20)


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), before=_TEXT, after=_TEXT)
def test_every_valid_identifier_embedded_in_text_is_found(seed, before, after):
    for ident in _valid_ids(seed, 1):
        assert identifiers.is_valid_identifier(ident)
        masks = _hits([ident, f"{before}{ident}{after}", f"{before} {ident}"])
        assert masks["iin_bin"].all(), "a valid identifier was missed"


@settings(max_examples=80, deadline=None)
@given(x=st.integers(0, 10**12 - 1), before=_TEXT)
def test_random_twelve_digit_numbers_are_flagged_only_when_valid(x, before):
    s = f"{x:012d}"
    masks = _hits([s, f"{before}{s}"])
    assert masks["iin_bin"].tolist() == [identifiers.is_valid_identifier(s)] * 2


def test_identifier_glued_to_more_digits_still_leaks():
    ident = _valid_ids(7, 1)[0]
    masks = _hits([ident, ident + "5", "9" + ident, "счёт " + ident + "0001"])
    assert masks["iin_bin"].all()


def test_int64_bin_column_is_a_leak():
    ids = _valid_ids(11, 50)
    t = pa.table({"bin_as_int": pa.array([int(x) for x in ids], pa.int64())})
    findings = scan_findings(t)
    assert findings == [ScanFinding("bin_as_int", "iin_bin", 100, 0)]
    as_uint = t.column("bin_as_int").cast(pa.uint64())
    as_decimal = pa.array([decimal.Decimal(x) for x in ids], pa.decimal128(12, 0))
    for column in (as_uint, as_decimal):
        assert scan_values(column)["iin_bin"].all()


def test_float_column_of_identifiers_is_a_leak_but_amounts_are_not():
    ids = _valid_ids(13, 40)
    as_float = pa.array([float(x) for x in ids] + [None], pa.float64())
    assert scan_values(as_float)["iin_bin"].tolist() == [True] * 80 + [False]
    # amounts whose integer part happens to read as an identifier now and then
    rng = np.random.default_rng(RNG_SEED)
    amounts = np.round(rng.uniform(1e8, 1e12, 2000))
    assert identifier_columns.identifier_mask(amounts).any(), "the example needs a few such amounts"
    column = pa.array(np.concatenate([amounts, [float(x) for x in ids[:10]]]))
    assert share_below(column, FLOAT_IDENTIFIER_SHARE)
    assert not any(m.any() for m in scan_values(column).values())


def share_below(column: pa.Array, share: float) -> bool:
    return identifier_columns.identifier_mask(column).mean() < share


def test_small_integers_are_not_identifiers():
    for column in (
        pa.array(np.arange(0, 100_000, 7), pa.int64()),
        pa.array(np.arange(1950, 2100), pa.int32()),
        pa.array([-1, -(10**15), 10**13, None], pa.int64()),
    ):
        assert not any(m.any() for m in scan_values(column).values())


def test_phone_stored_as_integer_is_a_leak():
    t = pa.table({"p": pa.array([87011234567, 77071234567, 12345678901, 8701123456], pa.int64())})
    assert scan_values(t.column("p"))["phone"].tolist() == [True, True, False, False]


# -- findings and tables ----------------------------------------------------------------------


def test_findings_name_column_pattern_rows_and_first_row_only():
    t = pa.table(
        {
            "key": ["87011234567"] * 4,
            "note": ["ok", "звоните +7 701 123 45 67", None, "или 8 (727) 250 12 34"],
            "mail": [None, None, None, "x@mail.kz"],
            "n": [1.5, 2.5, 3.5, 87011234567.0],  # floats are not scanned
        }
    )
    findings = scan_findings(t, skip_columns=["key"])
    assert findings == [
        ScanFinding("note", "phone", 2, 1),
        ScanFinding("mail", "email", 1, 3),
    ]
    assert scan_table(t, skip_columns=["key"]) == {
        "iin_bin": 0, "phone": 2, "email": 1, "iban": 0, "person_name": 0, "street_address": 0,
    }  # fmt: skip
    assert scan_table(t)["phone"] == 6
    assert "701" not in repr(findings)


def test_every_string_representation_is_scanned():
    values = ["ok", "a@b.kz", None]
    dictionary = pa.array(values).dictionary_encode()
    chunked = pa.chunked_array([pa.array(values[:1]), pa.array(values[1:])])
    for column in (pa.array(values, pa.large_string()), dictionary, chunked):
        assert scan_values(column)["email"].tolist() == [False, True, False]
    view = pa.array(values).cast(pa.string_view())
    assert scan_values(view)["email"].tolist() == [False, True, False]
    assert not any(m.any() for m in scan_values(pa.array([None, None], pa.string())).values())
    assert not any(m.any() for m in scan_values(pa.array([], pa.string())).values())


def test_long_column_is_scanned_in_slices_without_losing_rows():
    n = 250_000
    values = ["оптовая торговля"] * n
    values[n - 3] = "тел 87011234567"
    values[7] = "ул. Абая 10"
    findings = scan_findings(pa.table({"c": values}))
    assert findings == [
        ScanFinding("c", "phone", 1, n - 3),
        ScanFinding("c", "street_address", 1, 7),
    ]


def test_unscannable_columns_are_listed():
    t = pa.table(
        {
            "blob": pa.array([b"x"], pa.binary()),
            "tags": pa.array([["a"]]),
            "key": pa.array([b"k"], pa.binary()),
            "s": ["x"],
            "f": [1.0],
        }
    )
    assert unscannable_columns(t, skip_columns=["key"]) == ["blob", "tags"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_every_pattern_has_a_name_usable_as_a_report_key(pattern):
    assert pattern.isidentifier() and pattern == pattern.lower()
