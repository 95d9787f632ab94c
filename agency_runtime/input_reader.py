"""Read a body's whole population for scoring: streamed, checked, encoded like the training.

:func:`open_population` opens a body's extract of one source (Parquet or CSV, by suffix)
keyed by a ``bin`` or ``iin`` column (holding a BIN or an IIN), and
:meth:`Population.batches` streams it in record batches of at most ``batch_size`` rows,
reading only the key and the fields the release's models need. Every row of those columns
is checked against the catalogue's contract with the same checks as a sample extract
(:mod:`agency_runtime.extract`): columns present (``missing_column``), usable Arrow types
or parseable CSV text (``wrong_type``), no null where the field is not nullable
(``null_value``), numbers in range (``out_of_range``), categories known (``bad_category``),
every key a valid BIN/IIN (``invalid_identifier``), no key twice
(``duplicate_identifier``, checked when the stream ends), a readable file
(``unreadable_extract``). Each is a :class:`~agency_runtime.errors.RuntimeInputError`
(exit 2) naming the file, the column and the row.

Memory does not grow with the input, except for 8 bytes per row kept to find duplicate
keys.

The lab trained on *depersonalised* samples: quasi-identifiers generalised along their
hierarchies (``agency_runtime._kanon``), dates coarsened, amounts top/bottom-coded. A body
scores its raw data, so each quasi-identifier a model uses must first be generalised to the
level it had in training (:func:`generalisation_plan`, :func:`generalise_like_training`):
deterministically, value by value, with no k-anonymity suppression. The level comes from
the signed release (``training["generalisation:<SOURCE>"]``, a JSON object field -> level)
or, when the release does not say, from the shape of the training categories in the
model's feature spec (2-character codes were cut to ``prefix2``, 4-digit KATO codes to
``district``...). Dates coarsened to the month and clipped amounts need nothing: the
encoding works in months, and a tree or bin treats a value beyond the training range as the
range's end.

Example::

    population = open_population("TAX.parquet", "TAX", fields=["staff_count", "tax_regime"])
    for table in population.batches():     # pa.Table: bin + the fields, contract types
        ...
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sample_protocol.catalogue import FieldSpec, SourceSpec, get_source
from sample_protocol.errors import ProtocolError
from sample_protocol.features import FeatureKind, FeatureSpec
from sample_protocol.identifiers import mask_identifier
from sample_protocol.rebatch import rebatch

from ._kanon import _BAND_LABELS, _CLASS_LABELS, SUPPRESSED, _hierarchy
from .depersonalise import source_depersonalisation_plan
from .errors import RuntimeInputError, RuntimeRefused
from .extract import (
    _EXPECTED,
    _batches,
    _cast_parquet,
    _check_keys,
    _check_values,
    _combine,
    _csv_header,
    _Ctx,
    _fail,
    _first_line,
    _parquet_type_ok,
    _parse_text,
    _require,
    _row_text,
    extract_format,
)

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "KEY_COLUMNS",
    "LEVELS",
    "Population",
    "generalisation_plan",
    "generalise_like_training",
    "open_population",
]

#: Rows per streamed batch (onnxruntime's sweet spot is 10k-100k rows).
DEFAULT_BATCH_ROWS = 65_536
#: The key columns a population may have, in order of preference.
KEY_COLUMNS = ("bin", "iin")
#: The levels of each quasi-identifier kind, most detailed first (see ``_kanon``).
LEVELS: Mapping[str, tuple[str, ...]] = {
    "kato": ("full", "district", "region", SUPPRESSED),
    "oked": ("full", "division", "section", SUPPRESSED),
    "code": ("full", "prefix2", SUPPRESSED),
    "date": ("day", "month", "quarter", "year", SUPPRESSED),
    "size": ("value", "band", "class", "full", "sme", SUPPRESSED),
    "category": ("full", SUPPRESSED),
}
#: The release's training note naming each field's generalisation level.
NOTE_PREFIX = "generalisation:"
_ENCODED_AS_MONTHS = frozenset({"day", "month"})
_READ_BUFFER = 1 << 20
_DICTIONARY = pa.dictionary(pa.int32(), pa.string())


# -- the population ------------------------------------------------------------------


def _columns(path: Path, fmt: str) -> list[str]:
    if fmt == "csv":
        if not path.is_file():
            raise _fail("missing_extract", path, "file not found")
        return _csv_header(path)
    try:
        return list(pq.read_schema(path).names)
    except FileNotFoundError:
        raise _fail("missing_extract", path, "file not found") from None
    except (pa.ArrowException, OSError) as exc:
        raise _fail(
            "unreadable_extract", path, f"not a readable Parquet file ({_first_line(exc)})"
        ) from None


@dataclass(frozen=True, slots=True, eq=False)
class Population:
    """A body's extract of ``source``, ready to stream (see :func:`open_population`).

    ``key`` is the input's key column (``bin`` or ``iin``); in the batches it is always
    called ``bin``. ``total_rows`` is known for Parquet (from its footer), ``None`` for CSV.
    ``lean`` (see :func:`open_population`): text columns of a Parquet file come as
    dictionaries, read by one thread.
    """

    path: Path
    format: str
    source: SourceSpec
    key: str
    fields: tuple[FieldSpec, ...]
    total_rows: int | None
    batch_size: int
    lean: bool = False

    def _as_dictionary(self, spec: FieldSpec) -> bool:
        return self.lean and self.format == "parquet" and spec.dtype in ("category", "string")

    @property
    def schema(self) -> pa.Schema:
        """The schema of every batch: ``bin`` (string) then the fields' contract types (a
        text field of a ``lean`` Parquet population: dictionary-encoded strings)."""
        key = pa.field("bin", pa.string(), nullable=False)
        fields = [
            pa.field(f.name, _DICTIONARY, nullable=f.nullable)
            if self._as_dictionary(f)
            else f.arrow_field()
            for f in self.fields
        ]
        return pa.schema([key, *fields])

    def _raw(self, names: Sequence[str]) -> Iterator[pa.Table]:
        specs = {f.name: f for f in self.fields if f.name in names}
        if self.format == "parquet":
            dictionaries = [n for n, f in specs.items() if self._as_dictionary(f)]
            return _parquet_batches(
                self.path, names, specs, self.key, self.batch_size,
                dictionaries=dictionaries, threads=not self.lean,
            )  # fmt: skip
        return _batches(self.path, self.format, names, specs, self.key, self.batch_size)

    def batches(self) -> Iterator[pa.Table]:
        """Checked batches (``bin`` + the fields); the duplicate check runs at the end."""
        ctx = _Ctx(self.path, self.format)
        seen = _KeyLog(self.total_rows)
        schema = self.schema
        names = [self.key, *(f.name for f in self.fields)]
        try:
            for batch in self._raw(names):
                keys = _check_keys(_combine(batch.column(self.key)), self.key, self.source.key, ctx)
                arrays: list[pa.Array] = [keys]
                for spec in self.fields:
                    raw = _combine(batch.column(spec.name))
                    if self.format == "csv":
                        arr = _parse_text(raw, spec, ctx)
                    elif self._as_dictionary(spec) and pa.types.is_dictionary(raw.type):
                        arr = _string_dictionary(raw, spec, ctx)
                    else:
                        arr = _cast_parquet(raw, spec, ctx)
                    _check_values(arr, spec, ctx)
                    arrays.append(arr)
                seen.add(np.asarray(pc.cast(keys, pa.int64()).to_numpy(zero_copy_only=False)))
                ctx.offset += batch.num_rows
                yield pa.Table.from_arrays(arrays, schema=schema)
        except (pa.ArrowInvalid, pa.ArrowIOError) as exc:
            if isinstance(exc, ProtocolError):
                raise
            raise _fail(
                "unreadable_extract",
                self.path,
                f"cannot be read as {self.format} ({_first_line(exc)}) after "
                f"{_row_text(ctx.offset, self.format)}",
            ) from None
        if (repeated := seen.first_repeat()) is not None:
            raise self._duplicate(repeated)

    def _duplicate(self, value: int) -> RuntimeInputError:
        """Name both rows of a repeated key (a second pass over the key column only)."""
        rows: list[int] = []
        offset = 0
        for batch in self._raw([self.key]):
            keys = pc.cast(pc.utf8_trim_whitespace(_combine(batch.column(self.key))), pa.int64())
            hits = np.flatnonzero(np.asarray(keys.to_numpy(zero_copy_only=False)) == value)
            rows.extend(int(offset + i) for i in hits[: 2 - len(rows)])
            offset += batch.num_rows
            if len(rows) == 2:
                break
        first, again = [*rows, 0, 0][:2]
        ctx = _Ctx(self.path, self.format)
        return ctx.error(
            "duplicate_identifier",
            self.key,
            again,
            f"each entity once (one row per {self.key})",
            f"{mask_identifier(f'{value:012d}')!r} again, first seen in "
            f"{_row_text(first, self.format)}",
        )


def _string_dictionary(arr: pa.Array, spec: FieldSpec, ctx: _Ctx) -> pa.Array:
    """A dictionary-encoded text column as ``dictionary<int32, string>``."""
    if arr.type == _DICTIONARY:
        return arr
    try:
        return arr.cast(_DICTIONARY)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        expected = _EXPECTED[spec.dtype]
        raise ctx.error("wrong_type", spec.name, None, expected, str(arr.type)) from None


def _parquet_batches(
    path: Path,
    names: Sequence[str],
    specs: Mapping[str, FieldSpec],
    key: str,
    batch_size: int,
    *,
    dictionaries: Sequence[str] = (),
    threads: bool = True,
) -> Iterator[pa.Table]:
    """Like the extract reader's, in constant memory: pyarrow's default pre-buffering holds
    whole row groups ahead (memory grew with the file), so stream pages through 1 MiB
    buffers instead (measured no slower on local disks). The ``dictionaries`` columns come
    dictionary-encoded; ``threads=False`` decodes the columns on the calling thread."""
    try:
        pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=_READ_BUFFER)
    except FileNotFoundError:
        raise _fail("missing_extract", path, "file not found") from None
    except (pa.ArrowException, OSError) as exc:
        raise _fail(
            "unreadable_extract", path, f"not a readable Parquet file ({_first_line(exc)})"
        ) from None
    schema = pf.schema_arrow
    _require(path, schema.names, names)
    for name in names:
        tp = schema.field(name).type
        if name != key and not _parquet_type_ok(tp, specs[name].dtype):
            dtype = specs[name].dtype
            raise _Ctx(path, "parquet").error(
                "wrong_type", name, None, f"{dtype} ({_EXPECTED[dtype]})", str(tp)
            )
    # Only now, with every column there and of a text type: asked for a column it lacks,
    # pyarrow fails with a bare KeyError.
    encoded = [n for n in dictionaries if pa.types.is_string(schema.field(n).type)]
    if encoded:
        pf = pq.ParquetFile(
            path, pre_buffer=False, buffer_size=_READ_BUFFER, read_dictionary=encoded
        )
    batches = pf.iter_batches(batch_size=batch_size, columns=list(names), use_threads=threads)
    if not encoded:
        for batch in batches:
            yield pa.Table.from_batches([batch])
        return
    # Read as dictionaries, pyarrow ends a batch at every row group: join them back into
    # batches of batch_size rows.
    yield from rebatch(batches, batch_size)


class _KeyLog:
    """Every key seen, as int64 (8 bytes a row), to find a repeat once the stream ends."""

    def __init__(self, expected: int | None) -> None:
        self._buf = np.empty(expected if expected is not None else 1 << 16, dtype=np.int64)
        self._n = 0

    def add(self, keys: npt.NDArray[np.int64]) -> None:
        need = self._n + len(keys)
        if need > len(self._buf):
            grown = np.empty(max(need, len(self._buf) * 3 // 2), dtype=np.int64)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n : need] = keys
        self._n = need

    def first_repeat(self) -> int | None:
        keys = self._buf[: self._n]
        keys.sort()  # in place: no second copy of the keys
        same = np.flatnonzero(keys[1:] == keys[:-1])
        found = int(keys[same[0]]) if same.size else None
        self._buf = np.empty(0, dtype=np.int64)
        return found


def open_population(
    path: str | os.PathLike[str],
    source: SourceSpec | str,
    *,
    fields: Iterable[str],
    batch_size: int = DEFAULT_BATCH_ROWS,
    lean: bool = False,
) -> Population:
    """Open ``path`` (``.parquet``/``.pq`` or ``.csv``) for streaming the ``fields`` of ``source``.

    Checks the format, that the file is readable and that it has a key column (``bin`` or
    ``iin``); columns, types and values are checked as the batches stream. A field the
    catalogue does not know raises :class:`~sample_protocol.errors.CatalogueError`.

    ``lean=True`` is for a reader that runs beside other work (the scorer's, whose text
    fields are the models' categories and codes): a Parquet file's text columns come as
    dictionaries (no string per row; the checks, the generalisation and the encoding work
    on the few distinct values) and one thread
    decodes the columns (pyarrow's thread pool cost about 40% more CPU for the same read).
    """
    spec = get_source(source) if isinstance(source, str) else source
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise RuntimeInputError(
            f"batch_size: expected a positive integer, found {batch_size!r}", code="bad_option"
        )
    wanted = tuple(spec.field(name) for name in dict.fromkeys(fields))
    where = Path(path)
    fmt = extract_format(where)
    names = _columns(where, fmt)
    keys = [k for k in KEY_COLUMNS if k in names]
    if not keys:
        raise _fail(
            "missing_column",
            where,
            f"no key column; expected 'bin' (a BIN or IIN) or 'iin', found columns: "
            f"{', '.join(names[:12]) or 'none'}",
        )
    total = pq.read_metadata(where).num_rows if fmt == "parquet" else None
    return Population(where, fmt, spec, keys[0], wanted, total, batch_size, lean)


# -- generalisation like the training ------------------------------------------------


def _refuse(source: str, what: str) -> RuntimeRefused:
    return RuntimeRefused(f"release for {source}: {what}", code="release_generalisation")


def _from_notes(source: SourceSpec, raw: str, kinds: Mapping[str, str]) -> dict[str, str]:
    try:
        levels = json.loads(raw)
    except ValueError:
        levels = None
    if not isinstance(levels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in levels.items()
    ):
        raise _refuse(
            source.code, f"{NOTE_PREFIX}{source.code}: expected a JSON object field -> level"
        )
    for name, level in levels.items():
        kind = kinds.get(name)
        if kind is not None and level not in LEVELS[kind]:
            raise _refuse(
                source.code,
                f"{NOTE_PREFIX}{source.code}: field {name!r} ({kind}): expected a level among "
                f"{', '.join(LEVELS[kind])}, found {level!r}",
            )
    return {k: v for k, v in levels.items() if k in kinds}


def _inferred(kind: str, field: FieldSpec, categories: tuple[str, ...]) -> str:
    """The level whose values look like the training categories (see the module notes)."""
    longest = max((len(c) for c in categories), default=0)
    if kind == "kato" and categories:
        return "region" if longest <= 2 else "district" if longest <= 4 else "full"
    if kind == "oked" and categories:
        if all(len(c) == 1 and c.isalpha() for c in categories):
            return "section"
        return "division" if longest <= 2 else "full"
    if kind == "code" and categories:
        return "prefix2" if longest <= 2 else "full"
    if kind == "size":
        if field.dtype in ("int64", "float64"):
            if categories and set(categories) <= set(_CLASS_LABELS):
                return "class"
            if categories and set(categories) <= {"<0", *_BAND_LABELS}:
                return "band"
            return "value"
        return "sme" if "sme" in categories else "full"
    if kind == "date":
        return "month"
    return "full"


def generalisation_plan(
    source: SourceSpec,
    specs: Iterable[FeatureSpec],
    notes: Mapping[str, str] | None = None,
) -> dict[str, tuple[str, str]]:
    """Per quasi-identifier field the models of ``source`` use: ``(kind, level)``.

    ``notes`` is the release manifest's ``training``; its ``generalisation:<SOURCE>``
    entry, when present, decides (an unknown level is refused: ``release_generalisation``).
    Otherwise the level is inferred from the category features' training values; a date
    is taken at its month.
    """
    _, kinds, _ = source_depersonalisation_plan(source)
    columns = {c.field: c for spec in specs for c in spec.columns if c.source == source.code}
    used = {name: kind for name, kind in kinds.items() if name in columns}
    raw = (notes or {}).get(f"{NOTE_PREFIX}{source.code}")
    given = _from_notes(source, raw, used) if raw is not None else {}
    plan: dict[str, tuple[str, str]] = {}
    for name, kind in used.items():
        col = columns[name]
        if name in given:
            level = given[name]
        elif col.encoding is FeatureKind.CATEGORY or kind == "date":
            level = _inferred(kind, source.field(name), col.categories)
        else:
            continue  # a number the training kept as a number: nothing to do
        plan[name] = (kind, level)
    return plan


def generalise_like_training(table: pa.Table, plan: Mapping[str, tuple[str, str]]) -> pa.Table:
    """``table`` with each planned field replaced by its value at the planned level.

    Dates at ``day`` or ``month`` stay as they are (the encoding reads their month).
    """
    out = table
    for name, (kind, level) in plan.items():
        if name not in out.column_names or (kind == "date" and level in _ENCODED_AS_MONTHS):
            continue
        column = _combine(out.column(name))
        if pa.types.is_dictionary(column.type):  # each level maps value to value
            levels = dict(_hierarchy(column.dictionary, kind, name))
            if level not in levels:
                continue
            values = pa.DictionaryArray.from_arrays(column.indices, levels[level])
            field = pa.field(name, values.type)
        else:
            levels = dict(_hierarchy(column, kind, name))
            if level not in levels:  # e.g. "day" of dates already at months: same thing
                continue
            values, field = levels[level], pa.field(name, pa.string())
        out = out.set_column(out.column_names.index(name), field, values)
    return out
