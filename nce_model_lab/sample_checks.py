"""The checks a sample table must pass before the lab stores it (step 4 of a round).

:func:`check_sample` compares a depersonalised sample (Parquet keyed by ``rid``) with its
manifest, the lab's request and the catalogue's contract, and raises
:class:`~nce_model_lab.errors.SampleRefused` with the code of the first check that fails:

* ``sample_manifest_mismatch``: rows or columns differ from the manifest;
* ``sample_extra_columns`` / ``sample_missing_columns``: the columns are not exactly the
  requested fields (less those the report declares removed) plus ``rid``, plus the
  ``outcome_<index>`` columns in the TAX sample;
* ``sample_bad_rid`` / ``sample_duplicate_rid`` / ``sample_too_many_rows``: every ``rid`` a
  random ID, each once, no more rows than entities requested;
* ``sample_wrong_type`` / ``sample_null_values`` / ``sample_out_of_range``: the catalogue's
  types, nullability, ranges and categories; a column the report says was generalised may
  be text, a top/bottom-coded integer column may be float64;
* ``sample_identifier_leak``: a valid IIN/BIN in any text or integer value, or a float
  column mostly made of them (:data:`FLOAT_IDENTIFIER_SHARE`).

Messages name the column and the first row, never a value.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sample_protocol.catalogue import Catalogue, FieldSpec
from sample_protocol.identifier_columns import identifier_mask
from sample_protocol.records import SampleManifest, SampleRequest, is_random_id

from .errors import SampleRefused
from .training_table import KEY, OUTCOME_PREFIX

__all__ = ["FLOAT_IDENTIFIER_SHARE", "check_sample"]

#: A float column is a leak when more than this share of its values read as an IIN/BIN.
#: Integral amounts between 10**8 and 10**12 read as a valid BIN 0.4-3% of the time, so a
#: single such value is no evidence; a BIN column loaded as float64 is. The same rule as
#: the bodies' scan before a sample leaves (``agency_runtime``), so both sides agree.
FLOAT_IDENTIFIER_SHARE = 0.2


def _refuse(code: str, message: str) -> SampleRefused:
    return SampleRefused(message, code=code)


def _is_string(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _type_ok(t: pa.DataType, spec: FieldSpec, manifest: SampleManifest) -> bool:
    report = manifest.report
    base = spec.arrow_type()
    if t.equals(base) or (_is_string(base) and _is_string(t)):
        return True
    if pa.types.is_null(t):
        return spec.nullable
    if spec.name in report.generalised and _is_string(t):
        return True
    return bool(
        spec.name in report.top_bottom_coded and spec.dtype == "int64" and pa.types.is_float64(t)
    )


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _check_values(where: str, column: pa.ChunkedArray, spec: FieldSpec, generalised: bool) -> None:
    if not spec.nullable and column.null_count:
        rows = np.asarray(column.is_null().to_numpy(zero_copy_only=False))
        raise _refuse(
            "sample_null_values",
            f"{where} column {spec.name!r}: expected no missing values, found "
            f"{column.null_count} (first: row {_first(rows)})",
        )
    t = column.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        values = column.to_numpy(zero_copy_only=False).astype(np.float64)
        present = ~np.isnan(values)
        bad = np.zeros(len(values), dtype=bool)
        if spec.min_value is not None:
            bad |= present & (values < spec.min_value)
        if spec.max_value is not None:
            bad |= present & (values > spec.max_value)
        bad |= np.isinf(values) & (spec.min_value is not None or spec.max_value is not None)
        if bad.any():
            raise _refuse(
                "sample_out_of_range",
                f"{where} column {spec.name!r}: expected values in [{spec.min_value}, "
                f"{spec.max_value}], found {int(bad.sum())} outside (first: row {_first(bad)})",
            )
    elif spec.dtype == "category" and spec.categories and not generalised and _is_string(t):
        known = pc.is_in(column, value_set=pa.array(spec.categories, pa.string()))
        bad = np.asarray(
            pc.and_(pc.is_valid(column), pc.invert(known)).to_numpy(zero_copy_only=False)
        )
        if bad.any():
            raise _refuse(
                "sample_out_of_range",
                f"{where} column {spec.name!r}: expected one of {', '.join(spec.categories)}, "
                f"found {int(bad.sum())} other values (first: row {_first(bad)})",
            )


def _check_rids(where: str, table: pa.Table, sample_size: int) -> None:
    column = table[KEY]
    if not _is_string(column.type):
        raise _refuse(
            "sample_bad_rid", f"{where} column {KEY!r}: expected strings, found {column.type}"
        )
    values = column.to_pylist()
    bad = np.array([not is_random_id(v) for v in values], dtype=bool)
    if bad.any():
        raise _refuse(
            "sample_bad_rid",
            f"{where} column {KEY!r}: expected a random ID ('rid_' + 24 base32 characters) "
            f"in every row, found {int(bad.sum())} other values (first: row {_first(bad)})",
        )
    unique = pc.count_distinct(column).as_py()
    if unique != len(values):
        seen: set[str] = set()
        first = 0
        for first, value in enumerate(values):  # noqa: B007 - the index is the result
            if value in seen:
                break
            seen.add(value)
        raise _refuse(
            "sample_duplicate_rid",
            f"{where} column {KEY!r}: expected each random ID once, found "
            f"{len(values) - unique} repeated (first: row {first})",
        )
    if len(values) > sample_size:
        raise _refuse(
            "sample_too_many_rows",
            f"{where}: expected at most the {sample_size} entities requested, found "
            f"{len(values)} rows",
        )


def check_sample(
    table: pa.Table,
    manifest: SampleManifest,
    request: SampleRequest,
    catalogue: Catalogue | None = None,
    *,
    where: str = "sample",
) -> None:
    """Check a sample table against its manifest, the request and the catalogue.

    Raises :class:`~nce_model_lab.errors.SampleRefused` with the code of the first
    failed check (see the module docstring); returns ``None`` when all pass.
    """
    cat = catalogue or Catalogue.default()
    names = table.column_names
    if table.num_rows != manifest.row_count or sorted(names) != sorted(manifest.columns):
        raise _refuse(
            "sample_manifest_mismatch",
            f"{where}: the manifest describes {manifest.row_count} rows with columns "
            f"{', '.join(manifest.columns)}; the Parquet holds {table.num_rows} rows with "
            f"columns {', '.join(names)}",
        )
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise _refuse("sample_extra_columns", f"{where}: column(s) {', '.join(twice)} appear twice")
    spec = cat.source(manifest.source)
    removed = set(manifest.report.removed_columns)
    fields = [f for f in request.source(manifest.source).fields if f not in removed]
    outcomes = [f"{OUTCOME_PREFIX}{i}" for i in cat.index_ids()] if manifest.source == "TAX" else []
    expected = [KEY, *fields, *outcomes]
    extra = [n for n in names if n not in expected]
    if extra:
        raise _refuse(
            "sample_extra_columns",
            f"{where}: column(s) {', '.join(extra)} were not requested; expected only "
            f"{', '.join(expected)}",
        )
    missing = [n for n in expected if n not in names]
    if missing:
        hint = (
            "; the tax body prepares its TAX sample with the outcomes file"
            if any(n.startswith(OUTCOME_PREFIX) for n in missing)
            else ""
        )
        raise _refuse(
            "sample_missing_columns",
            f"{where}: column(s) {', '.join(missing)} missing (requested, and not declared "
            f"removed by the depersonalisation report){hint}",
        )
    _check_rids(where, table, request.sample_size)
    for name in fields:
        field_spec = spec.field(name)
        column = table[name]
        if not _type_ok(column.type, field_spec, manifest):
            allowed = [str(field_spec.arrow_type())]
            if name in manifest.report.generalised:
                allowed.append("string (generalised)")
            raise _refuse(
                "sample_wrong_type",
                f"{where} column {name!r}: expected {' or '.join(allowed)}, found {column.type}",
            )
        _check_values(where, column, field_spec, name in manifest.report.generalised)
    for name in outcomes:
        column = table[name]
        if not pa.types.is_boolean(column.type) or column.null_count:
            raise _refuse(
                "sample_wrong_type",
                f"{where} column {name!r}: expected an outcome (bool, no missing values), "
                f"found {column.type} with {column.null_count} missing",
            )
    for name in names:
        if name != KEY:  # every rid is a random ID: never 12 digits in a row
            _scan(where, name, table[name])


def _scan(where: str, name: str, column: pa.ChunkedArray) -> None:
    """Refuse a column holding IINs/BINs: text and integers value by value, floats whole."""
    mask = identifier_mask(column)
    if not mask.any():
        return
    if pa.types.is_floating(column.type):
        values = column.to_numpy(zero_copy_only=False).astype(np.float64)
        present = int(np.count_nonzero(np.isfinite(values)))
        if mask.sum() <= FLOAT_IDENTIFIER_SHARE * present:
            return  # integral amounts read as a valid BIN now and then: not a leak
        raise _refuse(
            "sample_identifier_leak",
            f"{where} column {name!r}: {int(mask.sum())} of {present} values read as a valid "
            f"IIN/BIN (more than {FLOAT_IDENTIFIER_SHARE:.0%}: a column of identifiers "
            f"stored as numbers; first: row {_first(mask)}); expected none",
        )
    raise _refuse(
        "sample_identifier_leak",
        f"{where} column {name!r}: {int(mask.sum())} values hold a valid IIN/BIN "
        f"(first: row {_first(mask)}); expected none in a depersonalised sample",
    )
