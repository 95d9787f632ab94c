"""Read a body's own extract of a source (Parquet or CSV), checked against its contract.

An extract is one row per entity: the key column (``bin``, holding the BIN or the IIN)
and the source's fields as the catalogue declares them
(:meth:`~sample_protocol.catalogue.SourceSpec.arrow_schema`). :func:`read_extract` streams
the file in batches with pyarrow, reads only the key and the fields asked for, and checks
every row of them:

* the columns are there (``missing_column``) and of a usable type (``wrong_type``; a CSV
  value that does not parse is a ``wrong_type`` error naming its row);
* no null in a non-nullable field (``null_value``);
* numbers within the field's range and finite (``out_of_range``), categories among the
  field's list (``bad_category``);
* every key a valid BIN or IIN (``invalid_identifier``; BINs only for a ``bin``-keyed
  source), and no key twice (``duplicate_identifier``).

Every error is a :class:`~agency_runtime.errors.RuntimeInputError` (exit 2) whose message
names the file, the column, the row (1-based, counting data rows; in a CSV file that is
line ``row + 1``), what was expected and what was found. Identifiers in messages are
masked (``********0015``); text values are never shown.

Only rows whose key is in ``keep`` are returned (all rows are checked), so an extract
of millions of rows costs the memory of the few hundred a sample needs.

Example::

    >>> ext = read_extract("TAX.parquet", "TAX", fields=["staff_count"], keep={"990140000135"})
    ... # doctest: +SKIP
    >>> ext.table.column_names  # doctest: +SKIP
    ['bin', 'staff_count']
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from sample_protocol.catalogue import FieldSpec, SourceSpec, get_source
from sample_protocol.errors import IdentifierError, ProtocolError
from sample_protocol.identifier_columns import key_mask
from sample_protocol.identifiers import mask_identifier, validate_bin, validate_identifier

from .errors import RuntimeInputError

__all__ = [
    "EXTRACT_FORMATS",
    "Extract",
    "extract_format",
    "read_extract",
    "read_keyed_file",
]

#: File formats an extract may have (chosen by the file name's suffix).
EXTRACT_FORMATS: tuple[str, ...] = ("csv", "parquet")
_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
_BATCH_ROWS = 65_536
_CSV_BLOCK = 1 << 22
_INT_RE = r"^\s*[+-]?[0-9]+\s*$"
_FLOAT_RE = r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
_DATE_RE = r"^\s*[0-9]{4}-[0-9]{2}-[0-9]{2}\s*$"
_BOOL_TEXT = {"true": True, "false": False, "1": True, "0": False}
_EXPECTED = {
    "bool": "booleans",
    "category": "text (one of the field's categories)",
    "date32": "dates",
    "float64": "numbers",
    "int64": "whole numbers",
    "string": "text",
}


@dataclass(frozen=True, slots=True)
class Extract:
    """The checked rows of an extract that were asked for.

    ``table``: the key column then the fields asked for, in the contract's Arrow types;
    ``rows_read``: data rows in the file (all checked); ``rows_kept``: rows in ``table``.
    """

    path: Path
    source: str
    format: str
    key: str
    table: pa.Table
    rows_read: int

    @property
    def rows_kept(self) -> int:
        return int(self.table.num_rows)


def extract_format(path: str | os.PathLike[str]) -> str:
    """``"parquet"`` or ``"csv"`` from the file name; :class:`RuntimeInputError` otherwise."""
    suffix = Path(path).suffix.lower()
    try:
        return _SUFFIXES[suffix]
    except KeyError:
        raise RuntimeInputError(
            f"extract {path}: expected a .parquet (or .pq) or .csv file, found suffix "
            f"{suffix or 'none'!r}",
            code="unknown_format",
        ) from None


def _fail(code: str, path: Path, what: str) -> RuntimeInputError:
    return RuntimeInputError(f"extract {path}: {what}", code=code)


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _row_text(row: int, fmt: str) -> str:
    """1-based row (and CSV line) of the 0-based data row ``row``."""
    return f"row {row + 1}" + (f" (line {row + 2})" if fmt == "csv" else "")


_PLAIN_WORD = re.compile(
    r"[a-z_ ]{1,24}|[A-Z_ ]{1,24}|[0-9]{1,8}(\.[0-9]+)?|-[0-9]{1,8}(\.[0-9]+)?"
)


def _short(value: object) -> str:
    """Describe a bad cell without leaking personal data into a message or a log.

    Extract cells may hold IINs, names or addresses (a shifted CSV column is an ordinary
    mistake), so a value is shown only when it is plainly not personal: a short number
    (under 9 digits), or a one-case ASCII word such as a category code. Anything else is
    described by its kind and length, with a long digit run masked.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return repr(value)
    text = str(value)
    if isinstance(value, int | float) and _PLAIN_WORD.fullmatch(text):
        return text
    if isinstance(value, str) and _PLAIN_WORD.fullmatch(text):
        return repr(text)
    if isinstance(value, int | float):
        whole = str(abs(int(value))) if math.isfinite(value) else text
        return f"a {len(whole)}-digit number ({mask_identifier(whole)})"
    return f"a text of {len(text)} characters (not shown: it may be personal data)"


