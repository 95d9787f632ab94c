"""k-anonymity and the value transforms of depersonalisation (DESIGN section 5).

Quasi-identifiers (region, activity, size, dates) are generalised along a hierarchy per
*kind* until every combination of their values is shared by at least ``k`` entities; rows
still in smaller groups then have their quasi-identifiers suppressed (``"*"``). The other
transforms: :func:`coarsen_dates` (day to month), :func:`top_bottom_code` (clip extreme
amounts to quantiles) and :func:`drop_columns` (direct identifiers).

Hierarchies (level names as reported):

============ ===========================================================================
kind         levels
============ ===========================================================================
``kato``     ``full`` (9 digits) → ``district`` (4) → ``region`` (2) → ``*``
``oked``     ``full`` (5 digits) → ``division`` (2) → ``section`` (letter A-U) → ``*``
``code``     ``full`` → ``prefix2`` (first 2 characters) → ``*``
``date``     ``day`` → ``month`` (``2023-07``) → ``quarter`` (``2023-Q3``) → ``year`` → ``*``
``size``     numbers: ``value`` → ``band`` (``16-50``) → ``class`` (micro, small, medium,
             large) → ``*``; strings: ``full`` → ``sme`` (micro/small/medium → ``sme``) → ``*``
``category`` ``full`` → ``*``
============ ===========================================================================

Every generalised quasi-identifier column comes out as an Arrow string column. Null stays
null until the ``*`` level, where every cell is ``*``.

Example::

    >>> import pyarrow as pa
    >>> t = pa.table({"kato": ["751110000", "751120000", "751130000"] * 2})
    >>> out, steps = generalise(t, {"kato": "kato"}, k=3)
    >>> out.column("kato").to_pylist()[:3], steps.levels, steps.k_achieved
    (['7511', '7511', '7511'], {'kato': 'district'}, 6)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import RuntimeInputError

__all__ = [
    "KINDS",
    "OKED_SECTIONS",
    "SUPPRESSED",
    "GeneralisationSteps",
    "coarsen_dates",
    "drop_columns",
    "generalise",
    "oked_section",
    "top_bottom_code",
]

#: The kinds of quasi-identifier that :func:`generalise` knows how to generalise.
KINDS: tuple[str, ...] = ("category", "code", "date", "kato", "oked", "size")
#: The value a suppressed (or fully generalised) quasi-identifier cell holds.
SUPPRESSED = "*"

# OKED follows NACE Rev. 2: section letter -> the range of 2-digit divisions it covers.
_SECTION_RANGES: tuple[tuple[str, int, int], ...] = (
    ("A", 1, 3), ("B", 5, 9), ("C", 10, 33), ("D", 35, 35), ("E", 36, 39), ("F", 41, 43),
    ("G", 45, 47), ("H", 49, 53), ("I", 55, 56), ("J", 58, 63), ("K", 64, 66), ("L", 68, 68),
    ("M", 69, 75), ("N", 77, 82), ("O", 84, 84), ("P", 85, 85), ("Q", 86, 88), ("R", 90, 93),
    ("S", 94, 96), ("T", 97, 98), ("U", 99, 99),
)  # fmt: skip
#: 2-digit OKED division (``"46"``) -> section letter (``"G"``).
OKED_SECTIONS: Mapping[str, str] = {
    f"{d:02d}": letter for letter, lo, hi in _SECTION_RANGES for d in range(lo, hi + 1)
}

# Size bands nest inside the size classes of the Entrepreneurial Code (by headcount:
# micro <= 15, small <= 100, medium <= 250, large above).
_BAND_LOWER = np.array([0, 1, 6, 16, 51, 101, 251, 501, 1001, 5001], dtype=np.float64)
_BAND_LABELS = ("0", "1-5", "6-15", "16-50", "51-100", "101-250", "251-500", "501-1000",
                "1001-5000", "5001+")  # fmt: skip
_CLASS_LOWER = np.array([0, 16, 101, 251], dtype=np.float64)
_CLASS_LABELS = ("micro", "small", "medium", "large")
_SME = {"micro": "sme", "small": "sme", "medium": "sme"}
_DATE_LEVELS = ("month", "quarter", "year")


@dataclass(frozen=True, slots=True)
class GeneralisationSteps:
    """What :func:`generalise` did.

    ``levels``: quasi-identifier column -> level reached (``"district"``, ``"month"``...);
    ``history``: the steps in order, as ``"column:level"``; ``suppressed_cells``: column ->
    cells set to ``*`` by suppression; ``suppressed_rows``: rows whose quasi-identifiers were
    suppressed; ``k_achieved``: the smallest group (in entities) over rows not fully
    suppressed.
    """

    levels: dict[str, str]
    history: tuple[str, ...]
    suppressed_cells: dict[str, int]
    suppressed_rows: int
    k_achieved: int


def oked_section(division: str) -> str | None:
    """The section letter of a 2-digit OKED division, or None if there is none.

    >>> oked_section("46"), oked_section("04")
    ('G', None)
    """
    return OKED_SECTIONS.get(division)


# -- small helpers ----------------------------------------------------------------------


def _combined(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def _require_columns(table: pa.Table, names: Iterable[str], what: str) -> None:
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise RuntimeInputError(
            f"{what}: column(s) {', '.join(map(repr, missing))} not in the table; "
            f"found columns: {', '.join(table.column_names)}",
            code="missing_column",
        )


def _is_date(tp: pa.DataType) -> bool:
    return bool(pa.types.is_date(tp) or pa.types.is_timestamp(tp))


def _to_date32(arr: pa.Array, column: str) -> pa.Array:
    if pa.types.is_date32(arr.type):
        return arr
    tp = arr.type
    if (
        _is_date(tp)
        or pa.types.is_null(tp)
        or pa.types.is_string(tp)
        or pa.types.is_large_string(tp)
    ):
        try:
            return pc.cast(arr, pa.date32())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    raise RuntimeInputError(
        f"column {column!r}: expected dates (date32, date64, timestamp or 'YYYY-MM-DD' "
        f"strings), found {arr.type}",
        code="not_a_date",
    )


def _as_string(arr: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if not pa.types.is_string(arr.type):
        arr = pc.cast(arr, pa.string())
    return pc.utf8_trim_whitespace(arr)


def _all_star(arr: pa.Array) -> pa.Array:
    return pa.array(np.full(len(arr), SUPPRESSED, dtype=object), type=pa.string())


def _map_strings(
    arr: pa.Array, mapping: Mapping[str, str], fallback: Callable[[str], str]
) -> pa.Array:
    """Map each distinct string through ``mapping`` (or ``fallback(value)``), vectorised."""
    enc = pc.dictionary_encode(arr)
    values = enc.dictionary.to_pylist()
    mapped = [mapping.get(v) or fallback(v) for v in values]
    return pc.take(pa.array(mapped, type=pa.string()), enc.indices)


def _buckets(values: np.ndarray, lower: np.ndarray, labels: Sequence[str]) -> pa.Array:
    valid = ~np.isnan(values)
    idx = np.searchsorted(lower, np.where(valid, values, 0.0), side="right") - 1
    names = np.array(["<0", *labels], dtype=object)
    out = names[idx + 1]
    return pa.array(out, type=pa.string(), mask=~valid)


# -- hierarchies --------------------------------------------------------------------------


def _hierarchy(arr: pa.Array, kind: str, column: str) -> list[tuple[str, pa.Array]]:
    """Every level of ``kind`` for the values ``arr``: (level name, string array)."""
    if kind == "kato":
        s = _as_string(arr)
        return [
            ("full", s),
            ("district", pc.utf8_slice_codeunits(s, 0, 4)),
            ("region", pc.utf8_slice_codeunits(s, 0, 2)),
            (SUPPRESSED, _all_star(s)),
        ]
    if kind == "code":
        s = _as_string(arr)
        return [("full", s), ("prefix2", pc.utf8_slice_codeunits(s, 0, 2)),
                (SUPPRESSED, _all_star(s))]  # fmt: skip
    if kind == "oked":
        s = pc.replace_substring_regex(_as_string(arr), r"[^0-9A-Za-z]", "")
        division = pc.utf8_slice_codeunits(s, 0, 2)
        section = _map_strings(division, OKED_SECTIONS, lambda v: v[:1])
        return [("full", s), ("division", division), ("section", section),
                (SUPPRESSED, _all_star(s))]  # fmt: skip
    if kind == "date":
        d = _to_date32(arr, column)
        year = pc.cast(pc.year(d), pa.string())
        levels = [
            ("day", pc.strftime(d, "%Y-%m-%d")),
            ("month", pc.strftime(d, "%Y-%m")),
            ("quarter", pc.binary_join_element_wise(year, pc.cast(pc.quarter(d), pa.string()),
                                                    "-Q")),
            ("year", year),
            (SUPPRESSED, _all_star(d)),
        ]  # fmt: skip
        day = pc.day(d)
        if d.null_count < len(d) and pc.all(pc.equal(day, 1)).as_py():
            levels = levels[1:]  # already coarsened to months: nothing is lost
        return levels
    if kind == "size":
        if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
            values = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
            return [
                ("value", _as_string(arr)),
                ("band", _buckets(values, _BAND_LOWER, _BAND_LABELS)),
                ("class", _buckets(values, _CLASS_LOWER, _CLASS_LABELS)),
                (SUPPRESSED, _all_star(arr)),
            ]
        s = _as_string(arr)
        return [("full", s), ("sme", _map_strings(s, _SME, lambda v: v)),
                (SUPPRESSED, _all_star(s))]  # fmt: skip
    if kind == "category":
        s = _as_string(arr)
        return [("full", s), (SUPPRESSED, _all_star(s))]
    raise RuntimeInputError(
        f"quasi-identifier {column!r}: expected a kind among {', '.join(KINDS)}, found {kind!r}",
        code="bad_quasi_kind",
    )


def _codes(arr: pa.Array) -> tuple[np.ndarray, int]:
    """Integer codes of the distinct values (null is a value of its own), and their count."""
    enc = pc.dictionary_encode(arr, null_encoding="encode")
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return codes, len(enc.dictionary)


def _group_ids(columns: Sequence[tuple[np.ndarray, int]], n: int) -> np.ndarray:
    gid = np.zeros(n, dtype=np.int64)
    span = 1
    for codes, card in columns:
        card = max(card, 1)
        if span * card >= 2**62:
            _, gid = np.unique(gid, return_inverse=True)
            gid = gid.astype(np.int64, copy=False)
            span = int(gid.max()) + 1 if n else 1
        gid = gid * card + codes
        span *= card
    _, gid = np.unique(gid, return_inverse=True)
    return gid.astype(np.int64, copy=False).reshape(-1)


def _group_sizes(gid: np.ndarray, entity: np.ndarray | None) -> np.ndarray:
    """Per row: how many entities (or rows, without ``entity``) share the row's group."""
    if len(gid) == 0:
        return np.zeros(0, dtype=np.int64)
    if entity is None:
        counts = np.bincount(gid)
    else:
        width = int(entity.max()) + 1
        pairs = np.sort(gid * width + entity)  # sorting beats np.unique's hashing here
        first = np.ones(len(pairs), dtype=bool)
        first[1:] = pairs[1:] != pairs[:-1]
        counts = np.bincount(pairs[first] // width, minlength=int(gid.max()) + 1)
    sizes: np.ndarray = counts[gid]
    return sizes


# -- generalise ---------------------------------------------------------------------------


def generalise(
    table: pa.Table,
    quasi: Mapping[str, str],
    k: int = 5,
    *,
    key: str | None = None,
    max_suppressed: float = 0.05,
) -> tuple[pa.Table, GeneralisationSteps]:
    """Generalise the quasi-identifiers ``quasi`` (column -> kind) of ``table`` to ``k``.

    Datafly-style: while more than ``max_suppressed`` of the rows sit in groups of fewer
    than ``k`` entities, take the column with the most distinct values at its current
    level and move it one level up its hierarchy (to the next level that merges values).
    Then the quasi-identifiers of the rows still in small groups are set to ``*``. With
    ``key``, group sizes count distinct entities (keys), not rows.

    Returns the new table (quasi-identifier columns as strings, other columns untouched,
    column order kept) and the :class:`GeneralisationSteps`.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise RuntimeInputError(f"k: expected an integer >= 1, found {k!r}", code="bad_k")
    if not 0.0 <= max_suppressed < 1.0:
        raise RuntimeInputError(
            f"max_suppressed: expected a fraction in [0, 1), found {max_suppressed!r}",
            code="bad_parameter",
        )
    _require_columns(table, [*quasi, *([key] if key else [])], "generalise")
    n = table.num_rows
    entity: np.ndarray | None = None
    if key:
        entity, n_entities = _codes(_combined(table.column(key)))
        if n_entities == n:
            entity = None  # one row per entity: counting rows is counting entities

    cols = list(quasi)
    levels: dict[str, list[tuple[str, pa.Array]]] = {}
    codes: dict[str, list[tuple[np.ndarray, int]]] = {}
    for c in cols:
        levels[c] = _hierarchy(_combined(table.column(c)), quasi[c], c)
        codes[c] = [_codes(arr) for _, arr in levels[c]]
    at = dict.fromkeys(cols, 0)
    history: list[str] = []
    budget = math.floor(max_suppressed * n)

    def sizes_now() -> np.ndarray:
        gid = _group_ids([codes[c][at[c]] for c in cols], n)
        return _group_sizes(gid, entity)

    sizes = sizes_now()
    while int(np.count_nonzero(sizes < k)) > budget:
        movable = [c for c in cols if at[c] < len(levels[c]) - 1]
        if not movable:
            break
        col = max(movable, key=lambda c: codes[c][at[c]][1])  # first such column on ties
        current = codes[col][at[col]][1]
        nxt = at[col] + 1
        while nxt < len(levels[col]) - 1 and codes[col][nxt][1] >= current:
            nxt += 1  # a level that merges nothing costs detail for no gain: skip it
        at[col] = nxt
        history.append(f"{col}:{levels[col][nxt][0]}")
        sizes = sizes_now()

    small = sizes < k
    suppressed_rows = int(np.count_nonzero(small))
    small_arr = pa.array(small)
    out = table
    suppressed_cells: dict[str, int] = {}
    final_codes: list[tuple[np.ndarray, int]] = []
    star_all = np.ones(n, dtype=bool)
    for c in cols:
        rendered = levels[c][at[c]][1]
        is_star = pc.fill_null(pc.equal(rendered, SUPPRESSED), False)
        changed = pc.and_(small_arr, pc.invert(is_star))
        suppressed_cells[c] = int(pc.sum(pc.cast(changed, pa.int64())).as_py() or 0)
        if suppressed_rows:
            rendered = pc.if_else(small_arr, SUPPRESSED, rendered)
        final = _codes(rendered)
        final_codes.append(final)
        star_all &= pc.fill_null(pc.equal(rendered, SUPPRESSED), False).to_numpy(
            zero_copy_only=False
        )
        out = out.set_column(out.column_names.index(c), pa.field(c, pa.string()), rendered)

    gid = _group_ids(final_codes, n)
    final_sizes = _group_sizes(gid, entity)
    if n == 0:
        k_achieved = 0
    elif cols and bool(np.any(~star_all)):
        k_achieved = int(final_sizes[~star_all].min())
    else:
        k_achieved = int(final_sizes.min())
    steps = GeneralisationSteps(
        levels={c: levels[c][at[c]][0] for c in cols},
        history=tuple(history),
        suppressed_cells=suppressed_cells,
        suppressed_rows=suppressed_rows,
        k_achieved=k_achieved,
    )
    return out, steps


# -- other transforms ---------------------------------------------------------------------


def top_bottom_code(
    table: pa.Table,
    columns: Sequence[str],
    lower_q: float = 0.01,
    upper_q: float = 0.99,
) -> tuple[pa.Table, dict[str, int]]:
    """Clip each numeric column in ``columns`` to its ``lower_q`` and ``upper_q`` quantiles.

    Returns the new table (coded columns as float64; null and NaN stay as they were) and
    column -> number of cells changed. Quantiles are taken over the finite values.

    >>> import pyarrow as pa
    >>> t = pa.table({"x": [float(i) for i in range(101)]})
    >>> out, counts = top_bottom_code(t, ["x"], 0.05, 0.95)
    >>> out.column("x").to_pylist()[:2], counts
    ([5.0, 5.0], {'x': 10})
    """
    if not 0.0 <= lower_q < upper_q <= 1.0:
        raise RuntimeInputError(
            f"top_bottom_code: expected 0 <= lower_q < upper_q <= 1, found "
            f"lower_q={lower_q!r}, upper_q={upper_q!r}",
            code="bad_parameter",
        )
    _require_columns(table, columns, "top_bottom_code")
    counts: dict[str, int] = {}
    out = table
    for c in columns:
        arr = _combined(table.column(c))
        if not (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)
                or pa.types.is_decimal(arr.type)):  # fmt: skip
            raise RuntimeInputError(
                f"top_bottom_code: column {c!r}: expected a numeric column, found {arr.type}",
                code="not_numeric",
            )
        values = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False).copy()
        null = arr.is_null().to_numpy(zero_copy_only=False)
        finite = np.isfinite(values) & ~null
        changed = 0
        if finite.any():
            lo, hi = np.quantile(values[finite], [lower_q, upper_q])
            live = ~null & ~np.isnan(values)
            outside = live & ((values < lo) | (values > hi))
            changed = int(np.count_nonzero(outside))
            values[live] = np.clip(values[live], lo, hi)
        counts[c] = changed
        coded = pa.array(values, type=pa.float64(), mask=null)
        out = out.set_column(out.column_names.index(c), pa.field(c, pa.float64()), coded)
    return out, counts


def coarsen_dates(
    table: pa.Table, columns: Sequence[str] | None = None, level: str = "month"
) -> tuple[pa.Table, tuple[str, ...]]:
    """Truncate date columns to the first day of their month, quarter or year.

    ``columns=None`` coarsens every date and timestamp column. Coarsened columns come out
    as date32 (timestamps lose their time of day). Returns the table and the names of the
    coarsened columns.

    >>> import datetime as dt, pyarrow as pa
    >>> out, cols = coarsen_dates(pa.table({"d": [dt.date(2023, 7, 15)]}))
    >>> out.column("d").to_pylist(), cols
    ([datetime.date(2023, 7, 1)], ('d',))
    """
    if level not in _DATE_LEVELS:
        raise RuntimeInputError(
            f"coarsen_dates: expected level one of {', '.join(_DATE_LEVELS)}, found {level!r}",
            code="bad_parameter",
        )
    if columns is None:
        columns = [f.name for f in table.schema if _is_date(f.type)]
    _require_columns(table, columns, "coarsen_dates")
    out = table
    for c in columns:
        arr = _combined(table.column(c))
        if not _is_date(arr.type):
            raise RuntimeInputError(
                f"coarsen_dates: column {c!r}: expected a date or timestamp column, "
                f"found {arr.type}",
                code="not_a_date",
            )
        floored = pc.cast(pc.floor_temporal(pc.cast(arr, pa.date32()), unit=level), pa.date32())
        out = out.set_column(out.column_names.index(c), pa.field(c, pa.date32()), floored)
    return out, tuple(columns)


def drop_columns(table: pa.Table, columns: Iterable[str]) -> tuple[pa.Table, tuple[str, ...]]:
    """Remove ``columns`` that are present; returns the table and the names removed.

    Names not in the table are ignored (a source's catalogue lists every direct
    identifier; a given table may carry only some of them).
    """
    present = tuple(dict.fromkeys(c for c in columns if c in table.column_names))
    return table.drop_columns(list(present)), present
