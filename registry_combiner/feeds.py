"""Direct feeds: the sources the register may hold itself, checked against their contract.

``registry-combiner ingest-feed SOURCE FILE`` takes one Parquet file of a ``direct``-mode
source (the catalogue's mode, e.g. ``UTILITIES``' monthly non-payment file or the
``LEGAL_ENTITY`` registry), checks **every row** against the source's contract
(:meth:`~sample_protocol.catalogue.SourceSpec.arrow_schema`), and stores it in one
transaction (:meth:`~registry_combiner.store.Store.add_feed`). A source in
``preliminary`` mode is refused (``feed_not_direct``, exit 3): its data may not leave the
body; only its preliminary indexes come, as batches.

Checks (each failure is a :class:`RegistryInputError`, exit 2, naming the file, the
column, the 1-based row, what was expected and what was found; nothing is stored):

* a readable Parquet file (``feed_unreadable``) with exactly the contract's columns
  (``feed_missing_column``, ``feed_extra_column``);
* Arrow types: the contract's type, or a lossless variant (any integer for ``int64``,
  integer or float for ``float64``, dictionary or large strings for text, an all-null
  column for a nullable field) (``feed_wrong_type``);
* the key: a valid BIN or IIN in every row (BINs only for a ``bin``-keyed source) and no
  entity twice (``feed_invalid_identifier``, ``feed_duplicate_identifier``);
* no null in a non-nullable field (``feed_null_value``), numbers finite and within range
  (``feed_out_of_range``), categories among the field's list (``feed_bad_category``).

Two feeds are more than data:

* ``LEGAL_ENTITY`` fills the entities' profiles (name, legal form, status, head's names,
  registration date, KATO, OKED) and so the name search (para 32);
* ``TAX_LISTS`` (:data:`LISTS_SPEC`): the tax body's published state lists (bankrupt,
  pseudo-enterprise, invalid registration, inactive, absent at the address, illegal
  reorganisation, tax debtor), keyed by BIN/IIN with one bool column per list. The
  catalogue keeps these flags inside the secret ``TAX`` source, but the lists themselves
  are published by the tax authority; the register takes only these columns, as a
  direct feed, for the hard overrides of the combiner and the basic view (para 37). They
  are not combiner inputs.

Messages never show a text value (it may be a name or an address) and mask identifiers.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sample_protocol.catalogue import Catalogue, FieldSpec, Mode, SourceSpec
from sample_protocol.identifier_columns import identifier_mask
from sample_protocol.identifiers import mask_identifier
from sample_protocol.records_base import sha256_file

from .errors import RegistryInputError, RegistryRefused
from .store import LISTS_SOURCE, EntityProfile, FeedRecord, Store

__all__ = [
    "LISTS",
    "LISTS_SPEC",
    "PROFILE_SOURCE",
    "FeedResult",
    "feed_spec",
    "ingest_feed",
    "read_feed",
]

#: The feed that fills the entities' profiles.
PROFILE_SOURCE = "LEGAL_ENTITY"
#: The state lists of the ``TAX_LISTS`` feed (the TAX source's list fields).
LISTS: tuple[str, ...] = (
    "bankrupt",
    "pseudo_enterprise",
    "invalid_registration",
    "inactive",
    "absent_at_address",
    "illegal_reorganisation",
    "tax_debtor",
)
_KEY = "bin"
_MAX_FEED_BYTES = 4 << 30


def _lists_spec() -> SourceSpec:
    tax = Catalogue.default().source("TAX")
    return SourceSpec(
        code=LISTS_SOURCE,
        owner=f"{tax.owner} (published state lists)",
        paragraph=tax.paragraph,
        default_mode=Mode.DIRECT,
        key="bin_iin",
        fields=tuple(tax.field(name) for name in LISTS),
        informs=tax.informs,
        description="The tax authority's published lists, one bool column per list.",
    )


#: The contract of the ``TAX_LISTS`` feed.
LISTS_SPEC: SourceSpec = _lists_spec()


def feed_spec(source: str, catalogue: Catalogue | None = None) -> SourceSpec:
    """The contract of a feed: a ``direct``-mode catalogue source, or ``TAX_LISTS``."""
    if source == LISTS_SOURCE:
        return LISTS_SPEC
    cat = catalogue or Catalogue.default()
    if source not in cat.source_codes():
        known = ", ".join((*(s.code for s in cat.direct_sources()), LISTS_SOURCE))
        raise RegistryInputError(
            f"feed source {source!r}: expected one of the direct sources ({known}), found an "
            "unknown source",
            code="feed_unknown_source",
        )
    if cat.mode(source) is not Mode.DIRECT:
        raise RegistryRefused(
            f"feed source {source!r} is in 'preliminary' mode: its data stays with its body "
            "and only its preliminary indexes come to the register (as signed batches)",
            code="feed_not_direct",
        )
    return cat.source(source)


# -- checks -----------------------------------------------------------------------------


def _shown(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, int | float):
        text = str(value)
        return text if len(text.lstrip("-").split(".")[0]) < 9 else mask_identifier(text)
    text = str(value)
    if len(text) <= 24 and text.replace("_", "").isascii() and text.replace("_", "").isalnum():
        return repr(text)
    return f"a text of {len(text)} characters (not shown)"


class _Where:
    def __init__(self, path: Path, source: str) -> None:
        self.path = path
        self.source = source

    def fail(
        self, code: str, column: str, row: int | None, expected: str, found: str
    ) -> RegistryInputError:
        where = f"feed {self.path} ({self.source}) column {column!r}"
        if row is not None:
            where += f" row {row + 1}"
        return RegistryInputError(f"{where}: expected {expected}, found {found}", code=code)


def _type_ok(tp: pa.DataType, spec: FieldSpec) -> bool:
    if pa.types.is_dictionary(tp):
        tp = tp.value_type
    if pa.types.is_null(tp):
        return spec.nullable
    t = pa.types
    if spec.dtype in ("string", "category"):
        return bool(t.is_string(tp) or t.is_large_string(tp))
    if spec.dtype == "int64":
        return bool(t.is_integer(tp))
    if spec.dtype == "float64":
        return bool(t.is_integer(tp) or t.is_floating(tp))
    if spec.dtype == "bool":
        return bool(t.is_boolean(tp))
    return bool(t.is_date(tp))


def _mask(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _check_field(arr: pa.Array, spec: FieldSpec, at: _Where) -> pa.Array:
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    target = spec.arrow_type()
    if not spec.nullable and arr.null_count:
        row = int(np.flatnonzero(_mask(arr.is_null()))[0])
        raise at.fail("feed_null_value", spec.name, row, "a value (not nullable)", "null")
    if spec.dtype in ("int64", "float64"):
        values = np.asarray(
            pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
        )
        present = _mask(arr.is_valid())
        lo = -math.inf if spec.min_value is None else spec.min_value
        hi = math.inf if spec.max_value is None else spec.max_value
        with np.errstate(invalid="ignore"):
            bad = present & (~np.isfinite(values) | (values < lo) | (values > hi))
        if spec.dtype == "int64" and pa.types.is_unsigned_integer(arr.type):
            bad |= present & (values > 2.0**63 - 1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            expected = f"a finite number from {lo:g} to {hi:g}" + (
                f" ({spec.unit})" if spec.unit else ""
            )
            raise at.fail("feed_out_of_range", spec.name, row, expected, _shown(arr[row].as_py()))
    elif spec.dtype == "category" and spec.categories:
        ok = _mask(pc.is_in(arr.cast(pa.string()), value_set=pa.array(list(spec.categories))))
        bad = _mask(arr.is_valid()) & ~ok
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            shown = ", ".join(spec.categories[:8]) + (", ..." if len(spec.categories) > 8 else "")
            raise at.fail(
                "feed_bad_category", spec.name, row, f"one of: {shown}", _shown(arr[row].as_py())
            )
    return arr.cast(target)


def _check_keys(arr: pa.Array, spec: SourceSpec, at: _Where) -> pa.Array:
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        raise at.fail(
            "feed_wrong_type",
            _KEY,
            None,
            "text of 12 digits (a BIN/IIN stored as a number loses its leading zeros)",
            str(arr.type),
        )
    arr = arr.cast(pa.string())
    if arr.null_count:
        row = int(np.flatnonzero(_mask(arr.is_null()))[0])
        raise at.fail("feed_invalid_identifier", _KEY, row, "a BIN or IIN", "null")
    ok = _mask(pc.match_substring_regex(arr, r"^[0-9]{12}$")) & identifier_mask(arr)
    kind = "BIN or IIN"
    if spec.key == "bin":
        kind = "BIN"
        fifth = pc.utf8_slice_codeunits(arr, 4, 5)
        ok &= _mask(pc.is_in(fifth, value_set=pa.array(["4", "5", "6"])))
    if not ok.all():
        row = int(np.flatnonzero(~ok)[0])
        value = str(arr[row].as_py())
        raise at.fail(
            "feed_invalid_identifier",
            _KEY,
            row,
            f"a valid {kind} (12 digits, check digit)",
            repr(mask_identifier(value)) if len(value) == 12 else _shown(value),
        )
    codes = np.asarray(pc.cast(arr, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    order = np.argsort(codes, kind="stable")
    same = codes[order[1:]] == codes[order[:-1]]
    if same.any():
        row = int(order[1:][same].min())
        first = int(np.flatnonzero(codes == codes[row])[0])
        raise at.fail(
            "feed_duplicate_identifier",
            _KEY,
            row,
            "each entity once",
            f"{mask_identifier(str(arr[row].as_py()))!r} again (first in row {first + 1})",
        )
    return arr


def read_feed(path: str | os.PathLike[str], spec: SourceSpec) -> pa.Table:
    """Read and check a feed file; return it with the contract's schema (key ``bin``)."""
    path = Path(path)
    at = _Where(path, spec.code)
    try:
        size = path.stat().st_size
        if size > _MAX_FEED_BYTES:
            raise RegistryInputError(
                f"feed {path}: expected at most {_MAX_FEED_BYTES} bytes, found {size}",
                code="feed_too_large",
            )
        table = pq.read_table(path)
    except FileNotFoundError:
        raise RegistryInputError(f"feed {path}: file not found", code="feed_missing") from None
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise RegistryInputError(
            f"feed {path}: expected a readable Parquet file, found something else ({exc})",
            code="feed_unreadable",
        ) from None
    schema = spec.arrow_schema(_KEY)
    names = table.column_names
    if missing := [n for n in schema.names if n not in names]:
        raise at.fail(
            "feed_missing_column",
            missing[0],
            None,
            f"the contract's columns ({', '.join(schema.names)})",
            f"no such column (missing: {', '.join(missing)})",
        )
    if extra := [n for n in names if n not in schema.names]:
        raise at.fail(
            "feed_extra_column",
            extra[0],
            None,
            f"only the contract's columns ({', '.join(schema.names)})",
            f"{len(extra)} unexpected column(s): {', '.join(extra[:8])}",
        )
    if len(set(names)) != len(names):
        raise at.fail("feed_extra_column", _KEY, None, "each column once", "a repeated column")
    columns: dict[str, pa.Array] = {}
    columns[_KEY] = _check_keys(table[_KEY].combine_chunks(), spec, at)
    for f in spec.fields:
        arr = table[f.name].combine_chunks()
        if not _type_ok(arr.type, f):
            raise at.fail(
                "feed_wrong_type",
                f.name,
                None,
                f"Arrow {f.arrow_type()} ({f.dtype})",
                str(arr.type),
            )
        columns[f.name] = _check_field(arr, f, at)
    return pa.Table.from_arrays(list(columns.values()), schema=schema)


