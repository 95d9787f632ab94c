"""Feature encoding shared by the lab (training) and the bodies (scoring): numpy and pyarrow only.

A :class:`FeatureSpec` lists, per output column of the float32 model matrix, the source
and field it comes from, its kind and its encoding. The lab fits it on the training table
(:func:`fit_source_features`) and ships it with the model; a body replays exactly the
same encoding inside its perimeter with :meth:`FeatureSpec.transform`. No row is ever
dropped: a missing value becomes NaN (the models handle NaN).

Encodings:

- ``numeric``: the value as float32; null → NaN.
- ``bool``: 1.0 / 0.0; null → NaN.
- ``date``: months since 2000-01 (:data:`EPOCH_YEAR`), from a date column or from a
  generalised string ``YYYY-MM-DD``, ``YYYY-MM``, ``YYYY-Qn`` (middle month of the quarter)
  or ``YYYY`` (middle of the year); ``*`` (suppressed) and null → NaN.
- ``category``: the ordinal code of the value by training-set frequency (most frequent
  0, then 1, ...; ties by value); values rarer than ``min_share`` at training and values
  never seen share the code ``len(categories)``; null and ``*`` → NaN.

A column is looked up as ``SOURCE__field`` (the lab's training table) or, failing that,
as ``field`` (a body's own table).

>>> import pyarrow as pa
>>> from sample_protocol.catalogue import get_source
>>> t = pa.table({"STATS__size_class": ["micro", "micro", "small", None]})
>>> spec = fit_source_features(t, get_source("STATS"))
>>> [c.encoding.value for c in spec.columns], spec.transform(t)[:, 0].tolist()
(['category'], [0.0, 0.0, 1.0, nan])
>>> FeatureSpec.from_json(spec.to_json()) == spec
True
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from .catalogue import SourceSpec
from .errors import ValidationError
from .serde import Record

__all__ = [
    "DEFAULT_MIN_SHARE",
    "EPOCH_YEAR",
    "SEPARATOR",
    "SUPPRESSED",
    "FeatureColumn",
    "FeatureKind",
    "FeatureSpec",
    "concat_specs",
    "date_string_to_months",
    "fit_source_features",
]

#: Dates are encoded as months since January of this year.
EPOCH_YEAR = 2000
#: A category seen in less than this share of training rows shares the "other" code.
DEFAULT_MIN_SHARE = 0.01
#: Between the source code and the field name in the lab's training table.
SEPARATOR = "__"
#: The value depersonalisation writes for a suppressed cell.
SUPPRESSED = "*"

_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
_YEAR = re.compile(r"^(\d{4})$")

Matrix = npt.NDArray[np.float32]


class FeatureKind(enum.StrEnum):
    """How one column is encoded."""

    NUMERIC = "numeric"
    DATE = "date"
    CATEGORY = "category"
    BOOL = "bool"


@dataclass(frozen=True, slots=True)
class FeatureColumn(Record):
    """One output column: where it comes from and how it is encoded.

    ``categories`` (category kind only): the frequent training values, the code of each
    being its position; every other value gets ``len(categories)``.
    """

    source: str
    field: str
    encoding: FeatureKind
    categories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.encoding is not FeatureKind.CATEGORY and self.categories:
            raise ValidationError(
                f"feature {self.name}: 'categories' applies to category features only, "
                f"found it on a {self.encoding.value} feature",
                code="bad_feature_spec",
            )
        if len(set(self.categories)) != len(self.categories):
            raise ValidationError(
                f"feature {self.name}: categories must be unique, found {list(self.categories)}",
                code="bad_feature_spec",
            )

    @property
    def name(self) -> str:
        """``SOURCE__field``."""
        return f"{self.source}{SEPARATOR}{self.field}"

    @property
    def other_code(self) -> int:
        """The code shared by rare and unseen categories."""
        return len(self.categories)


@dataclass(frozen=True, slots=True)
class FeatureSpec(Record):
    """The ordered output columns of a model's input matrix."""

    columns: tuple[FeatureColumn, ...]

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        names = [c.name for c in self.columns]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValidationError(
                f"feature spec: column(s) listed twice: {', '.join(dup)}",
                code="bad_feature_spec",
            )

    @property
    def names(self) -> tuple[str, ...]:
        """``SOURCE__field`` of every output column, in order."""
        return tuple(c.name for c in self.columns)

    @property
    def sources(self) -> tuple[str, ...]:
        """The sources the columns come from, in first-seen order."""
        return tuple(dict.fromkeys(c.source for c in self.columns))

    def __len__(self) -> int:
        return len(self.columns)

    def transform(self, table: pa.Table, *, allow_missing: bool = False) -> Matrix:
        """The float32 matrix ``[table.num_rows, len(self)]``, one row per table row.

        A column absent from ``table`` raises :class:`ValidationError` (code
        ``missing_feature_column``), or becomes all NaN with ``allow_missing=True``.
        """
        n = table.num_rows
        names = frozenset(table.column_names)
        encoded: list[npt.NDArray[np.floating[Any]]] = []
        for col in self.columns:
            array = _find_column(table, col, names)
            if array is None:
                if allow_missing:
                    encoded.append(np.full(n, np.nan, dtype=np.float32))
                    continue
                raise ValidationError(
                    f"feature {col.name}: expected a column {col.name!r} or {col.field!r} in "
                    f"the table, found none (columns: {', '.join(table.column_names[:20])})",
                    code="missing_feature_column",
                )
            encoded.append(_encode(array, col))
        if not encoded:
            return np.empty((n, 0), dtype=np.float32)
        return _interleave(encoded, n)


