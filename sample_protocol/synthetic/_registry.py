"""Registry sources: LEGAL_ENTITY (24.3), STATS (24.4), ADDRESSES (24.5), PERMITS (24.2),
CIVIL_STATUS (24.12)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .. import identifier_gen
from ..catalogue import SourceSpec
from ._common import (
    I64,
    Bool,
    bern,
    bool_col,
    build_table,
    cat_col,
    date_col,
    int_str,
    num_col,
    pois,
    sigmoid,
    stream,
)
from ._common import with_nulls as _masked
from ._names import (
    company_names,
    emails,
    first_names,
    kato_codes,
    legal_form_codes,
    phones,
    street_addresses,
    surnames,
)
from ._pools import COMPANY_WORDS_A, SECTIONS
from .population import Population, digit_matrix

__all__ = ["make_addresses", "make_civil_status", "make_legal_entity", "make_permits", "make_stats"]


def _cats(spec: SourceSpec, name: str) -> tuple[str, ...]:
    return spec.field(name).categories or ()


def _recent_day(rng: np.random.Generator, pop: Population, rows: I64, years: float) -> I64:
    """A day within the last ``years`` before the observation date, after registration."""
    start = np.maximum(pop.reg_day[rows] + 1, pop.as_of_day - int(years * 365))
    span = np.maximum(pop.as_of_day - start, 1)
    out: I64 = start + (rng.random(rows.size) * span).astype(np.int64)
    return np.minimum(out, pop.as_of_day - 1)


def _sex_from_iin(iins: np.ndarray) -> Bool:
    out: Bool = digit_matrix(iins)[:, 6] % 2 == 0
    return out


def make_legal_entity(pop: Population, spec: SourceSpec) -> pa.Table:
    """Legal entities, branches and representative offices only (no entrepreneurs)."""
    rng = stream(pop.seed, spec.code)
    rows = np.flatnonzero(pop.is_le)
    m = rows.size
    s, f = pop.sham[rows], pop.fragile[rows]
    form = legal_form_codes(pop, rows)
    head_office = form <= 4

    dereg = pop.dereg[rows]
    reason = pop.dereg_reason[rows]
    deciding = ~dereg & bern(rng, sigmoid(-5.6 + 0.9 * f))
    status = np.where(deciding, 1, 0)
    status = np.where(dereg, np.where(reason == 2, 2, 3), status)
    decision_day = np.where(
        dereg, pop.dereg_day[rows] - rng.integers(30, 200, m), _recent_day(rng, pop, rows, 1.0)
    )
    decision_day = np.maximum(decision_day, pop.reg_day[rows])

    # heads: sham companies often share a nominee head
    nominee = pop.nominee_head[rows]
    n_pool = max(1, int(nominee.sum()) // 4)
    head_ids = identifier_gen.random_iins(rng, m + n_pool, birth_years=(1950, 2000))
    head_of = np.where(nominee, m + rng.integers(0, n_pool, m), np.arange(m))
    _, inverse, counts = np.unique(head_of, return_inverse=True, return_counts=True)
    head_count = counts[inverse]
    heads = np.asarray(head_ids)[head_of]
    female = _sex_from_iin(heads)
    root = (head_of * 7919) % 60
    kazakh_style = head_of % 5 == 0
    no_head = bern(rng, 0.02, m)
    head_day = np.where(
        bern(rng, sigmoid(-1.5 + 0.9 * s)),
        _recent_day(rng, pop, rows, 1.0),
        pop.reg_day[rows] + (rng.random(m) * (pop.as_of_day - pop.reg_day[rows])).astype(np.int64),
    )

    founders = np.where(head_office, 1 + pois(rng, np.exp(-0.9 + 0.2 * pop.scale[rows])), 0)
    founders = np.where(form == 1, founders + pois(rng, np.full(m, 5.0)), founders)
    founders_legal = rng.binomial(founders, 0.1 + 0.2 * sigmoid(s)).astype(np.int64)
    branches = np.where(head_office, pois(rng, np.exp(-2.8 + 0.8 * pop.scale[rows])), 0)
    foreign = (pop.bin_type[rows] == 5) | bern(rng, sigmoid(-3.6 + 0.3 * pop.scale[rows] + 0.3 * s))

    word = pa.array(list(COMPANY_WORDS_A)).take(pa.array(pop.name_a[rows] % len(COMPANY_WORDS_A)))
    columns: dict[str, pa.Array] = {
        "name_ru": company_names(pop, rows),
        "status": cat_col(status, _cats(spec, "status")),
        "registration_date": date_col(pop.reg_day[rows]),
        "legal_form": cat_col(form, _cats(spec, "legal_form")),
        "foreign_participation": bool_col(foreign),
        "branches_count": num_col(branches, "int64"),
        "founders_total": num_col(founders, "int64"),
        "founders_legal": num_col(founders_legal, "int64"),
        "head_iin": pa.array(heads, type=pa.string(), mask=no_head),
        "head_surname": _masked(surnames(root, female, kazakh_style), no_head),
        "head_first_name": _masked(first_names(head_of % 25, female), no_head),
        "head_appointed_date": date_col(np.minimum(head_day, pop.as_of_day - 1), no_head),
        "head_companies_count": num_col(head_count, "int64", no_head),
        "oked": int_str(pop.oked[rows], 5),
        "kato": kato_codes(pop, rows),
        "street_address": street_addresses(pop, rows),
        "phone": _masked(phones(rng, m), bern(rng, 0.15, m)),
        "email": _masked(emails(rng, word), bern(rng, 0.35, m)),
        "liquidation_decision_date": date_col(decision_day, status == 0),
    }
    return build_table(spec, pop.ids.take(pa.array(rows)), columns)


_KRP_UPPER = (5, 10, 15, 20, 50, 100, 150, 200, 250, 500, 1000)


def make_stats(pop: Population, spec: SourceSpec) -> pa.Table:
    """Every active entity: location, activity and size class."""
    rng = stream(pop.seed, spec.code)
    n = pop.n
    rows = np.arange(n)
    employees = np.round(pop.staff * np.exp(0.15 * rng.standard_normal(n))).astype(np.int64)
    krp = np.searchsorted(np.array(_KRP_UPPER), employees, side="left")
    size = np.searchsorted(np.array((15, 100, 250)), employees, side="left")
    has_secondary = bern(rng, np.where(pop.is_le, 0.55, 0.35))
    lo = np.array([sec[1] for sec in SECTIONS])
    hi = np.array([sec[2] for sec in SECTIONS])
    other = rng.integers(0, len(SECTIONS) - 2, n)
    division = lo[other] + (rng.random(n) * (hi[other] - lo[other] + 1)).astype(np.int64)
    secondary = division * 1000 + rng.integers(100, 1000, n)
    columns = {
        "kato": kato_codes(pop, rows),
        "oked": int_str(pop.oked, 5),
        "oked_section": cat_col(pop.section, _cats(spec, "oked_section")),
        "secondary_oked": _masked(int_str(secondary, 5), ~has_secondary),
        "krp_code": cat_col(krp, _cats(spec, "krp_code")),
        "size_class": cat_col(size, _cats(spec, "size_class")),
    }
    return build_table(spec, pop.ids, columns)


def make_addresses(pop: Population, spec: SourceSpec) -> pa.Table:
    """Entities with an address of a registered real-estate object."""
    rng = stream(pop.seed, spec.code)
    key = ((pop.region * 64 + pop.street) * 1024 + pop.house) * 1024 + pop.office
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    at_address = counts[inverse]
    covered = pop.is_le | (pop.objects > 0) | bern(rng, 0.6, pop.n)
    rows = np.flatnonzero(covered)
    m = rows.size
    residential = np.where(pop.is_le[rows], bern(rng, 0.15, m), bern(rng, 0.7, m))
    kind = np.where(residential, 1, 0)
    kind = np.where((pop.section[rows] == 0) & bern(rng, 0.6, m), 2, kind)
    kind = np.where(pop.mass_address[rows], 0, kind)
    columns = {
        "street_address": street_addresses(pop, rows),
        "kato": kato_codes(pop, rows),
        "objects_registered": num_col(pop.objects[rows], "int64"),
        "entities_at_address": num_col(at_address[rows], "int64"),
        "address_type": cat_col(kind, _cats(spec, "address_type")),
    }
    return build_table(spec, pop.ids.take(pa.array(rows)), columns)


_LICENSED = {5: 1, 8: 2, 16: 3, 7: 4, 15: 5, 4: 6}  # section index -> main_permit_area


def make_permits(pop: Population, spec: SourceSpec) -> pa.Table:
    """Entities with a permit or notification on record."""
    rng = stream(pop.seed, spec.code)
    licensed = np.isin(pop.section, list(_LICENSED))
    s, f, scale = pop.sham, pop.fragile, pop.scale
    s_pos = np.maximum(s, 0.0)
    covered = bern(
        rng, sigmoid(-1.3 + 1.1 * licensed + 0.4 * scale + 0.3 * pop.is_le - 0.4 * s_pos)
    )
    rows = np.flatnonzero(covered)
    s, f, scale, s_pos = s[rows], f[rows], scale[rows], s_pos[rows]
    active = pois(rng, np.exp(0.1 + 0.35 * scale - 0.35 * s_pos))
    issued = pois(rng, np.exp(-0.3 + 0.3 * scale))
    reissued = pois(rng, np.exp(-1.8 + 0.2 * scale))
    suspended = pois(rng, np.exp(-3.6 + 0.7 * s + 0.5 * f))
    cancelled = pois(rng, np.exp(-3.9 + 0.9 * s))
    terminated = pois(rng, np.exp(-2.7 + 0.6 * f))
    notifications = pois(rng, np.exp(0.0 + 0.2 * scale))
    area = np.array([_LICENSED.get(i, 7) for i in range(len(SECTIONS))])[pop.section[rows]]
    area = np.where(active == 0, 0, area)
    events = issued + reissued + suspended + cancelled + terminated + notifications
    columns = {
        "permits_active": num_col(active, "int64"),
        "permits_issued_3y": num_col(issued, "int64"),
        "permits_reissued_3y": num_col(reissued, "int64"),
        "permits_suspended_3y": num_col(suspended, "int64"),
        "permits_cancelled_3y": num_col(cancelled, "int64"),
        "permits_terminated_3y": num_col(terminated, "int64"),
        "notifications_3y": num_col(notifications, "int64"),
        "main_permit_area": cat_col(area, _cats(spec, "main_permit_area")),
        "last_permit_date": date_col(_recent_day(rng, pop, rows, 3.0), events == 0),
    }
    return build_table(spec, pop.ids.take(pa.array(rows)), columns)


def make_civil_status(pop: Population, spec: SourceSpec) -> pa.Table:
    """Every entity: counts of entities affiliated through family ties (no details)."""
    rng = stream(pop.seed, spec.code)
    s, f = pop.sham, pop.fragile
    affiliated = pois(rng, np.exp(-0.5 + 0.85 * s + 0.2 * pop.scale))
    columns = {
        "affiliated_entities_count": num_col(affiliated, "int64"),
        "affiliated_listed_count": num_col(
            rng.binomial(affiliated, sigmoid(-2.5 + 1.2 * s)), "int64"
        ),
        "affiliated_new_12m": num_col(rng.binomial(affiliated, sigmoid(-2.0 + 0.9 * s)), "int64"),
        "affiliated_deregistered_3y": num_col(
            rng.binomial(affiliated, sigmoid(-2.4 + 0.6 * f + 0.5 * s)), "int64"
        ),
    }
    return build_table(spec, pop.ids, columns)