# -- ingest -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedResult:
    """What ``ingest-feed`` stored."""

    feed: FeedRecord
    entities_new: int
    profiles: int
    lists: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "feed_id": self.feed.feed_id,
            "source": self.feed.source,
            "file": self.feed.file_name,
            "sha256": self.feed.sha256,
            "as_of": self.feed.as_of.isoformat(),
            "rows": self.feed.rows,
            "entities_new": self.entities_new,
            "profiles": self.profiles,
            "lists": self.lists,
        }


def _text(table: pa.Table, name: str) -> list[Any]:
    if name not in table.column_names:
        return [None] * table.num_rows
    return list(table[name].to_pylist())


def _profiles(table: pa.Table) -> Iterable[EntityProfile]:
    bins = table[_KEY].to_pylist()
    columns = {
        n: _text(table, n)
        for n in (
            "name_ru",
            "legal_form",
            "status",
            "head_surname",
            "head_first_name",
            "head_patronymic",
            "registration_date",
            "kato",
            "oked",
        )
    }
    for i, b in enumerate(bins):
        yield EntityProfile(
            bin=b,
            name=columns["name_ru"][i],
            legal_form=columns["legal_form"][i],
            status=columns["status"][i],
            head_surname=columns["head_surname"][i],
            head_first_name=columns["head_first_name"][i],
            head_patronymic=columns["head_patronymic"][i],
            registration_date=columns["registration_date"][i],
            region=columns["kato"][i],
            oked=columns["oked"][i],
        )


