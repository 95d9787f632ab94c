"""Generate, write and load a synthetic economy.

Example::

    >>> from sample_protocol.synthetic import generate_economy
    >>> eco = generate_economy(1_000, seed=7, sources=["TAX", "COURT"])
    >>> eco.sources["TAX"].num_rows
    1000
    >>> sorted(eco.summary.oracle_auc)[0]
    'business_reputation'

On disk (:func:`write_economy`)::

    OUT/economy.json              seed, counts, sources, version, rates, oracle AUC, sha256
    OUT/sources/<CODE>.parquet    one table per source, in the catalogue's schema
    OUT/truth/truth.parquet       bin, index, true_probability, outcome (never a model input)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import _atomic
from ..catalogue import Catalogue, SourceSpec
from ..errors import CatalogueError, SerdeError, ValidationError
from ..serde import Record
from ._assets import make_customs, make_fin_depository, make_real_estate, make_vehicles
from ._records import make_court, make_legal_stats, make_transport, make_utilities
from ._registry import (
    make_addresses,
    make_civil_status,
    make_legal_entity,
    make_permits,
    make_stats,
)
from ._tax import make_tax
from .outcomes import INDEX_IDS, draw_outcomes, truth_table
from .population import AS_OF, make_population

__all__ = [
    "GENERATOR_VERSION",
    "MAX_ENTITIES",
    "Economy",
    "EconomySummary",
    "check_output_dir",
    "generate_economy",
    "load_economy",
    "read_summary",
    "write_economy",
]

#: Bumped whenever the same seed would give different tables.
GENERATOR_VERSION = "1.0.0"
MAX_ENTITIES = 10_000_000
SUMMARY_FILE = "economy.json"
TRUTH_FILE = "truth/truth.parquet"
#: The tax body's observed outcomes (targets, no probabilities): see ``observed_outcomes``.
OUTCOMES_FILE = "observed/outcomes.parquet"
OUTCOME_PREFIX = "outcome_"

Maker = Callable[..., pa.Table]
_MAKERS: Mapping[str, Maker] = MappingProxyType(
    {
        "TAX": make_tax,
        "PERMITS": make_permits,
        "LEGAL_ENTITY": make_legal_entity,
        "STATS": make_stats,
        "ADDRESSES": make_addresses,
        "FIN_DEPOSITORY": make_fin_depository,
        "LEGAL_STATS": make_legal_stats,
        "COURT": make_court,
        "VEHICLES": make_vehicles,
        "UTILITIES": make_utilities,
        "REAL_ESTATE": make_real_estate,
        "CIVIL_STATUS": make_civil_status,
        "TRANSPORT": make_transport,
        "CUSTOMS": make_customs,
    }
)
_CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")
TRUTH_SCHEMA = pa.schema(
    [
        pa.field("bin", pa.string(), nullable=False),
        pa.field("index", pa.string(), nullable=False),
        pa.field("true_probability", pa.float64(), nullable=False),
        pa.field("outcome", pa.bool_(), nullable=False),
    ]
)


@dataclass(frozen=True, slots=True)
class EconomySummary(Record):
    """What ``economy.json`` says about a generated economy."""

    seed: int
    n_entities: int
    as_of: dt.date
    horizon_months: int
    generator_version: str
    catalogue_version: str
    sources: tuple[str, ...]
    rows: dict[str, int]
    share_individual_entrepreneurs: float
    outcome_rates: dict[str, float]
    #: AUC of the true probability against the outcome: the ceiling for any model.
    oracle_auc: dict[str, float | None]
    #: Relative path -> sha256 of every data file (filled in by :func:`write_economy`).
    files: dict[str, str]


@dataclass(frozen=True, slots=True)
class Economy:
    """A generated economy held in memory: one Arrow table per source, and the truth."""

    summary: EconomySummary
    sources: Mapping[str, pa.Table]
    truth: pa.Table

    @property
    def seed(self) -> int:
        return self.summary.seed

    @property
    def n_entities(self) -> int:
        return self.summary.n_entities

    def source(self, code: str) -> pa.Table:
        """The table of source ``code``; :class:`CatalogueError` if it was not generated."""
        try:
            return self.sources[code]
        except KeyError:
            raise CatalogueError(
                f"source {code!r} is not in this economy; it has: {', '.join(self.sources)}",
                code="unknown_source",
            ) from None

    def observed_outcomes(self) -> pa.Table:
        """``bin`` + ``outcome_<index>`` (bool), one row per entity, entity order.

        What the tax body observes over the horizon (its lists: pseudo-enterprises,
        bankruptcies, debtors...): the targets it delivers with its TAX sample. The true
        probabilities are not in it.
        """
        columns: dict[str, pa.Array | pa.ChunkedArray] = {}
        for index in INDEX_IDS:
            part = self.truth_for(index)
            if "bin" not in columns:
                columns["bin"] = part["bin"]
            columns[f"{OUTCOME_PREFIX}{index}"] = part["outcome"]
        return pa.table(columns)

    def truth_for(self, index: str) -> pa.Table:
        """``bin``, ``true_probability``, ``outcome`` of one index, one row per entity."""
        if index not in INDEX_IDS:
            raise CatalogueError(
                f"unknown index {index!r}; known indexes: {', '.join(INDEX_IDS)}",
                code="unknown_index",
            )
        mask = pc.equal(self.truth["index"], index)
        return self.truth.filter(mask).select(["bin", "true_probability", "outcome"])


def _check_request(
    n_entities: object, seed: object, sources: Iterable[str] | None, catalogue: Catalogue
) -> tuple[str, ...]:
    if isinstance(n_entities, bool) or not isinstance(n_entities, int):
        raise ValidationError(
            f"entities: expected a whole number, found {n_entities!r}", code="bad_entity_count"
        )
    if not 1 <= n_entities <= MAX_ENTITIES:
        raise ValidationError(
            f"entities: expected 1 to {MAX_ENTITIES:,}, found {n_entities:,}",
            code="bad_entity_count",
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValidationError(
            f"seed: expected a whole number from 0 to 2**63 - 1, found {seed!r}", code="bad_seed"
        )
    known = tuple(code for code in catalogue.source_codes() if code in _MAKERS)
    if sources is None:
        return known
    if isinstance(sources, str):
        sources = [sources]
    wanted = [str(code).strip().upper() for code in sources]
    unknown = [code for code in wanted if code not in known]
    if unknown:
        raise CatalogueError(
            f"unknown source(s) {', '.join(repr(c) for c in unknown)}; known sources: "
            f"{', '.join(known)}",
            code="unknown_source",
        )
    if not wanted:
        raise ValidationError(
            f"sources: name at least one of {', '.join(known)} (or none to get them all)",
            code="no_sources",
        )
    return tuple(code for code in known if code in wanted)


def generate_economy(
    n_entities: int,
    seed: int,
    sources: Iterable[str] | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> Economy:
    """Generate ``n_entities`` entities and the tables of ``sources`` (default: all).

    Deterministic: the same ``(n_entities, seed)`` gives the same population, truth and
    tables, and a source's table does not depend on which other sources are asked for.
    """
    catalogue = Catalogue.default()
    codes = _check_request(n_entities, seed, sources, catalogue)
    say = progress or (lambda _message: None)
    say(f"population: {n_entities:,} entities (seed {seed})")
    pop = make_population(n_entities, seed)
    outcomes = draw_outcomes(pop)
    tables: dict[str, pa.Table] = {}
    for code in codes:
        spec: SourceSpec = catalogue.source(code)
        tables[code] = _MAKERS[code](pop, spec)
        say(f"source {code}: {tables[code].num_rows:,} rows")
    truth = truth_table(pop.ids, outcomes).cast(TRUTH_SCHEMA)
    auc = outcomes.oracle_auc()
    summary = EconomySummary(
        seed=seed,
        n_entities=n_entities,
        as_of=AS_OF,
        horizon_months=12,
        generator_version=GENERATOR_VERSION,
        catalogue_version=catalogue.version,
        sources=codes,
        rows={code: t.num_rows for code, t in tables.items()},
        share_individual_entrepreneurs=round(float((~pop.is_le).mean()), 6),
        outcome_rates={k: round(v, 6) for k, v in outcomes.rates().items()},
        oracle_auc={k: None if math.isnan(v) else round(v, 6) for k, v in auc.items()},
        files={},
    )
    return Economy(summary=summary, sources=MappingProxyType(tables), truth=truth)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_output_dir(out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Refuse an ``out_dir`` that :func:`write_economy` would refuse (check before work)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValidationError(f"{out}: expected a directory, found a file", code="output_exists")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValidationError(
            f"{out}: directory is not empty; choose a new directory or allow overwriting",
            code="output_exists",
        )
    return out


def write_economy(economy: Economy, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``economy`` under ``out_dir``; return the directory.

    Every file is written atomically and ``economy.json`` (with the sha256 of every data
    file) is written last, so a directory with an ``economy.json`` is always complete.
    An existing economy is replaced only with ``overwrite=True``.
    """
    out = check_output_dir(out_dir, overwrite=overwrite)
    summary_path = out / SUMMARY_FILE
    out.mkdir(parents=True, exist_ok=True)
    summary_path.unlink(missing_ok=True)  # until the new one is written, no economy here
    files: dict[str, str] = {}
    for code, table in economy.sources.items():
        rel = f"sources/{code}.parquet"
        with _atomic.atomic_path(out / rel) as tmp:
            pq.write_table(table, tmp)
        files[rel] = _sha256(out / rel)
    with _atomic.atomic_path(out / TRUTH_FILE) as tmp:
        pq.write_table(economy.truth, tmp)
    files[TRUTH_FILE] = _sha256(out / TRUTH_FILE)
    with _atomic.atomic_path(out / OUTCOMES_FILE) as tmp:
        pq.write_table(economy.observed_outcomes(), tmp)
    files[OUTCOMES_FILE] = _sha256(out / OUTCOMES_FILE)
    stale_dir = out / "sources"
    for old in stale_dir.glob("*.parquet"):
        if _CODE.match(old.stem) and old.stem not in economy.sources:
            old.unlink()
    summary = EconomySummary.from_dict({**economy.summary.to_dict(), "files": files})
    text = json.dumps(summary.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    _atomic.write_text(summary_path, text)
    return out


def read_summary(directory: str | Path) -> EconomySummary:
    """The ``economy.json`` of an economy directory (no data file is read)."""
    summary_path = Path(directory) / SUMMARY_FILE
    try:
        text = summary_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationError(
            f"{summary_path}: not found; is {Path(directory)} an economy written by write_economy?",
            code="no_economy",
        ) from None
    return EconomySummary.from_json(text, where=str(summary_path))


def load_economy(directory: str | Path, *, verify: bool = True) -> Economy:
    """Read an economy written by :func:`write_economy`.

    With ``verify`` (the default) every file's sha256 is checked against ``economy.json``
    and every source table's schema against the catalogue.
    """
    root = Path(directory)
    summary_path = root / SUMMARY_FILE
    summary = read_summary(root)
    catalogue = Catalogue.default()
    tables: dict[str, pa.Table] = {}
    expected = [f"sources/{code}.parquet" for code in summary.sources] + [TRUTH_FILE]
    missing_entries = [rel for rel in expected if rel not in summary.files]
    if missing_entries:
        raise SerdeError(f"{summary_path}: 'files' lacks {', '.join(missing_entries)}")
    for rel in expected:
        path = root / rel
        if not path.is_file():
            raise ValidationError(
                f"{path}: listed in {summary_path} but missing", code="missing_file"
            )
        if verify and _sha256(path) != summary.files[rel]:
            raise ValidationError(
                f"{path}: sha256 differs from {summary_path} (file changed or truncated)",
                code="checksum_mismatch",
            )
    for code in summary.sources:
        path = root / f"sources/{code}.parquet"
        table = pq.read_table(path)
        if verify:
            schema = catalogue.source(code).arrow_schema()
            if not table.schema.equals(schema):
                raise ValidationError(
                    f"{path}: schema differs from the catalogue's {code} contract; "
                    f"expected {schema.names}, found {table.schema.names}",
                    code="schema_mismatch",
                )
        tables[code] = table
    truth = pq.read_table(root / TRUTH_FILE)
    return Economy(summary=summary, sources=MappingProxyType(tables), truth=truth)
