"""Fast, vectorised generation of valid IINs and BINs for synthetic data.

Every output is valid by the rules of :mod:`.identifiers` (the same vectorised check).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import ValidationError
from .identifiers import _POW10, EntityType, UnitType, _check_digits

__all__ = ["random_bins", "random_iins"]

_MAX_ROUNDS = 500


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
