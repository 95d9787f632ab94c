"""Kazakhstan IIN and BIN: validation, parsing, masking and scanning text.

Generation of valid ones for synthetic data is in :mod:`.identifier_gen`; scanning whole
columns (Arrow or numpy) in :mod:`.identifier_columns`.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import IdentifierError

__all__ = [
    "BIN",
    "IIN",
    "EntityType",
    "Sex",
    "UnitType",
    "check_digit",
    "contains_identifier",
    "find_identifiers",
    "is_valid_bin",
    "is_valid_identifier",
    "is_valid_iin",
    "mask_identifier",
    "parse_bin",
    "parse_identifier",
    "parse_iin",
    "validate_bin",
    "validate_identifier",
    "validate_iin",
]

_W1 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
_W2 = (3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2)
_W1_NP = np.array(_W1, dtype=np.int32)
_W2_NP = np.array(_W2, dtype=np.int32)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int16)
#: Weighted sums of 11 positions of -48 to 207 (bytes minus "0") lie in
#: [-48 * 66, 207 * 66]: modulo 11 through a table, offset to start at 0.
_MOD11_OFFSET = 48 * 66
_MOD11 = (np.arange(-_MOD11_OFFSET, 207 * 66 + 1) % 11).astype(np.int16)
_POW10 = 10 ** np.arange(11, -1, -1, dtype=np.int64)
_DIGIT_RUN = re.compile(r"[0-9]{12,}")
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
    return _valid_columns(np.asarray(d).T)


def _valid_columns(c: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """:func:`_valid_rows` of the digits given position by position (``[12, n]``).

    Each position is a contiguous int16 row, so every step is one pass over n small
    integers: several times faster than the same rules on an ``[n, 12]`` matrix. Any
    value of -48 to 207 (a byte minus ``"0"``) gives some answer without overflowing;
    callers rule out rows that are not all digits."""
    d = [np.ascontiguousarray(row, dtype=np.int16) for row in c]
    check = _MOD11[_weighted(d, _W1)]
    second = _MOD11[_weighted(d, _W2)]
    check = np.where(check == 10, second, check)
    ok = (check != 10) & (check == d[11])
    month = d[2] * 10 + d[3]
    month_ok = (month >= 1) & (month <= 12)
    century = d[6]
    # The century's first year is a multiple of 400 only for 2000 (digits 5 and 6), and
    # of 4 always: so the year's leap rule needs only its last two digits.
    yy = d[0] * 10 + d[1]
    leap = ((yy & 3) == 0) & ((yy != 0) | (century == 5) | (century == 6))
    dim = _DAYS_IN_MONTH[np.where(month_ok, month, 0)] + ((month == 2) & leap)
    day = d[4] * 10 + d[5]
    iin = (century >= 1) & (century <= 6) & month_ok & (day >= 1) & (day <= dim)
    bin_ = month_ok & (d[4] >= 4) & (d[4] <= 6) & (d[5] <= 3)
    return np.asarray(ok & (iin | bin_))


def _weighted(d: list[npt.NDArray[np.int16]], weights: tuple[int, ...]) -> npt.NDArray[np.int32]:
    """Index into :data:`_MOD11` of the weighted sum of the first 11 positions."""
    total = np.full(len(d[0]), _MOD11_OFFSET, dtype=np.int32)
    step = np.empty(len(d[0]), dtype=np.int16)
    for row, w in zip(d, weights, strict=False):
        np.multiply(row, w, out=step)
        total += step
    return total


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
