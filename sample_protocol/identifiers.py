"""Kazakhstan IIN and BIN: validation, parsing, masking, synthetic generation and scanning.

Both are 12 ASCII digits ending in a check digit: the first 11 digits weighted 1..11,
summed, mod 11; if that gives 10, weights 3..11, 1, 2, mod 11; if that gives 10 again no
check digit exists and the number is never issued.

* IIN (individual): ``YYMMDD`` birth date, a century/sex digit (1/2: 1800s male/female,
  3/4: 1900s, 5/6: 2000s), a 4-digit serial, the check digit.
* BIN (business): ``YYMM`` registration year and month, an entity-type digit (4 resident,
  5 non-resident, 6 joint individual entrepreneurship), a unit digit (0 head office,
  1 branch, 2 representative office, 3 peasant farm), a 5-digit serial, the check digit.
  BINs exist from the 1990s on: ``YY >= 90`` is read as 19YY, otherwise 20YY.

An IIN's 5th digit is 0-3 (day of birth) and a BIN's is 4-6, so the two never collide.

Known limitation of the check digit: the 11th digit has weight 11 in the first series, so
a typo in it goes unnoticed whenever the first series applies (``850315400015`` and
``850315400025`` are both valid). Any other single-digit change is caught unless it moves
the number between the two weight series.

Identifiers are personal data: error messages show them masked (``********0015``) and the
``repr`` of :class:`IIN` and :class:`BIN` is masked too.

>>> parse_iin("850315400015").birth_date
datetime.date(1985, 3, 15)
>>> find_identifiers("client 940140000385, phone 87011234567")
['940140000385']
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from .errors import IdentifierError, ValidationError

__all__ = [
    "BIN",
    "IIN",
    "EntityType",
    "Sex",
    "UnitType",
    "check_digit",
    "contains_identifier",
    "find_identifiers",
    "identifier_mask",
    "is_valid_bin",
    "is_valid_identifier",
    "is_valid_iin",
    "mask_identifier",
    "parse_bin",
    "parse_identifier",
    "parse_iin",
    "random_bins",
    "random_iins",
    "validate_bin",
    "validate_identifier",
    "validate_iin",
]

_W1 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
_W2 = (3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2)
_W1_NP = np.array(_W1, dtype=np.int32)
_W2_NP = np.array(_W2, dtype=np.int32)
_POW10 = 10 ** np.arange(11, -1, -1, dtype=np.int64)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_DIGIT_RUN = re.compile(r"[0-9]{12,}")
_MAX_ROUNDS = 500
_LONG_RUN = 64  # digit runs longer than this are checked with numpy, not window by window


class Sex(enum.StrEnum):
    """Sex encoded in an IIN's 7th digit (odd: male, even: female)."""

    MALE = "M"
    FEMALE = "F"


class EntityType(enum.StrEnum):
    """A BIN's 5th digit."""

    RESIDENT = "resident"
    NON_RESIDENT = "non_resident"
    JOINT_IE = "joint_ie"

    @property
    def digit(self) -> int:
        return _ENTITY_DIGITS[self]


class UnitType(enum.StrEnum):
    """A BIN's 6th digit."""

    HEAD_OFFICE = "head_office"
    BRANCH = "branch"
    REPRESENTATIVE = "representative"
    PEASANT_FARM = "peasant_farm"

    @property
    def digit(self) -> int:
        return _UNIT_DIGITS[self]


_ENTITY_DIGITS = {EntityType.RESIDENT: 4, EntityType.NON_RESIDENT: 5, EntityType.JOINT_IE: 6}
_UNIT_DIGITS = {
    UnitType.HEAD_OFFICE: 0,
    UnitType.BRANCH: 1,
    UnitType.REPRESENTATIVE: 2,
    UnitType.PEASANT_FARM: 3,
}
_ENTITY_BY_DIGIT = {v: k for k, v in _ENTITY_DIGITS.items()}
_UNIT_BY_DIGIT = {v: k for k, v in _UNIT_DIGITS.items()}


# --------------------------------------------------------------------------- scalar rules


def mask_identifier(s: str) -> str:
    """Hide all but the last 4 characters: ``'850315400015'`` -> ``'********0015'``.

    Strings of 4 characters or fewer are masked whole.
    """
    s = str(s)
    if len(s) <= 4:
        return "*" * len(s)
    return "*" * (len(s) - 4) + s[-4:]