# -- types ---------------------------------------------------------------------------


def _parquet_type_ok(tp: pa.DataType, dtype: str) -> bool:
    if pa.types.is_null(tp):
        return True
    if pa.types.is_dictionary(tp):
        tp = tp.value_type
    t = pa.types
    checks = {
        "string": t.is_string(tp) or t.is_large_string(tp) or str(tp) == "string_view",
        "int64": t.is_integer(tp),
        "float64": t.is_integer(tp) or t.is_floating(tp) or t.is_decimal(tp),
        "bool": t.is_boolean(tp),
        "date32": t.is_date(tp) or t.is_timestamp(tp),
    }
    checks["category"] = checks["string"]
    return bool(checks.get(dtype, False))


def _as_plain(arr: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(arr.type):
        return arr.cast(arr.type.value_type)
    return arr


def _cast_parquet(arr: pa.Array, spec: FieldSpec, ctx: _Ctx) -> pa.Array:
    target = spec.arrow_type()
    arr = _as_plain(arr)
    if arr.type == target:
        return arr
    safe = not (pa.types.is_timestamp(arr.type) or pa.types.is_decimal(arr.type))
    try:
        return pc.cast(arr, target, safe=safe)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    for i, value in enumerate(arr.to_pylist()):  # error path only: find the row
        try:
            pa.array([value], type=arr.type).cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise ctx.error(
                "out_of_range", spec.name, i,
                f"a value that fits {spec.dtype}", _short(value),
            ) from None  # fmt: skip
    raise ctx.error("wrong_type", spec.name, None, _EXPECTED[spec.dtype], str(arr.type))


def _parse_text(arr: pa.Array, spec: FieldSpec, ctx: _Ctx) -> pa.Array:
    """Convert a CSV column read as text into the field's type, naming the first bad row."""
    if spec.dtype in ("string", "category"):
        return arr
    trimmed = pc.utf8_trim_whitespace(arr)
    if spec.dtype == "bool":
        low = pc.utf8_lower(trimmed)
        ok = pc.is_in(low, value_set=pa.array(list(_BOOL_TEXT)))
    else:
        pattern = {"int64": _INT_RE, "float64": _FLOAT_RE, "date32": _DATE_RE}[spec.dtype]
        ok = pc.match_substring_regex(arr, pattern)
    bad = _mask(pc.and_(arr.is_valid(), pc.invert(pc.fill_null(ok, True))))
    if bad.any():
        i = _first(bad)
        raise ctx.error("wrong_type", spec.name, i, _EXPECTED[spec.dtype], _short(arr[i].as_py()))
    if spec.dtype == "bool":
        truth = pc.is_in(pc.utf8_lower(trimmed), value_set=pa.array(["true", "1"]))
        return pc.if_else(arr.is_valid(), truth, pa.scalar(None, pa.bool_()))
    try:
        return pc.cast(trimmed, spec.arrow_type())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    for i, value in enumerate(trimmed.to_pylist()):  # error path only: find the row
        try:
            pa.array([value], type=pa.string()).cast(spec.arrow_type())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            what = "a real date YYYY-MM-DD" if spec.dtype == "date32" else _EXPECTED[spec.dtype]
            raise ctx.error(
                "wrong_type" if spec.dtype == "date32" else "out_of_range",
                spec.name, i, what, _short(value),
            ) from None  # fmt: skip
    raise ctx.error("wrong_type", spec.name, None, _EXPECTED[spec.dtype], "unparsable text")


def _mask(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow array as numpy (null counts as false)."""
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


# -- the reading context --------------------------------------------------------------


class _Ctx:
    """Where we are in the file: its path, format and the rows before this batch."""

    __slots__ = ("fmt", "offset", "path")

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.fmt = fmt
        self.offset = 0

    def error(
        self, code: str, column: str, row: int | None, expected: str, found: str
    ) -> RuntimeInputError:
        where = f"extract {self.path} column {column!r}"
        if row is not None:
            where += " " + _row_text(self.offset + row, self.fmt)
        return RuntimeInputError(f"{where}: expected {expected}, found {found}", code=code)


# -- checks ---------------------------------------------------------------------------


def _check_values(arr: pa.Array, spec: FieldSpec, ctx: _Ctx) -> None:
    if not spec.nullable and arr.null_count:
        i = _first(_mask(arr.is_null()))
        raise ctx.error("null_value", spec.name, i, "a value (the field is not nullable)", "null")
    if spec.dtype in ("int64", "float64"):
        if _numbers_within(arr, spec):
            return
        values = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
        present = _mask(arr.is_valid())
        bad = present & ~np.isfinite(values)
        lo = -math.inf if spec.min_value is None else spec.min_value
        hi = math.inf if spec.max_value is None else spec.max_value
        with np.errstate(invalid="ignore"):
            bad |= present & ((values < lo) | (values > hi))
        if bad.any():
            i = _first(bad)
            expected = f"a finite number from {lo:g} to {hi:g}"
            if spec.unit:
                expected += f" ({spec.unit})"
            raise ctx.error("out_of_range", spec.name, i, expected, _short(arr[i].as_py()))
    elif spec.dtype == "category" and spec.categories:
        bad = _mask(arr.is_valid()) & ~_in_categories(arr, spec.categories)
        if bad.any():
            i = _first(bad)
            shown = ", ".join(spec.categories[:8]) + (", ..." if len(spec.categories) > 8 else "")
            raise ctx.error(
                "bad_category", spec.name, i, f"one of: {shown}", _short(arr[i].as_py())
            )


def _in_categories(arr: pa.Array, categories: Sequence[str]) -> np.ndarray:
    """Per row, whether the value is one of ``categories`` (null: false). A dictionary
    column is checked on its distinct values, then row by row through its indices."""
    allowed = pa.array(list(categories), type=pa.string())
    if not pa.types.is_dictionary(arr.type):
        return _mask(pc.is_in(arr, value_set=allowed))
    known = _mask(pc.is_in(arr.dictionary, value_set=allowed))
    if not len(known):
        return np.zeros(len(arr), dtype=bool)
    indices = pc.fill_null(arr.indices, 0).to_numpy(zero_copy_only=False)
    return np.asarray(known[indices] & _mask(arr.is_valid()))


def _numbers_within(arr: pa.Array, spec: FieldSpec) -> bool:
    """Whether every present value is finite and within the field's range: the common
    case, answered from the values buffer in numpy without copying the column."""
    n = len(arr)
    if arr.null_count == n:
        return True
    if arr.type == pa.int64():
        dtype: type[np.generic] = np.int64
    elif arr.type == pa.float64():
        dtype = np.float64
    else:
        return False  # the slow path decides
    validity, data_buffer = arr.buffers()[:2]
    data = np.frombuffer(data_buffer, dtype=dtype)[arr.offset : arr.offset + n]
    if arr.null_count:
        bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
        valid = bits[arr.offset : arr.offset + n].view(bool)
        data = np.where(valid, data, data[int(np.argmax(valid))])
    low, high = float(data.min()), float(data.max())  # NaN propagates: not finite
    lo = -math.inf if spec.min_value is None else spec.min_value
    hi = math.inf if spec.max_value is None else spec.max_value
    return math.isfinite(low) and math.isfinite(high) and lo <= low and high <= hi


def _check_keys(arr: pa.Array, key: str, key_kind: str, ctx: _Ctx) -> pa.Array:
    """Trimmed keys; every one a valid BIN (or IIN, for ``bin_iin``); else the first bad row."""
    arr = _as_plain(arr)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        if not pa.types.is_null(arr.type) or len(arr):
            raise ctx.error(
                "wrong_type", key, None,
                "text of 12 digits (a BIN/IIN stored as a number loses its leading zeros)",
                str(arr.type),
            )  # fmt: skip
        arr = arr.cast(pa.string())
    arr = pc.utf8_trim_whitespace(arr).cast(pa.string())
    if arr.null_count:
        i = _first(_mask(arr.is_null()))
        raise ctx.error("invalid_identifier", key, i, "a BIN or IIN in every row", "an empty value")
    ok = key_mask(arr, bins_only=key_kind == "bin")
    if not ok.all():
        i = _first(~ok)
        value = arr[i].as_py()
        kind = "BIN" if key_kind == "bin" else "BIN or IIN"
        check = validate_bin if key_kind == "bin" else validate_identifier
        try:
            check(value, where="value")
        except IdentifierError as exc:
            reason = str(exc).removeprefix("value: ")
        else:  # pragma: no cover - the vectorised and scalar checks agree
            reason = f"{mask_identifier(value)!r}"
        raise ctx.error("invalid_identifier", key, i, f"a valid {kind}", reason)
    return arr


def _duplicates(codes: Sequence[np.ndarray], key: str, ctx: _Ctx) -> None:
    if not codes:
        return
    allc = np.concatenate(codes)
    order = np.argsort(allc, kind="stable")
    same = allc[order[1:]] == allc[order[:-1]]
    if same.any():
        later = order[1:][same]
        row = int(later.min())
        first = int(np.flatnonzero(allc == allc[row])[0])
        ctx.offset = 0
        raise ctx.error(
            "duplicate_identifier", key, row,
            f"each entity once (one row per {key})",
            f"{mask_identifier(f'{int(allc[row]):012d}')!r} again, first seen in "
            f"{_row_text(first, ctx.fmt)}",
        )  # fmt: skip


# -- reading ----------------------------------------------------------------------------


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), None)
    except UnicodeDecodeError:
        raise _fail(
            "unreadable_extract", path, "not UTF-8 text; expected a UTF-8 CSV file"
        ) from None
    if not header:
        raise _fail(
            "unreadable_extract", path, "empty file; expected a header line of column names"
        )
    return [name.strip() for name in header]


def _batches(path: Path, fmt: str, needed: Sequence[str], specs: dict[str, FieldSpec],
             key: str, batch_size: int) -> Iterator[pa.Table]:  # fmt: skip
    if fmt == "parquet":
        try:
            # No pre-buffering: with it, memory grows with the number of row groups.
            pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise _fail("missing_extract", path, "file not found") from None
            raise _fail(
                "unreadable_extract", path, f"not a readable Parquet file ({exc})"
            ) from None
        names = pf.schema_arrow.names
        _require(path, names, needed)
        for name in needed:
            tp = pf.schema_arrow.field(name).type
            if name != key and not _parquet_type_ok(tp, specs[name].dtype):
                raise _Ctx(path, fmt).error(
                    "wrong_type", name, None,
                    f"{specs[name].dtype} ({_EXPECTED[specs[name].dtype]})", str(tp),
                )  # fmt: skip
        for batch in pf.iter_batches(batch_size=batch_size, columns=list(needed)):
            yield pa.Table.from_batches([batch])
        return
    if not path.is_file():
        raise _fail("missing_extract", path, "file not found")
    _require(path, _csv_header(path), needed)
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(needed, pa.string()),
            include_columns=list(needed),
            strings_can_be_null=True,
        ),
    )
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        yield pa.Table.from_batches([batch])


def _require(path: Path, names: Sequence[str], needed: Iterable[str]) -> None:
    missing = [n for n in needed if n not in names]
    if missing:
        found = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
        raise _fail(
            "missing_column", path,
            f"column(s) {', '.join(map(repr, missing))} missing; expected the key and every "
            f"field asked for; found columns: {found or 'none'}",
        )  # fmt: skip
    twice = sorted({n for n in needed if list(names).count(n) > 1})
    if twice:
        raise _fail(
            "duplicate_column", path, f"column(s) {', '.join(map(repr, twice))} appear twice"
        )


def read_keyed_file(
    path: str | os.PathLike[str],
    fields: Sequence[FieldSpec],
    *,
    source: str = "",
    key: str = "bin",
    key_kind: str = "bin_iin",
    keep: Collection[str] | None = None,
    batch_size: int = _BATCH_ROWS,
) -> Extract:
    """Read and check a table keyed by BIN/IIN whose columns follow ``fields``.

    The general form of :func:`read_extract` (which takes them from the catalogue); also
    used for other keyed files, such as the tax body's outcomes. ``key_kind`` is ``bin``
    (BINs only) or ``bin_iin``.
    """
    path = Path(path)
    fmt = extract_format(path)
    specs = {f.name: f for f in fields}
    needed = [key, *specs]
    keep_set = None if keep is None else pa.array(sorted(set(keep)), type=pa.string())
    schema = pa.schema(
        [pa.field(key, pa.string(), nullable=False), *(f.arrow_field() for f in fields)]
    )
    ctx = _Ctx(path, fmt)
    kept: list[pa.Table] = []
    codes: list[np.ndarray] = []
    try:
        for batch in _batches(path, fmt, needed, specs, key, batch_size):
            keys = _check_keys(_combine(batch.column(key)), key, key_kind, ctx)
            arrays: list[pa.Array] = [keys]
            for name, spec in specs.items():
                raw = _combine(batch.column(name))
                arr = _parse_text(raw, spec, ctx) if fmt == "csv" else _cast_parquet(raw, spec, ctx)
                _check_values(arr, spec, ctx)
                arrays.append(arr)
            codes.append(pc.cast(keys, pa.int64()).to_numpy(zero_copy_only=False))
            table = pa.Table.from_arrays(arrays, schema=schema)
            if keep_set is not None:
                table = table.filter(pc.is_in(keys, value_set=keep_set))
            if table.num_rows:
                kept.append(table)
            ctx.offset += batch.num_rows
    except (pa.ArrowInvalid, pa.ArrowIOError) as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise _fail(
            "unreadable_extract", path, f"cannot be read as {fmt} ({_first_line(exc)})"
        ) from None
    rows_read = ctx.offset
    _duplicates(codes, key, ctx)
    table = pa.concat_tables(kept) if kept else schema.empty_table()
    return Extract(path=path, source=source, format=fmt, key=key, table=table, rows_read=rows_read)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _combine(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks == 1:
            return column.chunk(0)
        return column.combine_chunks()
    return column


def read_extract(
    path: str | os.PathLike[str],
    source: SourceSpec | str,
    *,
    fields: Iterable[str] | None = None,
    keep: Collection[str] | None = None,
    key: str = "bin",
    batch_size: int = _BATCH_ROWS,
) -> Extract:
    """Read and check a body's extract of ``source`` (Parquet or CSV, by suffix).

    ``fields``: the fields to read (default: every field of the source); ``keep``: the
    identifiers whose rows to return (default: all). Every row of the key and of those
    fields is checked against the catalogue contract; the first problem raises
    :class:`~agency_runtime.errors.RuntimeInputError` naming file, column and row.
    An unknown field name raises :class:`~sample_protocol.errors.CatalogueError`.
    """
    spec = get_source(source) if isinstance(source, str) else source
    names = spec.field_names() if fields is None else tuple(dict.fromkeys(fields))
    specs = [spec.field(name) for name in names]
    return read_keyed_file(
        path, specs, source=spec.code, key=key, key_kind=spec.key,
        keep=keep, batch_size=batch_size,
    )  # fmt: skip
