"""Reading and checking an arbitrary table for :mod:`nce_model_lab.generic`.

:func:`read_table` reads a CSV or Parquet file (told apart by Parquet's ``PAR1`` magic,
not by the file name); :func:`prepare_table` checks the id and target columns and builds
a :class:`~sample_protocol.features.FeatureSpec` over every other column, with the same
encodings as a catalogue source (``numeric``, ``bool``, ``date``, ``category``). Every
problem raises :class:`~nce_model_lab.errors.LabError` with a stable code and a message
that names the file, the column and, where it helps, the row (data rows count from 1,
the CSV header not included). Id values are never shown: they may be BINs or IINs.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from sample_protocol.catalogue import KEY_COLUMNS, SourceSpec, get_source, source_codes
from sample_protocol.errors import ValidationError
from sample_protocol.features import (
    DEFAULT_MIN_SHARE,
    SEPARATOR,
    SUPPRESSED,
    FeatureColumn,
    FeatureKind,
    FeatureSpec,
)
from sample_protocol.identifiers import contains_identifier
from sample_protocol.records_base import check_name

from .errors import LabError
from .training.features import MIN_OBSERVED

__all__ = ["MIN_EVENTS", "MIN_ROWS", "PreparedTable", "prepare_table", "read_table"]

#: Fewest rows a table may have.
MIN_ROWS = 100
#: Fewest rows of each target class (5 cross-validation folds, each with 3 calibration
#: folds, must all see both classes).
MIN_EVENTS = 30

_PARQUET_MAGIC = b"PAR1"


class GenericRefused(LabError):
    """A table holds something that must never reach a bundle (a BIN or IIN)."""

    code = "identifier_in_features"
    exit_code = 3


@dataclass(frozen=True, slots=True)
class PreparedTable:
    """The model matrix of a table, its 0/1 target, what was left out (column → why) and
    the features that are not fields of the source's catalogue contract."""

    spec: FeatureSpec
    X: npt.NDArray[np.float32]
    y: npt.NDArray[np.int8]
    positive: str
    dropped: dict[str, str]
    outside_contract: tuple[str, ...] = ()