#: Rows interleaved at a time: a block of every column stays in the L2 cache.
_BLOCK_ROWS = 4096


def _interleave(columns: list[npt.NDArray[np.floating[Any]]], n: int) -> Matrix:
    """The row-major float32 matrix of ``columns``: stacked a block of rows at a time,
    about twice as fast as one ``np.stack`` of whole columns (which is itself much faster
    than writing each column into the matrix with a stride)."""
    if len(columns) == 1:  # nothing to interleave (the register encodes column by column)
        single: Matrix = np.array(columns[0], dtype=np.float32).reshape(n, 1)
        return single
    out: Matrix = np.empty((n, len(columns)), dtype=np.float32)
    for start in range(0, n, _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, n)
        np.stack([c[start:stop] for c in columns], axis=1, out=out[start:stop])
    return out


def concat_specs(specs: Iterable[FeatureSpec]) -> FeatureSpec:
    """One spec with the columns of ``specs`` in order."""
    return FeatureSpec(columns=tuple(c for s in specs for c in s.columns))


def _find_column(
    table: pa.Table, col: FeatureColumn, names: frozenset[str] | None = None
) -> pa.ChunkedArray | None:
    names = frozenset(table.column_names) if names is None else names
    for name in (col.name, col.field):
        if name in names:
            return table[name]
    return None


def _is_string(tp: pa.DataType) -> bool:
    return bool(pa.types.is_string(tp) or pa.types.is_large_string(tp))


def _kind_of(tp: pa.DataType, catalogue_dtype: str) -> FeatureKind:
    if pa.types.is_dictionary(tp):
        tp = tp.value_type
    if pa.types.is_boolean(tp):
        return FeatureKind.BOOL
    if pa.types.is_date(tp) or pa.types.is_timestamp(tp):
        return FeatureKind.DATE
    if pa.types.is_integer(tp) or pa.types.is_floating(tp) or pa.types.is_null(tp):
        return FeatureKind.NUMERIC
    if _is_string(tp):
        return FeatureKind.DATE if catalogue_dtype == "date32" else FeatureKind.CATEGORY
    raise ValidationError(
        f"expected a bool, number, date or string column, found {tp}", code="bad_feature_type"
    )


def date_string_to_months(text: str) -> float:
    """Months since 2000-01 of a (generalised) date string; NaN for ``*`` or empty.

    >>> [date_string_to_months(s) for s in ("2001-02", "2000-Q2", "*")]
    [13.0, 4.0, nan]
    """
    s = text.strip()
    if s in ("", SUPPRESSED):
        return math.nan
    for pattern, month in ((_DAY, None), (_MONTH, None), (_QUARTER, "q"), (_YEAR, "y")):
        m = pattern.match(s)
        if m is None:
            continue
        year = int(m.group(1))
        if month is None:
            mon = int(m.group(2))
            if not 1 <= mon <= 12:
                break
            offset = float(mon - 1)
        elif month == "q":
            offset = 3.0 * (int(m.group(2)) - 1) + 1.0
        else:
            offset = 5.5
        return (year - EPOCH_YEAR) * 12.0 + offset
    raise ValidationError(
        f"expected a date like 2023-07-15, 2023-07, 2023-Q3, 2023 or '*', found {text!r}",
        code="bad_date_string",
    )


