"""Read the register: one entity's indexes (``show``) and every current index (``export``).

:func:`entity_view` returns plain JSON-able data, the shape the service's views and reports
can reuse::

    {"entity": {"bin", "kind", "name", "legal_form", ...},
     "lists": ["bankrupt", ...],                     # current state lists (TAX_LISTS)
     "run": {"run_id", "release_id", "computed_at"} | None,
     "indexes": [{"index", "probability", "value", "category", "partial", "overridden",
                  "overrides": [list names], "reasons": [{"code", "source", "factor",
                  "kind"}], "coverage": {"preliminary": {SOURCE: "present"|"missing"},
                  "direct": {SOURCE: "present"|"no_record"|"not_ingested"}},
                  "history": [{"run_id", "release_id", "computed_at", "value",
                               "category", "probability"}]}]}   # newest first

:func:`export_current` writes the latest run's rows for every entity to Parquet, atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sample_protocol import _atomic
from sample_protocol.identifiers import validate_identifier
from sample_protocol.rebatch import rebatch

from .errors import RegistryInputError
from .store import (
    CATEGORIES,
    FLAG_OVERRIDDEN,
    FLAG_PARTIAL,
    OVERRIDE_LISTS,
    EntityRecord,
    ReasonCode,
    RunRecord,
    Store,
)

__all__ = [
    "EXPORT_SCHEMA",
    "ExportResult",
    "coverage_of",
    "entity_view",
    "entity_view_of",
    "export_current",
    "find_entity",
]

#: Rows per row group of ``export``.
_EXPORT_ROWS = 1 << 18
#: Columns of ``export``.
EXPORT_SCHEMA = pa.schema(
    [
        pa.field("bin", pa.string(), nullable=False),
        pa.field("index", pa.string(), nullable=False),
        pa.field("probability", pa.float64(), nullable=False),
        pa.field("value", pa.int8(), nullable=False),
        pa.field("category", pa.string(), nullable=False),
        pa.field("partial", pa.bool_(), nullable=False),
        pa.field("overridden", pa.bool_(), nullable=False),
        pa.field("missing_sources", pa.string(), nullable=False),
        pa.field("reason1", pa.string()),
        pa.field("reason2", pa.string()),
        pa.field("reason3", pa.string()),
        pa.field("reason4", pa.string()),
        pa.field("release_id", pa.string(), nullable=False),
        pa.field("computed_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    ]
)


def find_entity(store: Store, identifier: str) -> EntityRecord:
    """The entity with this BIN/IIN; an invalid identifier (``invalid_identifier``) or an
    unknown one (``unknown_entity``) is a :class:`RegistryInputError` (exit 2)."""
    value = validate_identifier(identifier.strip(), where="identifier")
    found = store.entity(value)
    if found is None:
        raise RegistryInputError(
            f"identifier {value[:4]}…{value[-4:]}: no such entity in the register",
            code="unknown_entity",
        )
    return found


def _bits(mask: int, names: tuple[str, ...] | list[str]) -> list[str]:
    return [n for i, n in enumerate(names) if mask & (1 << i)]


def coverage_of(run: RunRecord, index: str, present: int) -> dict[str, dict[str, str]]:
    """Per source the combiner of ``index`` expects, in ``run``: present, missing
    (preliminary), no_record or not_ingested (direct), from the ``present`` bit mask."""
    sources = list(run.sources)
    layout = run.meta.get("layouts", {}).get(index, {})
    not_ingested = set(run.meta.get("feeds_missing", []))
    have = set(_bits(present, sources))
    prelim = {s: "present" if s in have else "missing" for s in layout.get("preliminary", [])}
    direct = {
        s: "present" if s in have else ("not_ingested" if s in not_ingested else "no_record")
        for s in layout.get("direct", [])
    }
    return {"preliminary": prelim, "direct": direct}


def _reason(codes: dict[int, ReasonCode], code_id: int) -> dict[str, str] | None:
    code = codes.get(code_id)
    if code is None:
        return None
    return {"code": code.code, "source": code.source, "factor": code.factor, "kind": code.kind}


def entity_view(store: Store, identifier: str, *, history: int = 5) -> dict[str, Any]:
    """The entity, its current indexes with coverage and reasons, and a short history."""
    return entity_view_of(store, find_entity(store, identifier), history=history)


def entity_view_of(store: Store, entity: EntityRecord, *, history: int = 5) -> dict[str, Any]:
    """:func:`entity_view` of an entity already found (:func:`find_entity`)."""
    found = store.result_rows(entity.id, runs=max(1, history))
    codes = store.reason_codes()
    out: dict[str, Any] = {
        "entity": {
            "bin": entity.bin,
            "kind": entity.kind,
            "name": entity.name,
            "legal_form": entity.legal_form,
            "status": entity.status,
            "head_surname": entity.head_surname,
            "head_first_name": entity.head_first_name,
            "head_patronymic": entity.head_patronymic,
            "registration_date": entity.registration_date,
            "region": entity.region,
            "oked": entity.oked,
        },
        "lists": list(store.lists_of(entity.id)),
        "run": None,
        "indexes": [],
    }
    if not found:
        return out
    runs = [(r, r.indexes, rows) for r, rows in found]
    run, names, rows = runs[0]
    out["run"] = {
        "run_id": run.run_id,
        "release_id": run.release_id,
        "computed_at": run.finished_at,
    }
    past: dict[str, list[dict[str, Any]]] = {}
    for r, r_names, r_rows in runs:
        for row in r_rows:
            name = r_names[row["index"]]
            past.setdefault(name, []).append(
                {
                    "run_id": r.run_id,
                    "release_id": r.release_id,
                    "computed_at": r.finished_at,
                    "probability": round(row["probability"], 4),
                    "value": row["value"],
                    "category": CATEGORIES[row["category"]],
                }
            )
    for row in rows:
        name = names[row["index"]]
        reasons = [_reason(codes, row[f"reason{i}"]) for i in range(1, 5) if row[f"reason{i}"]]
        out["indexes"].append(
            {
                "index": name,
                "probability": round(row["probability"], 4),
                "value": row["value"],
                "category": CATEGORIES[row["category"]],
                "partial": bool(row["flags"] & FLAG_PARTIAL),
                "overridden": bool(row["flags"] & FLAG_OVERRIDDEN),
                "overrides": _bits(row["overrides"], OVERRIDE_LISTS),
                "reasons": [r for r in reasons if r is not None],
                "coverage": coverage_of(run, name, row["present"]),
                "history": past.get(name, []),
            }
        )
    return out


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What ``export`` wrote."""

    path: Path
    rows: int
    entities: int
    run_id: int | None
    release_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "rows": self.rows,
            "entities": self.entities,
            "run_id": self.run_id,
            "release_id": self.release_id,
        }