def read_table(path: str | Path, *, id_column: str | None = None) -> tuple[bytes, pa.Table]:
    """The bytes of ``path`` and the table they hold (CSV or Parquet).

    In a CSV, empty cells and ``NA``/``null``-like values are missing in every column, and
    ``id_column`` is read as text (so ``000123`` keeps its zeros).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LabError(
            f"table {path}: expected a readable CSV or Parquet file, found {exc.strerror or exc}",
            code="unreadable_table",
        ) from None
    try:
        if data[:4] == _PARQUET_MAGIC and data[-4:] == _PARQUET_MAGIC:
            table = pq.read_table(io.BytesIO(data))
        else:
            types = {id_column: pa.string()} if id_column else None
            table = pacsv.read_csv(
                io.BytesIO(data),
                convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True),
            )
    except (pa.ArrowException, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LabError(
            f"table {path}: expected a CSV (with a header row) or Parquet file, found "
            f"unreadable content ({first})",
            code="unreadable_table",
        ) from None
    return data, table


def _first_rows(mask: npt.NDArray[np.bool_], n: int = 1) -> list[int]:
    return [int(i) + 1 for i in np.flatnonzero(mask)[:n]]


def _check_id(table: pa.Table, id_column: str, where: str) -> None:
    column = table[id_column]
    if column.null_count:
        first = _first_rows(np.asarray(column.is_null().to_numpy(zero_copy_only=False)))
        raise LabError(
            f"{where} id column {id_column!r}: expected an id in every row, found "
            f"{column.null_count} missing (first at data row {first[0]})",
            code="bad_id_column",
        )
    encoded = pc.dictionary_encode(column.combine_chunks())
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False))
    if len(encoded.dictionary) == len(codes):
        return
    # codes number the distinct ids in order of first appearance: 0, 1, 2, ...
    _, first_at = np.unique(codes, return_index=True)
    repeat = np.ones(len(codes), dtype=bool)
    repeat[first_at] = False
    row = int(np.flatnonzero(repeat)[0])
    earlier = int(first_at[codes[row]])
    raise LabError(
        f"{where} id column {id_column!r}: expected one row per id, found "
        f"{int(repeat.sum())} repeated id(s) (first: data row {row + 1} repeats the id of "
        f"data row {earlier + 1})",
        code="duplicate_id",
    )


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _target(
    table: pa.Table, target: str, positive: str | None, where: str
) -> tuple[npt.NDArray[np.int8], str]:
    column = table[target]
    if column.null_count:
        first = _first_rows(np.asarray(column.is_null().to_numpy(zero_copy_only=False)))
        raise LabError(
            f"{where} target column {target!r}: expected a value in every row, found "
            f"{column.null_count} missing (first at data row {first[0]}); a target cannot "
            "be imputed",
            code="bad_target",
        )
    tp = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if not (
        pa.types.is_boolean(tp)
        or pa.types.is_integer(tp)
        or pa.types.is_floating(tp)
        or pa.types.is_string(tp)
        or pa.types.is_large_string(tp)
    ):
        raise LabError(
            f"{where} target column {target!r}: expected 0/1, true/false or two labels, "
            f"found type {tp}",
            code="non_binary_target",
        )
    text = [_as_text(v) for v in column.to_pylist()]
    values = sorted(set(text))
    if len(values) != 2:
        shown = ", ".join(repr(v) for v in values[:5]) + (" ..." if len(values) > 5 else "")
        raise LabError(
            f"{where} target column {target!r}: expected exactly two distinct values (a "
            f"binary outcome), found {len(values)}: {shown}",
            code="non_binary_target",
        )
    if positive is None:
        lowered = {v.lower(): v for v in values}
        if set(lowered) in ({"0", "1"}, {"false", "true"}):
            positive = lowered["1"] if "1" in lowered else lowered["true"]
        else:
            raise LabError(
                f"{where} target column {target!r}: expected 0/1 or true/false, found "
                f"{values[0]!r} and {values[1]!r}; name the event value with --positive",
                code="ambiguous_target",
            )
    elif positive not in values:
        raise LabError(
            f"{where} target column {target!r}: --positive {positive!r} is not one of its "
            f"values ({values[0]!r}, {values[1]!r})",
            code="bad_option",
        )
    y = np.fromiter((v == positive for v in text), dtype=np.int8, count=len(text))
    events = int(y.sum())
    if min(events, len(y) - events) < MIN_EVENTS:
        raise LabError(
            f"{where} target column {target!r}: expected at least {MIN_EVENTS} rows of each "
            f"class, found {events} event(s) ({positive!r}) and {len(y) - events} other(s)",
            code="too_few_events",
        )
    return y, positive


def _kind(tp: pa.DataType) -> FeatureKind | None:
    if pa.types.is_dictionary(tp):
        tp = tp.value_type
    if pa.types.is_boolean(tp):
        return FeatureKind.BOOL
    if pa.types.is_integer(tp) or pa.types.is_floating(tp) or pa.types.is_decimal(tp):
        return FeatureKind.NUMERIC
    if pa.types.is_date(tp) or pa.types.is_timestamp(tp):
        return FeatureKind.DATE
    if pa.types.is_string(tp) or pa.types.is_large_string(tp):
        return FeatureKind.CATEGORY
    return None


def _categories(column: pa.ChunkedArray, min_share: float) -> tuple[str, ...]:
    """Values seen in at least ``min_share`` of the rows, most frequent first."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    counts = pc.value_counts(column.combine_chunks())
    n = len(column)
    pairs = [
        (str(v), int(c))
        for v, c in zip(
            counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
        )
        if v is not None and v != SUPPRESSED and c >= min_share * n
    ]
    pairs.sort(key=lambda vc: (-vc[1], vc[0]))
    return tuple(v for v, _ in pairs)


def _field_of(name: str, source: SourceSpec) -> tuple[str | None, str]:
    """The field a column feeds (a ``SOURCE__`` prefix of this source is taken off), or
    ``None`` and why the column is no feature."""
    if name in KEY_COLUMNS:
        return None, "an identifier column name"
    head, sep, rest = name.partition(SEPARATOR)
    if sep and head == source.code:
        name = rest
    elif sep and head in source_codes():
        return None, f"a column of source {head}, not {source.code}"
    if name in {f.name for f in source.direct_identifiers()}:
        return None, f"a direct identifier of the {source.code} contract"
    return name, ""