def _dictionary(array: pa.ChunkedArray) -> tuple[npt.NDArray[np.int64], list[str | None]]:
    """Per row the index into a list of string values (-1 for null).

    A dictionary-encoded string column is used as it is (its values may repeat or go
    unused: each is encoded on its own); any other column is dictionary-encoded first.
    """
    if pa.types.is_dictionary(array.type) and _is_string(array.type.value_type):
        encoded = array.combine_chunks()  # unifies the chunks' dictionaries
    else:
        encoded = pc.dictionary_encode(_as_plain_strings(array).combine_chunks())
    indices = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return indices, encoded.dictionary.to_pylist()


def _months_of_days(raw: npt.NDArray[np.int32]) -> Matrix:
    """Months since 2000-01 of each day number since 1970-01-01 (int32 minimum: NaN).

    Through a table of the days between the earliest and the latest date present (a
    gather, several times faster than numpy's datetime64 conversions row by row); when
    those lie more than :data:`_DAY_TABLE_MAX` days apart (a placeholder such as
    0001-01-01 or 9999-12-31), row by row."""
    valid = raw != np.iinfo(np.int32).min
    out: Matrix = np.full(len(raw), np.nan, dtype=np.float32)
    if not valid.any():
        return out
    present = raw[valid].astype(np.int64)
    lo, hi = int(present.min()), int(present.max())
    if hi - lo <= _DAY_TABLE_MAX:
        out[valid] = _months(np.arange(lo, hi + 1, dtype=np.int64))[present - lo]
    else:
        out[valid] = _months(present)
    return out


def _months(days: npt.NDArray[np.int64]) -> Matrix:
    """Months since 2000-01 of day numbers since 1970-01-01, row by row."""
    months = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    out: Matrix = (months - (EPOCH_YEAR - 1970) * 12).astype(np.float32)
    return out


#: The widest range of days :func:`_months_of_days` puts in a table (~2,900 years, 4 MB).
_DAY_TABLE_MAX = 1 << 20


def _lookup(indices: npt.NDArray[np.int64], values: Sequence[float]) -> Matrix:
    table = np.append(np.asarray(values, dtype=np.float32), np.float32(np.nan))
    out: Matrix = table[np.where(indices < 0, len(values), indices)]
    return out


def _as_plain_strings(array: pa.ChunkedArray) -> pa.ChunkedArray:
    return array.cast(array.type.value_type) if pa.types.is_dictionary(array.type) else array


def _as_strings(array: pa.ChunkedArray, col: FeatureColumn) -> pa.ChunkedArray:
    """``array`` as strings: a dictionary of strings stays one (see :func:`_dictionary`)."""
    tp = array.type.value_type if pa.types.is_dictionary(array.type) else array.type
    if _is_string(tp):
        return array
    array = _as_plain_strings(array)
    try:
        return array.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise ValidationError(
            f"feature {col.name}: expected a string column, found {tp}",
            code="bad_feature_type",
        ) from None