def ingest_feed(
    store: Store,
    source: str,
    path: str | os.PathLike[str],
    *,
    as_of: dt.date | None = None,
    catalogue: Catalogue | None = None,
    now: dt.datetime | None = None,
) -> FeedResult:
    """Check ``path`` against ``source``'s contract and store it in one transaction.

    The feed becomes the source's current one if its ``as_of`` (default: today, UTC) is
    the latest. A file already ingested for the source is refused (``feed_replayed``).
    """
    spec = feed_spec(source, catalogue)
    path = Path(path)
    table = read_feed(path, spec)
    digest = sha256_file(path)
    if store.has_feed(source, digest):
        raise RegistryRefused(
            f"feed {path} ({source}): this file (sha256 {digest[:16]}…) was already ingested",
            code="feed_replayed",
        )
    when = now or dt.datetime.now(dt.UTC)
    with store.transaction():
        before = store.max_entity_id()
        ids = store.ensure_entities(table[_KEY])
        new = int((ids > before).sum())
        order = np.argsort(ids, kind="stable")
        rows = table.drop_columns([_KEY]).add_column(0, "entity", pa.array(ids)).take(order)
        lists: dict[str, np.ndarray] = {}
        if source == LISTS_SOURCE:
            for name in LISTS:
                lists[name] = ids[_mask(table[name])]
        profiles = list(_profiles(table)) if source == PROFILE_SOURCE else []
        record = FeedRecord(
            source=source,
            file_name=path.name,
            sha256=digest,
            as_of=as_of or when.date(),
            rows=table.num_rows,
            columns=tuple(table.column_names),
            ingested_at=when,
        )
        stored = store.add_feed(record, rows, lists=lists, profiles=profiles)
    return FeedResult(
        feed=stored,
        entities_new=new,
        profiles=len(profiles),
        lists={k: len(v) for k, v in lists.items()},
    )