def _found(s: str) -> str:
    if len(s) > 40:
        return f"{len(s)} characters"
    return f"{mask_identifier(s)!r} ({len(s)} characters)"


def _is_digits(s: str) -> bool:
    return s.isascii() and s.isdigit()


def check_digit(first11: str) -> int | None:
    """The check digit for the first 11 digits, or ``None`` when no valid digit exists.

    >>> check_digit("85031540001")
    5
    """
    if not isinstance(first11, str) or len(first11) != 11 or not _is_digits(first11):
        shown = _found(first11) if isinstance(first11, str) else type(first11).__name__
        raise IdentifierError(
            f"check_digit: expected 11 ASCII digits, found {shown}", code="identifier_length"
        )
    digits = [ord(c) - 48 for c in first11]
    total = sum(w * d for w, d in zip(_W1, digits, strict=True)) % 11
    if total != 10:
        return total
    total = sum(w * d for w, d in zip(_W2, digits, strict=True)) % 11
    return None if total == 10 else total


def _iin_problem(v: str) -> str | None:
    if v[4] in "456789":
        return f"5th digit is {v[4]}, an IIN's is 0-3 (day of birth); a BIN's is 4-6"
    c = int(v[6])
    if not 1 <= c <= 6:
        return f"7th digit (century and sex) must be 1-6, found {c}"
    try:
        dt.date(1800 + 100 * ((c - 1) // 2) + int(v[:2]), int(v[2:4]), int(v[4:6]))
    except ValueError:
        return "digits 1-6 must be a birth date YYMMDD, found an impossible month or day"
    return None


def _bin_problem(v: str) -> str | None:
    if v[4] in "0123":
        return f"5th digit is {v[4]}, a BIN's is 4-6 (entity type); an IIN's is 0-3"
    if v[4] not in "456":
        return f"5th digit (entity type) must be 4, 5 or 6, found {v[4]}"
    if not 1 <= int(v[2:4]) <= 12:
        return f"digits 3-4 (registration month) must be 01-12, found {v[2:4]}"
    if v[5] not in "0123":
        return f"6th digit (unit) must be 0-3, found {v[5]}"
    return None


def _checksum_ok(v: str) -> bool:
    return check_digit(v[:11]) == ord(v[11]) - 48


def _clean(s: object) -> str | None:
    if not isinstance(s, str):
        return None
    v = s.strip()
    return v if len(v) == 12 and _is_digits(v) else None


def is_valid_iin(s: object) -> bool:
    """True for a valid IIN (surrounding white space allowed); never raises."""
    v = _clean(s)
    return v is not None and _checksum_ok(v) and _iin_problem(v) is None


def is_valid_bin(s: object) -> bool:
    """True for a valid BIN (surrounding white space allowed); never raises."""
    v = _clean(s)
    return v is not None and _checksum_ok(v) and _bin_problem(v) is None


def is_valid_identifier(s: object) -> bool:
    """True for a valid IIN or BIN; never raises."""
    v = _clean(s)
    if v is None or not _checksum_ok(v):
        return False
    return (_iin_problem(v) if v[4] in "0123" else _bin_problem(v)) is None


def _validate(s: object, where: str, kind: str, problem: Callable[[str], str | None]) -> str:
    if not isinstance(s, str):
        raise IdentifierError(
            f"{where}: expected a string of 12 digits ({kind}), found {type(s).__name__}",
            code="identifier_type",
        )
    v = s.strip()
    if len(v) != 12:
        raise IdentifierError(
            f"{where}: expected 12 digits ({kind}), found {_found(v)}", code="identifier_length"
        )
    if not _is_digits(v):
        pos = next(i for i, ch in enumerate(v) if not ("0" <= ch <= "9"))
        raise IdentifierError(
            f"{where}: expected 12 digits ({kind}), found non-digit {v[pos]!r} at position "
            f"{pos + 1} in {mask_identifier(v)!r}",
            code="identifier_not_digits",
        )
    expected = check_digit(v[:11])
    if expected is None:
        raise IdentifierError(
            f"{where}: {kind} {mask_identifier(v)!r} fails its checksum: no check digit exists "
            "for its first 11 digits, so no such number is issued",
            code="identifier_checksum",
        )
    if expected != int(v[11]):
        raise IdentifierError(
            f"{where}: {kind} {mask_identifier(v)!r} fails its checksum: expected check digit "
            f"{expected}, found {v[11]}",
            code="identifier_checksum",
        )
    reason = problem(v)
    if reason is not None:
        raise IdentifierError(
            f"{where}: {mask_identifier(v)!r} is not a valid {kind}: {reason}",
            code="identifier_structure",
        )
    return v


def _either_problem(v: str) -> str | None:
    if v[4] in "0123":
        return _iin_problem(v)
    if v[4] in "456":
        return _bin_problem(v)
    return f"5th digit must be 0-3 (IIN, day of birth) or 4-6 (BIN, entity type), found {v[4]}"


def validate_iin(s: object, *, where: str = "IIN") -> str:
    """Return the IIN as 12 digits (outer white space stripped) or raise IdentifierError."""
    return _validate(s, where, "IIN", _iin_problem)


def validate_bin(s: object, *, where: str = "BIN") -> str:
    """Return the BIN as 12 digits (outer white space stripped) or raise IdentifierError."""
    return _validate(s, where, "BIN", _bin_problem)


def validate_identifier(s: object, *, where: str = "identifier") -> str:
    """Return a valid IIN or BIN as 12 digits or raise IdentifierError."""
    return _validate(s, where, "IIN or BIN", _either_problem)


# --------------------------------------------------------------------------- parsed forms


def _iin_fields(v: str) -> tuple[dt.date, Sex, int, str]:
    c = int(v[6])
    century = 1800 + 100 * ((c - 1) // 2)
    born = dt.date(century + int(v[:2]), int(v[2:4]), int(v[4:6]))
    return born, (Sex.MALE if c % 2 else Sex.FEMALE), century, v[7:11]


def _bin_fields(v: str) -> tuple[int, int, EntityType, UnitType, str]:
    yy = int(v[:2])
    year = 1900 + yy if yy >= 90 else 2000 + yy
    return year, int(v[2:4]), _ENTITY_BY_DIGIT[int(v[4])], _UNIT_BY_DIGIT[int(v[5])], v[6:11]


@dataclass(frozen=True, slots=True, repr=False)
class IIN:
    """A parsed IIN. ``century`` is the first year of the birth century (1800/1900/2000).

    Construct with :func:`parse_iin`; direct construction checks the parts match ``value``.
    """

    value: str
    birth_date: dt.date
    sex: Sex
    century: int
    serial: str

    def __post_init__(self) -> None:
        v = validate_iin(self.value)
        if v != self.value or _iin_fields(v) != (
            self.birth_date,
            self.sex,
            self.century,
            self.serial,
        ):
            raise IdentifierError(
                f"IIN {mask_identifier(self.value)!r}: parts do not match the number",
                code="identifier_structure",
            )

    def __repr__(self) -> str:
        return f"IIN({mask_identifier(self.value)!r})"


@dataclass(frozen=True, slots=True, repr=False)
class BIN:
    """A parsed BIN (registration year: ``YY >= 90`` is 19YY, otherwise 20YY)."""

    value: str
    registration_year: int
    registration_month: int
    entity_type: EntityType
    unit: UnitType
    serial: str

    def __post_init__(self) -> None:
        v = validate_bin(self.value)
        parts = (
            self.registration_year,
            self.registration_month,
            self.entity_type,
            self.unit,
            self.serial,
        )
        if v != self.value or _bin_fields(v) != parts:
            raise IdentifierError(
                f"BIN {mask_identifier(self.value)!r}: parts do not match the number",
                code="identifier_structure",
            )

    def __repr__(self) -> str:
        return f"BIN({mask_identifier(self.value)!r})"


def parse_iin(s: object, *, where: str = "IIN") -> IIN:
    """Validate and split an IIN into its parts."""
    v = validate_iin(s, where=where)
    return IIN(v, *_iin_fields(v))


def parse_bin(s: object, *, where: str = "BIN") -> BIN:
    """Validate and split a BIN into its parts."""
    v = validate_bin(s, where=where)
    return BIN(v, *_bin_fields(v))


def parse_identifier(s: object, *, where: str = "identifier") -> IIN | BIN:
    """Parse an IIN or a BIN, told apart by the 5th digit."""
    v = validate_identifier(s, where=where)
    return IIN(v, *_iin_fields(v)) if v[4] in "0123" else BIN(v, *_bin_fields(v))


# --------------------------------------------------------------------------- vectorised


def _check_digits(first11: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Check digits for rows of 11 digits; 10 where none exists."""
    s1 = (first11 @ _W1_NP) % 11
    s2 = (first11 @ _W2_NP) % 11
    return np.where(s1 == 10, s2, s1)


def _valid_rows(d: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Rows of 12 digits that are a valid IIN or BIN (same rules as the scalar checks)."""
    d = d.astype(np.int32, copy=False)
    ck = _check_digits(d[:, :11])
    ok = (ck != 10) & (ck == d[:, 11])
    month = d[:, 2] * 10 + d[:, 3]
    month_ok = (month >= 1) & (month <= 12)
    c = d[:, 6]
    year = 1800 + 100 * ((c - 1) // 2) + d[:, 0] * 10 + d[:, 1]
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    dim = _DAYS_IN_MONTH[np.where(month_ok, month, 0)] + ((month == 2) & leap)
    day = d[:, 4] * 10 + d[:, 5]
    iin = (c >= 1) & (c <= 6) & month_ok & (day >= 1) & (day <= dim)
    bin_ = month_ok & (d[:, 4] >= 4) & (d[:, 4] <= 6) & (d[:, 5] <= 3)
    return np.asarray(ok & (iin | bin_))


def _rows_to_str(d: npt.NDArray[Any]) -> npt.NDArray[np.str_]:
    # '<U12' is 12 little-endian UCS-4 code points: build them directly (no per-item decode).
    codepoints = np.ascontiguousarray(d, dtype="<u4") + np.uint32(48)
    return codepoints.view("<U12").reshape(len(d))


def _later_duplicates(codes: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
    """Positions that repeat a code seen earlier (the first occurrence is kept)."""
    order = np.argsort(codes)
    same = codes[order[1:]] == codes[order[:-1]]
    if not same.any():
        return np.zeros(0, dtype=np.intp)
    candidates = np.union1d(order[1:][same], order[:-1][same])
    _, first = np.unique(codes[candidates], return_index=True)
    later = np.ones(candidates.size, dtype=bool)
    later[first] = False
    return candidates[later]


def _fail(message: str) -> ValidationError:
    return ValidationError(message, code="generation_argument")


def _generate(
    rng: np.random.Generator,
    n: int,
    unique: bool,
    capacity: int,
    draw: Callable[[int], npt.NDArray[np.int32]],
    what: str,
) -> npt.NDArray[np.str_]:
    if not isinstance(rng, np.random.Generator):
        raise _fail(f"{what}: expected rng to be a numpy.random.Generator, found {type(rng)}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise _fail(f"{what}: expected n to be an integer >= 0, found {n!r}")
    n = int(n)
    if unique and n > capacity // 2:
        raise ValidationError(
            f"{what}: cannot draw {n} distinct identifiers: the requested ranges hold about "
            f"{capacity}; widen them or pass unique=False",
            code="generation_capacity",
        )
    out = _draw_checked(draw, n)
    if not unique:
        return _rows_to_str(out)
    codes = out.astype(np.int64) @ _POW10
    todo = _later_duplicates(codes)
    if todo.size:
        kept = np.ones(n, dtype=bool)
        kept[todo] = False
        seen = np.sort(codes[kept])
    for _ in range(_MAX_ROUNDS):
        if todo.size == 0:
            return _rows_to_str(out)
        rows = _draw_checked(draw, todo.size)
        new = rows.astype(np.int64) @ _POW10
        fresh = seen[np.minimum(np.searchsorted(seen, new), seen.size - 1)] != new
        fresh[_later_duplicates(new)] = False
        out[todo[fresh]] = rows[fresh]
        added = np.sort(new[fresh])
        seen = np.insert(seen, np.searchsorted(seen, added), added)
        todo = todo[~fresh]
    raise ValidationError(f"{what}: could not draw {n} identifiers", code="generation_capacity")


def _draw_checked(draw: Callable[[int], npt.NDArray[np.int32]], k: int) -> npt.NDArray[np.int32]:
    """``k`` rows with their check digit; rows for which none exists are drawn again."""
    rows = draw(k)
    todo = np.arange(k)
    for _ in range(_MAX_ROUNDS):
        part = rows[todo] if todo.size < k else rows
        part[:, 11] = _check_digits(part[:, :11])
        bad = part[:, 11] == 10
        if todo.size < k:
            rows[todo] = part
        todo = todo[bad]
        if todo.size == 0:
            return rows
        rows[todo] = draw(todo.size)
    raise ValidationError(
        "could not draw identifiers with a check digit", code="generation_capacity"
    )


def _year_range(years: tuple[int, int], lo: int, hi: int, name: str) -> tuple[int, int]:
    try:
        y0, y1 = (int(y) for y in years)
    except (TypeError, ValueError):
        raise _fail(f"{name}: expected (first_year, last_year), found {years!r}") from None
    if not lo <= y0 <= y1 <= hi:
        raise _fail(f"{name}: expected {lo} <= first <= last <= {hi}, found {years!r}")
    return y0, y1


def _put(rows: npt.NDArray[np.int32], col: int, width: int, values: npt.NDArray[Any]) -> None:
    values = values.astype(np.int32)
    for k in range(width - 1, -1, -1):
        values, rows[:, col + k] = np.divmod(values, 10)


def random_iins(
    rng: np.random.Generator,
    n: int,
    *,
    birth_years: tuple[int, int] = (1950, 2005),
    unique: bool = True,
) -> npt.NDArray[np.str_]:
    """``n`` valid IINs (``'<U12'``), birth dates uniform over ``birth_years`` (inclusive).

    >>> len(random_iins(np.random.default_rng(0), 3))
    3
    """
    y0, y1 = _year_range(birth_years, 1800, 2099, "birth_years")
    start = np.datetime64(f"{y0:04d}-01-01", "D")
    days = np.arange(start, np.datetime64(f"{y1 + 1:04d}-01-01", "D"))
    ndays = len(days)
    months = days.astype("datetime64[M]")
    year = months.astype("datetime64[Y]").astype(np.int32) + 1970
    table = np.zeros((ndays, 7), dtype=np.int32)  # YYMMDD and the male century digit, per day
    _put(table, 0, 2, year % 100)
    _put(table, 2, 2, months.astype(np.int32) % 12 + 1)
    _put(table, 4, 2, (days - months).astype(np.int32) + 1)
    table[:, 6] = (year // 100 - 18) * 2 + 1

    def draw(k: int) -> npt.NDArray[np.int32]:
        rows = np.zeros((k, 12), dtype=np.int32)
        rows[:, :7] = table[rng.integers(0, ndays, k)]
        rows[:, 6] += rng.integers(0, 2, k, dtype=np.int32)
        _put(rows, 7, 4, rng.integers(0, 10_000, k, dtype=np.int32))
        return rows

    return _generate(rng, n, unique, ndays * 2 * 10_000, draw, "random_iins")


def _probs(
    given: Mapping[Any, float] | None,
    members: Sequence[enum.Enum],
    default: Sequence[float],
    name: str,
) -> npt.NDArray[np.float64]:
    if given is None:
        return np.array(default, dtype=np.float64)
    unknown = [k for k in given if k not in members]
    if unknown:
        allowed = ", ".join(str(m) for m in members)
        raise _fail(f"{name}: expected keys among {allowed}, found {unknown!r}")
    p = np.array([float(given.get(m, 0.0)) for m in members], dtype=np.float64)
    if not np.all(np.isfinite(p)) or np.any(p < 0) or abs(p.sum() - 1.0) > 1e-9:
        raise _fail(f"{name}: expected non-negative probabilities summing to 1, found {p}")
    return p


def random_bins(
    rng: np.random.Generator,
    n: int,
    *,
    years: tuple[int, int] = (1995, 2026),
    entity_type_probs: Mapping[EntityType, float] | None = None,
    unit_probs: Mapping[UnitType, float] | None = None,
    unique: bool = True,
) -> npt.NDArray[np.str_]:
    """``n`` valid BINs (``'<U12'``), registration month uniform over ``years`` (inclusive).

    ``years`` must lie in 1990-2089 so that the two-digit year reads back the same.
    Default mix: 90% resident, 3% non-resident, 7% joint IE; 85% head offices, 10%
    branches, 3% representative offices, 2% peasant farms.
    """
    y0, y1 = _year_range(years, 1990, 2089, "years")
    etypes, units = list(EntityType), list(UnitType)
    pe = _probs(entity_type_probs, etypes, (0.90, 0.03, 0.07), "entity_type_probs")
    pu = _probs(unit_probs, units, (0.85, 0.10, 0.03, 0.02), "unit_probs")
    edigits = np.array([e.digit for e in etypes], dtype=np.int32)
    udigits = np.array([u.digit for u in units], dtype=np.int32)
    nmonths = (y1 - y0 + 1) * 12

    def draw(k: int) -> npt.NDArray[np.int32]:
        ym = rng.integers(0, nmonths, k, dtype=np.int32)
        rows = np.zeros((k, 12), dtype=np.int32)
        _put(rows, 0, 2, (y0 + ym // 12) % 100)
        _put(rows, 2, 2, ym % 12 + 1)
        rows[:, 4] = rng.choice(edigits, size=k, p=pe)
        rows[:, 5] = rng.choice(udigits, size=k, p=pu)
        _put(rows, 6, 5, rng.integers(0, 100_000, k, dtype=np.int32))
        return rows

    capacity = nmonths * int((pe > 0).sum()) * int((pu > 0).sum()) * 100_000
    return _generate(rng, n, unique, capacity, draw, "random_bins")


# --------------------------------------------------------------------------- scanning


def _run_hits(run: str) -> Iterator[str]:
    if len(run) > _LONG_RUN:
        raw = np.frombuffer(run.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
        windows = np.lib.stride_tricks.sliding_window_view(raw, 12)
        for hit in np.flatnonzero(_valid_rows(windows)):
            yield run[hit : hit + 12]
        return
    for i in range(len(run) - 11):
        if is_valid_identifier(run[i : i + 12]):
            yield run[i : i + 12]


def find_identifiers(text: str) -> list[str]:
    """Every valid IIN or BIN written in ``text``, in order of appearance, repeats kept.

    Looks at every maximal run of ASCII digits of length 12 or more and checks each
    12-digit window of it: an identifier glued to other digits still leaks, so a run of
    13+ digits is scanned by sliding window (at the price of rare false positives in long
    numbers; a scan for depersonalisation must fail closed). Identifiers split by spaces
    or dashes are not found.
    """
    if not isinstance(text, str):
        raise IdentifierError(
            f"find_identifiers: expected text (str), found {type(text).__name__}",
            code="identifier_type",
        )
    return [hit for m in _DIGIT_RUN.finditer(text) for hit in _run_hits(m.group())]


def contains_identifier(text: str) -> bool:
    """True when :func:`find_identifiers` would find anything (stops at the first hit)."""
    if not isinstance(text, str):
        return False
    return any(True for m in _DIGIT_RUN.finditer(text) for _ in _run_hits(m.group()))


def _scan_python(value: object) -> bool:
    if value is None or isinstance(value, bool):
        return False
    if isinstance(value, int | np.integer):
        v = abs(int(value))
        return is_valid_identifier(f"{v:012d}") if v < 10**12 else contains_identifier(str(v))
    if isinstance(value, float | np.floating):
        return bool(np.isfinite(value)) and _scan_python(int(value))
    return contains_identifier(value if isinstance(value, str) else str(value))


def _mask_numbers(values: npt.NDArray[Any], valid: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    out = np.zeros(len(values), dtype=bool)
    if values.dtype.kind == "f":
        valid = valid & np.isfinite(values) & (np.abs(values) < 2.0**62)
        codes = np.abs(np.trunc(np.where(valid, values, 0.0))).astype(np.int64)
    else:
        codes = np.abs(values.astype(np.int64))
        valid = valid & (codes >= 0)  # abs() of the most negative int64 stays negative
    small = valid & (codes < 10**12)
    d = (codes[small, None] // _POW10) % 10
    out[small] = _valid_rows(d)
    for i in np.flatnonzero(valid & ~small):
        out[i] = contains_identifier(str(int(codes[i])))
    return out


def _mask_strings(arr: pa.Array) -> npt.NDArray[np.bool_]:
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.large_string())
    n = len(arr)
    out = np.zeros(n, dtype=bool)
    if n == 0 or arr.null_count == n:
        return out
    present = ~arr.is_null().to_numpy(zero_copy_only=False)
    off_type = np.int32 if pa.types.is_string(arr.type) else np.int64
    buffers = arr.buffers()
    raw_offsets = np.frombuffer(buffers[1], dtype=off_type)[arr.offset : arr.offset + n + 1]
    offsets: npt.NDArray[np.int64] = raw_offsets.astype(np.int64)
    lengths = np.diff(offsets)  # in UTF-8 bytes: only all-ASCII values can be 12 digits
    exact = np.flatnonzero(present & (lengths == 12))
    if exact.size:
        data = np.frombuffer(buffers[2], dtype=np.uint8)
        starts = offsets[exact]
        if starts[-1] - starts[0] == 12 * (exact.size - 1):  # contiguous: no copy needed
            block = data[starts[0] : starts[0] + 12 * exact.size].reshape(-1, 12)
        else:
            block = data[starts[:, None] + np.arange(12)]
        digits = block.astype(np.int32) - 48
        all_digits = ((digits >= 0) & (digits <= 9)).all(axis=1)
        out[exact] = all_digits & _valid_rows(digits)
    longer = np.flatnonzero(present & (lengths > 12))
    if longer.size:
        sub = arr.take(pa.array(longer))
        runs = pc.match_substring_regex(sub, r"[0-9]{12}").to_numpy(zero_copy_only=False)
        texts = sub.filter(pa.array(runs)).to_pylist()
        out[longer[runs]] = [contains_identifier(t) for t in texts]
    return out


def _mask_arrow(arr: pa.Array) -> npt.NDArray[np.bool_]:
    t = arr.type
    if pa.types.is_dictionary(t):
        inner = _mask_arrow(arr.dictionary)
        idx = arr.indices.to_numpy(zero_copy_only=False)
        valid = ~arr.is_null().to_numpy(zero_copy_only=False)
        return np.asarray(valid & inner[np.where(valid, idx, 0).astype(np.int64)])
    if pa.types.is_string(t) or pa.types.is_large_string(t) or str(t) == "string_view":
        return _mask_strings(arr)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        valid = ~arr.is_null().to_numpy(zero_copy_only=False)
        nums = arr if not pa.types.is_decimal(t) else arr.cast(pa.float64(), safe=False)
        raw = nums.fill_null(0).to_numpy(zero_copy_only=False)
        if pa.types.is_unsigned_integer(t):
            raw = np.minimum(raw, np.iinfo(np.int64).max).astype(np.int64)
        return _mask_numbers(raw, valid)
    if pa.types.is_boolean(t) or pa.types.is_temporal(t) or pa.types.is_null(t):
        return np.zeros(len(arr), dtype=bool)
    raise IdentifierError(
        f"identifier_mask: expected a text or numeric column, found Arrow type {t}",
        code="identifier_type",
    )


def identifier_mask(
    values: Sequence[object] | pa.Array | pa.ChunkedArray | npt.NDArray[Any],
) -> npt.NDArray[np.bool_]:
    """For each value, whether it holds a valid IIN or BIN (numpy bool array).

    Text is scanned like :func:`find_identifiers` (exact 12-digit values are checked with
    numpy; only values with a longer digit run go through Python). Integers and floats
    are read as their integer part, zero-padded to 12 digits, since a leading-zero IIN
    stored as a number loses its first digit. Nulls, booleans and dates are never
    identifiers; other Arrow types (binary, nested) raise ``identifier_type``.
    """
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return _mask_column(values)
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
        numbers = values.astype(np.float64 if values.dtype.kind == "f" else np.int64)
        return _mask_numbers(numbers, np.ones(len(values), dtype=bool))
    try:
        return _mask_column(pa.array(values if isinstance(values, np.ndarray) else list(values)))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError, IdentifierError):
        return np.array([_scan_python(v) for v in values], dtype=bool)


def _mask_column(values: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    if isinstance(values, pa.ChunkedArray):
        parts = [_mask_arrow(c) for c in values.chunks]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)
    return _mask_arrow(values)