def _lookup(codes: np.ndarray, names: list[str | None]) -> pa.Array:
    """Strings of small integer ``codes`` through ``names`` (``None`` gives null)."""
    dictionary = pa.array(names, type=pa.string())
    return pc.take(dictionary, pa.array(codes.astype(np.int64)))


def export_current(store: Store, out: str | os.PathLike[str]) -> ExportResult:
    """Write the latest run's indexes of every entity to ``out`` (Parquet, atomically)."""
    out = Path(out)
    run = store.latest_run()
    if run is None:
        with _atomic.atomic_path(out) as tmp:
            pq.write_table(EXPORT_SCHEMA.empty_table(), tmp)
        return ExportResult(out, 0, 0, None, None)
    bins = store.entity_bins()
    bin_ids = bins["id"].to_numpy()
    codes = store.reason_codes()
    reason_names: list[str | None] = [None] * (max(codes, default=0) + 1)
    for i, c in codes.items():
        reason_names[i] = c.code
    sources = list(run.sources)
    rows = 0
    with _atomic.atomic_path(out) as tmp, pq.ParquetWriter(tmp, EXPORT_SCHEMA) as writer:
        for table in rebatch(store.run_results(run.run_id), _EXPORT_ROWS):
            n = table.num_rows
            entity = table["entity"].to_numpy()
            at = np.searchsorted(bin_ids, entity)
            missing = table["missing"].to_numpy()
            uniq, inverse = np.unique(missing, return_inverse=True)
            names = [",".join(_bits(int(m), sources)) for m in uniq]
            flags = table["flags"].to_numpy()
            columns = {
                "bin": pc.take(bins["bin"], pa.array(at)),
                "index": _lookup(table["index"].to_numpy(), list(run.indexes)),
                "probability": table["probability"],
                "value": table["value"],
                "category": _lookup(table["category"].to_numpy(), list(CATEGORIES)),
                "partial": pa.array((flags & FLAG_PARTIAL) != 0),
                "overridden": pa.array((flags & FLAG_OVERRIDDEN) != 0),
                "missing_sources": _lookup(inverse.reshape(-1), list(names)),
                **{
                    f"reason{i}": _lookup(table[f"reason{i}"].to_numpy(), reason_names)
                    for i in range(1, 5)
                },
                "release_id": pa.array([run.release_id] * n, pa.string()),
                "computed_at": pa.array(
                    [run.finished_at.replace(microsecond=0)] * n, pa.timestamp("ms", tz="UTC")
                ),
            }
            writer.write_table(
                pa.Table.from_arrays([columns[f.name] for f in EXPORT_SCHEMA], schema=EXPORT_SCHEMA)
            )
            rows += n
    return ExportResult(out, rows, run.entities, run.run_id, run.release_id)
