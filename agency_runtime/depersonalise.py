"""Depersonalise a test sample before it leaves the state body (DESIGN section 5).

Resolution 372, paras 20-21: a body sends the NCE *depersonalised* data on the entities
of the tax body's random list, keyed by random ID. :func:`depersonalise` does it, and
fails closed:

1. drop the direct identifiers (names, IINs, addresses, phones...);
2. coarsen every date column to its month;
3. top/bottom-code the amounts (clip to the 1st and 99th percentiles);
4. generalise the quasi-identifiers (region, activity, size, dates) until every
   combination is shared by at least ``k`` entities, suppressing the rest;
5. shuffle the rows (a permutation seeded from ``secrets``);
6. check that the key column holds random IDs only, and scan the values of every other
   column for IINs/BINs, phones, e-mails, IBANs, personal names and street addresses.

Anything found raises :class:`DepersonalisationRefused` naming the column, the pattern,
the number of rows and the first row (of the input) - never the value. Otherwise the
sample comes back with a passing :class:`~sample_protocol.records.DepersonalisationReport`
that travels with it.

Example::

    >>> import pyarrow as pa
    >>> from sample_protocol.records import new_random_ids
    >>> t = pa.table({
    ...     "random_id": list(new_random_ids(10)),
    ...     "name": ["ТОО Ромашка"] * 10,
    ...     "kato": ["751110000", "751120000"] * 5,
    ...     "tax_debt_kzt": [float(i) for i in range(10)],
    ... })
    >>> out, report = depersonalise(t, key="random_id", direct_identifiers=["name"],
    ...                             quasi_identifiers={"kato": "kato"},
    ...                             amounts=["tax_debt_kzt"], k=5, rng_seed=1)
    >>> out.column_names, report.passed, report.k_achieved
    (['random_id', 'kato', 'tax_debt_kzt'], True, 5)
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from sample_protocol.catalogue import KEY_COLUMNS, SourceSpec
from sample_protocol.records import DepersonalisationReport, is_random_id

from ._kanon import (
    KINDS,
    SUPPRESSED,
    GeneralisationSteps,
    coarsen_dates,
    drop_columns,
    generalise,
    top_bottom_code,
)
from ._pii_scan import (
    PATTERNS,
    ScanFinding,
    _scan_masks,
    scan_findings,
    scan_table,
    unscannable_columns,
)
from .errors import RuntimeInputError, RuntimeRefused

__all__ = [
    "AMOUNT_UNITS",
    "KINDS",
    "LEAK_CODES",
    "PATTERNS",
    "SUPPRESSED",
    "DepersonalisationRefused",
    "GeneralisationSteps",
    "ScanFinding",
    "coarsen_dates",
    "depersonalise",
    "drop_columns",
    "generalise",
    "scan_findings",
    "scan_table",
    "source_depersonalisation_plan",
    "top_bottom_code",
]

#: Error code of a refusal for each scanner pattern.
LEAK_CODES: Mapping[str, str] = {p: f"leak_{p}" for p in PATTERNS}
#: Units of the catalogue fields that :func:`source_depersonalisation_plan` top/bottom-codes.
AMOUNT_UNITS: tuple[str, ...] = ("KZT", "m2")


class DepersonalisationRefused(RuntimeRefused):
    """The sample failed a depersonalisation check and must not leave the body.

    ``code`` says which check: ``leak_iin_bin``, ``leak_phone``, ``leak_email``,
    ``leak_iban``, ``leak_person_name``, ``leak_street_address`` (the value scan),
    ``bad_key`` (a key is not a random ID), ``unscannable_column``, ``k_not_met`` or
    ``empty_sample``. ``findings`` lists the scan's findings, with ``first_row``
    counted in the *input* table. Messages never contain a flagged value.
    """

    code = "depersonalisation_refused"

    def __init__(
        self, message: str, *, code: str | None = None, findings: Iterable[ScanFinding] = ()
    ) -> None:
        super().__init__(message, code=code)
        self.findings: tuple[ScanFinding, ...] = tuple(findings)


def source_depersonalisation_plan(
    source: SourceSpec, columns: Iterable[str] | None = None
) -> tuple[tuple[str, ...], dict[str, str], tuple[str, ...]]:
    """``(direct_identifiers, quasi_identifiers, amounts)`` for a catalogue source.

    Direct identifiers: the owner's key columns (``bin``, ``iin``) and every field flagged
    ``direct_identifier``. Quasi-identifiers, with their kind: date32 → ``date``; a name
    with ``kato`` → ``kato``; a string with ``oked`` → ``oked``; a name with ``size`` or a
    number → ``size``; a string ending in ``_code`` → ``code``; anything else →
    ``category``. Amounts: other numeric fields in a unit of :data:`AMOUNT_UNITS`.
    With ``columns``, only the fields among them are kept (a sample carries the requested
    fields only).

    >>> from sample_protocol.catalogue import get_source
    >>> direct, quasi, amounts = source_depersonalisation_plan(get_source("STATS"))
    >>> quasi["kato"], quasi["oked"], quasi["size_class"]
    ('kato', 'oked', 'size')
    """
    keep = set(columns) if columns is not None else None

    def wanted(name: str) -> bool:
        return keep is None or name in keep

    direct = [c for c in KEY_COLUMNS if c in ("bin", "iin") and wanted(c)]
    direct += [f.name for f in source.fields if f.direct_identifier and wanted(f.name)]
    quasi: dict[str, str] = {}
    amounts: list[str] = []
    for f in source.fields:
        if f.direct_identifier or not wanted(f.name):
            continue
        if f.quasi_identifier:
            quasi[f.name] = _quasi_kind(f.name, f.dtype)
        elif f.dtype in ("int64", "float64") and f.unit in AMOUNT_UNITS:
            amounts.append(f.name)
    return tuple(direct), quasi, tuple(amounts)


def _quasi_kind(name: str, dtype: str) -> str:
    if dtype == "date32":
        return "date"
    if "kato" in name:
        return "kato"
    if "oked" in name and dtype == "string":
        return "oked"
    if "size" in name or dtype in ("int64", "float64"):
        return "size"
    if dtype == "string" and name.endswith("_code"):
        return "code"
    return "category"


def _check_plan(
    table: pa.Table,
    key: str,
    direct: Sequence[str],
    quasi: Mapping[str, str],
    amounts: Sequence[str],
    k: int,
) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise RuntimeInputError(f"k: expected an integer >= 2, found {k!r}", code="bad_k")
    if isinstance(direct, str) or isinstance(amounts, str):
        raise RuntimeInputError(
            "direct_identifiers and amounts: expected sequences of column names, found a string",
            code="bad_plan",
        )
    needed = [key, *quasi, *amounts]
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise RuntimeInputError(
            f"depersonalise: column(s) {', '.join(map(repr, missing))} not in the table; "
            f"found columns: {', '.join(table.column_names)}",
            code="missing_column",
        )
    roles = {"key": {key}, "direct": set(direct), "quasi": set(quasi), "amount": set(amounts)}
    names = list(roles)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = sorted(roles[a] & roles[b])
            if both:
                raise RuntimeInputError(
                    f"depersonalise: column(s) {', '.join(map(repr, both))} listed both as "
                    f"{a} and as {b}; expected each column in one role",
                    code="bad_plan",
                )
    bad_kinds = {c: v for c, v in quasi.items() if v not in KINDS}
    if bad_kinds:
        raise RuntimeInputError(
            f"quasi_identifiers: expected kinds among {', '.join(KINDS)}, found {bad_kinds}",
            code="bad_quasi_kind",
        )


def _check_keys(table: pa.Table, key: str) -> None:
    values = table.column(key).to_pylist()
    bad = [i for i, v in enumerate(values) if not is_random_id(v)]
    if bad:
        raise DepersonalisationRefused(
            f"key column {key!r}: expected a random ID ('rid_' + 24 base32 characters) in "
            f"every row, found something else in {len(bad)} rows (first: input row {bad[0]}); "
            "map identifiers to the tax body's random IDs first",
            code="bad_key",
        )


def depersonalise(
    table: pa.Table,
    *,
    key: str,
    direct_identifiers: Sequence[str],
    quasi_identifiers: Mapping[str, str],
    amounts: Sequence[str],
    k: int = 5,
    rng_seed: int | None = None,
    max_suppressed: float = 0.05,
    lower_q: float = 0.01,
    upper_q: float = 0.99,
) -> tuple[pa.Table, DepersonalisationReport]:
    """Depersonalise ``table`` (keyed by random IDs in ``key``) or refuse.

    ``quasi_identifiers`` maps column -> kind (see :data:`KINDS`); ``amounts`` are
    top/bottom-coded to the ``lower_q``/``upper_q`` quantiles (and come out as float64);
    every date column is coarsened to its month. ``rng_seed`` fixes the shuffle (tests
    only; by default the permutation is seeded from :mod:`secrets`). ``max_suppressed``
    is the share of rows whose quasi-identifiers may be suppressed rather than generalised
    further.

    Raises :class:`~agency_runtime.errors.RuntimeInputError` for a bad plan and
    :class:`DepersonalisationRefused` when a check fails.
    """
    _check_plan(table, key, direct_identifiers, quasi_identifiers, amounts, k)
    rows_in = table.num_rows
    if rows_in == 0:
        raise DepersonalisationRefused(
            "depersonalise: the table has no rows; expected at least one", code="empty_sample"
        )
    _check_keys(table, key)

    out, removed = drop_columns(table, direct_identifiers)
    out, coarsened = coarsen_dates(out)
    out, coded = top_bottom_code(out, list(amounts), lower_q, upper_q)
    out, steps = generalise(out, quasi_identifiers, k, key=key, max_suppressed=max_suppressed)
    if steps.k_achieved < k:
        raise DepersonalisationRefused(
            f"depersonalise: expected every combination of quasi-identifiers "
            f"({', '.join(quasi_identifiers) or 'none'}) to be shared by at least {k} "
            f"entities, found {steps.k_achieved}; the sample has {rows_in} rows",
            code="k_not_met",
        )

    seed = rng_seed if rng_seed is not None else secrets.randbits(128)
    perm = np.random.default_rng(seed).permutation(rows_in)
    out = out.take(pa.array(perm))

    opaque = unscannable_columns(out, skip_columns=[key])
    if opaque:
        raise DepersonalisationRefused(
            f"depersonalise: column(s) {', '.join(map(repr, opaque))} are binary or nested "
            "and cannot be scanned for personal data; expected strings, numbers, dates or "
            "booleans",
            code="unscannable_column",
        )
    findings = [
        ScanFinding(column, pattern, int(mask.sum()), int(perm[mask].min()))
        for column, pattern, mask in _scan_masks(out, skip_columns=[key])
    ]
    if findings:
        parts = "; ".join(
            f"column {f.column!r}: {f.pattern} in {f.rows} rows (first: input row {f.first_row})"
            for f in findings
        )
        raise DepersonalisationRefused(
            f"depersonalise: personal data found after depersonalisation, the sample must not "
            f"leave: {parts}; expected none (drop the column or list it as a direct identifier)",
            code=LEAK_CODES[findings[0].pattern],
            findings=findings,
        )

    report = DepersonalisationReport(
        k_target=k,
        k_achieved=steps.k_achieved,
        rows_in=rows_in,
        rows_out=out.num_rows,
        removed_columns=removed,
        generalised=dict(steps.levels),
        suppressed_cells=dict(steps.suppressed_cells),
        top_bottom_coded=coded,
        dates_coarsened=coarsened,
        identifier_scan=dict.fromkeys(PATTERNS, 0),
        shuffled=True,
        passed=True,
    )
    return out, report