def _encode(array: pa.ChunkedArray, col: FeatureColumn) -> npt.NDArray[np.floating[Any]]:
    tp = array.type.value_type if pa.types.is_dictionary(array.type) else array.type
    if col.encoding is FeatureKind.CATEGORY:
        indices, values = _dictionary(_as_strings(array, col))
        code = {v: float(i) for i, v in enumerate(col.categories)}
        other = float(col.other_code)
        return _lookup(
            indices,
            [math.nan if v in (None, SUPPRESSED) else code.get(v, other) for v in values],
        )
    if col.encoding is FeatureKind.DATE:
        if pa.types.is_date(tp) or pa.types.is_timestamp(tp):
            days = array.cast(pa.date32()).cast(pa.int32())
            raw = pc.fill_null(days, np.iinfo(np.int32).min).to_numpy(zero_copy_only=False)
            return _months_of_days(raw)
        indices, values = _dictionary(_as_strings(array, col))
        # Only the values some row has: a dictionary column may carry others, unread.
        used = np.zeros(len(values), dtype=bool)
        used[indices[indices >= 0]] = True
        try:
            parsed = [
                date_string_to_months(v) if v is not None and used[i] else math.nan
                for i, v in enumerate(values)
            ]
        except ValidationError as exc:
            raise ValidationError(f"feature {col.name}: {exc}", code=exc.code) from None
        return _lookup(indices, parsed)
    if col.encoding is FeatureKind.BOOL and _is_string(tp):
        raise ValidationError(
            f"feature {col.name}: expected a bool column, found {tp}", code="bad_feature_type"
        )
    if pa.types.is_string(tp) or pa.types.is_large_string(tp):
        target = pa.float64()  # parse text as the numbers it holds, checked
    else:
        # Straight to the matrix's float32: an unchecked cast rounds to nearest, exactly as
        # numpy's float64 -> float32 does for every integer below 2**53.
        target = pa.float32()
    try:
        numbers = array.cast(target, safe=target != pa.float32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise ValidationError(
            f"feature {col.name}: expected a {col.encoding.value} column, found {tp}",
            code="bad_feature_type",
        ) from None
    # Nulls come out as NaN (a copy only then); the caller stacks the columns.
    encoded: npt.NDArray[np.floating[Any]] = np.asarray(numbers.to_numpy(zero_copy_only=False))
    return encoded


def _frequent(array: pa.ChunkedArray, col: FeatureColumn, min_share: float) -> tuple[str, ...]:
    n = len(array)
    counts = pc.value_counts(_as_plain_strings(_as_strings(array, col)).combine_chunks())
    pairs = [
        (str(v), int(c))
        for v, c in zip(
            counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
        )
        if v is not None and v != SUPPRESSED
    ]
    keep = [(v, c) for v, c in pairs if n and c / n >= min_share]
    keep.sort(key=lambda vc: (-vc[1], vc[0]))
    return tuple(v for v, _ in keep)


def fit_source_features(
    table: pa.Table,
    source: SourceSpec,
    *,
    min_share: float = DEFAULT_MIN_SHARE,
    min_observed: int = 1,
) -> FeatureSpec:
    """The spec of one source's model fields present in ``table`` (catalogue order).

    Direct identifiers are never features, nor are fields observed (not null, not
    suppressed) in fewer than ``min_observed`` rows; by default only fields missing in
    every row are left out. The kind
    comes from the column's Arrow type
    (a generalised date is a string; the catalogue's ``date32`` then says it is a date).
    """
    if not 0.0 <= min_share < 1.0:
        raise ValidationError(
            f"min_share: expected a share in [0, 1), found {min_share!r}", code="bad_min_share"
        )
    if isinstance(min_observed, bool) or not isinstance(min_observed, int) or min_observed < 1:
        raise ValidationError(
            f"min_observed: expected a whole number >= 1, found {min_observed!r}",
            code="bad_min_observed",
        )
    columns: list[FeatureColumn] = []
    for f in source.model_fields():
        probe = FeatureColumn(source=source.code, field=f.name, encoding=FeatureKind.NUMERIC)
        array = _find_column(table, probe)
        if array is None:
            continue
        try:
            kind = _kind_of(array.type, f.dtype)
        except ValidationError as exc:
            raise ValidationError(f"column {probe.name}: {exc}", code=exc.code) from None
        col = FeatureColumn(source=source.code, field=f.name, encoding=kind)
        if kind is FeatureKind.CATEGORY:
            col = FeatureColumn(
                source=source.code,
                field=f.name,
                encoding=kind,
                categories=_frequent(array, col, min_share),
            )
        observed = int((~np.isnan(FeatureSpec(columns=(col,)).transform(table))).sum())
        if observed < min_observed:
            # Never (or barely) observed, e.g. a quasi-identifier suppressed to '*' in
            # almost every row of a depersonalised sample: no information, and a column
            # with no value at all breaks tree binning.
            continue
        columns.append(col)
    return FeatureSpec(columns=tuple(columns))