def _column(
    table: pa.Table, name: str, source: SourceSpec, where: str, min_share: float
) -> tuple[FeatureColumn | None, str]:
    """The feature of one column, or ``None`` and why it is left out."""
    try:
        check_name("column", f"{source.code}{SEPARATOR}{name}")
    except ValidationError:
        raise LabError(
            f"{where} column {name!r}: expected a name without surrounding spaces or control "
            "characters (at most 190 characters); rename it or leave it out with --drop",
            code="bad_column_name",
        ) from None
    field, why = _field_of(name, source)
    if field is None:
        return None, why
    column = table[name]
    if pa.types.is_null(column.type):
        return None, "no value in any row"
    kind = _kind(column.type)
    if kind is None:
        raise LabError(
            f"{where} column {name!r}: expected numbers, true/false, dates or text, found "
            f"type {column.type}; leave it out with --drop",
            code="bad_feature_type",
        )
    contract = {f.name: f.dtype for f in source.fields}
    if kind is FeatureKind.CATEGORY and contract.get(field) == "date32":
        kind = FeatureKind.DATE  # a generalised date of the contract, like 2023-Q3
    categories = _categories(column, min_share) if kind is FeatureKind.CATEGORY else ()
    leaked = [v for v in categories if contains_identifier(v)]
    if leaked:
        raise GenericRefused(
            f"{where} column {name!r}: a frequent value holds a valid BIN/IIN and category "
            "values are written into the bundle; refusing (leave the column out with --drop)"
        )
    feature = FeatureColumn(source=source.code, field=field, encoding=kind, categories=categories)
    try:
        values = FeatureSpec(columns=(feature,)).transform(table.select([name]))[:, 0]
    except ValidationError as exc:
        raise LabError(f"{where} column {name!r}: {exc}", code=exc.code) from None
    seen = values[~np.isnan(values)]
    if seen.size < MIN_OBSERVED:
        return None, f"observed in {seen.size} row(s), fewer than {MIN_OBSERVED}"
    if np.unique(seen).size < 2:
        return None, "the same value in every observed row"
    return feature, ""


def prepare_table(
    table: pa.Table,
    *,
    target: str,
    id_column: str,
    source: str | SourceSpec,
    positive: str | None = None,
    drop: Iterable[str] = (),
    min_share: float = DEFAULT_MIN_SHARE,
    where: str = "table",
) -> PreparedTable:
    """Check ``table`` and encode every column but the id, the target and ``drop``.

    Features belong to ``source`` (a catalogue source code): a column ``SOURCE__x`` of it
    feeds field ``x``, another source's column is left out, and so is a field the
    source's contract marks as a direct identifier. ``outside_contract`` lists the
    features that are not fields of the source's contract.
    """
    spec_of = get_source(source) if isinstance(source, str) else source
    names = table.column_names
    for role, name in (("target", target), ("id", id_column)):
        if name not in names:
            shown = ", ".join(repr(n) for n in names[:20]) + (" ..." if len(names) > 20 else "")
            raise LabError(
                f"{where}: expected a {role} column {name!r}, found none (columns: {shown})",
                code=f"no_{role}_column",
            )
    if target == id_column:
        raise LabError(
            f"{where}: the target and the id must be different columns, found {target!r} for both",
            code="bad_option",
        )
    dropped_names = tuple(drop)
    unknown = [d for d in dropped_names if d not in names]
    if unknown:
        raise LabError(
            f"{where}: --drop names column(s) not in the table: {', '.join(map(repr, unknown))}",
            code="no_such_column",
        )
    if table.num_rows < MIN_ROWS:
        raise LabError(
            f"{where}: expected at least {MIN_ROWS} rows, found {table.num_rows}",
            code="table_too_small",
        )
    _check_id(table, id_column, where)
    y, positive = _target(table, target, positive, where)
    dropped = {d: "--drop" for d in dropped_names}
    columns: list[FeatureColumn] = []
    for name in names:
        if name in (target, id_column) or name in dropped:
            continue
        feature, why = _column(table, name, spec_of, where, min_share)
        if feature is None:
            dropped[name] = why
        else:
            columns.append(feature)
    if not columns:
        raise LabError(
            f"{where}: expected at least one usable feature column besides the id and the "
            f"target, found none ({'; '.join(f'{k}: {v}' for k, v in dropped.items()) or '-'})",
            code="no_features",
        )
    try:
        spec = FeatureSpec(columns=tuple(columns))
    except ValidationError as exc:  # e.g. both TAX__age and age
        raise LabError(f"{where}: {exc}", code=exc.code) from None
    contract = set(spec_of.field_names())
    return PreparedTable(
        spec=spec,
        X=spec.transform(table),
        y=y,
        positive=positive,
        dropped=dropped,
        outside_contract=tuple(c.field for c in spec.columns if c.field not in contract),
    )
