"""Event sources, aggregated per entity: LEGAL_STATS (24.7), COURT (24.8), UTILITIES
(24.10), TRANSPORT (24.13)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..catalogue import SourceSpec
from ._common import (
    I64,
    bern,
    bool_col,
    build_table,
    cat_col,
    choice,
    date_col,
    int_str,
    join,
    lognormal,
    num_col,
    pois,
    round_kzt,
    sigmoid,
    stream,
)
from ._names import region_codes
from .population import Population

__all__ = ["make_court", "make_legal_stats", "make_transport", "make_utilities"]


def _cats(spec: SourceSpec, name: str) -> tuple[str, ...]:
    return spec.field(name).categories or ()


def _months_back(as_of_day: int, months: I64) -> I64:
    """First day of the month ``months`` before the observation date's month."""
    here = np.datetime64(as_of_day, "D").astype("datetime64[M]")
    out: I64 = (here - months.astype("timedelta64[M]")).astype("datetime64[D]").astype(np.int64)
    return out


def make_legal_stats(pop: Population, spec: SourceSpec) -> pa.Table:
    """Every entity: inspections and liability of the entity, its head and founders."""
    rng = stream(pop.seed, spec.code)
    n = pop.n
    s, f, p = pop.sham, pop.fragile, pop.sloppy
    inspections = pois(rng, np.exp(-1.3 + 0.3 * pop.scale + 0.3 * pop.is_le + 0.3 * s + 0.2 * f))
    found = rng.binomial(inspections, sigmoid(-1.0 + 0.5 * p + 0.6 * s)).astype(np.int64)
    offences = pois(rng, np.exp(-0.8 + 1.0 * p + 0.3 * s + 0.2 * pop.scale))
    fines = round_kzt(offences * lognormal(rng, 11.5, 0.8, n))
    criminal = pois(rng, np.exp(-5.0 + 1.2 * s + 0.4 * f))
    economic = rng.binomial(criminal, sigmoid(0.8 * s)).astype(np.int64)
    columns = {
        "inspections_3y": num_col(inspections, "int64"),
        "inspections_with_violations_3y": num_col(found, "int64"),
        "admin_offences_3y": num_col(offences, "int64"),
        "admin_fines_kzt_3y": num_col(fines, "float64"),
        "criminal_cases_3y": num_col(criminal, "int64"),
        "economic_criminal_cases_3y": num_col(economic, "int64"),
        "head_or_founder_wanted": bool_col(bern(rng, sigmoid(-6.5 + 1.4 * s))),
    }
    return build_table(spec, pop.ids, columns)


def make_court(pop: Population, spec: SourceSpec) -> pa.Table:
    """Entities that were a party to a civil case in the last three years."""
    rng = stream(pop.seed, spec.code)
    f, p, scale, le = pop.fragile, pop.sloppy, pop.scale, pop.is_le
    defendant = pop.court_defendant
    plaintiff = pois(rng, np.exp(-2.7 + 0.5 * scale + 0.3 * le))
    bankruptcy = (le & bern(rng, sigmoid(-7.0 + 1.5 * f))) | (pop.dereg & (pop.dereg_reason == 1))
    civil = defendant + plaintiff + bankruptcy
    rows = np.flatnonzero(civil > 0)
    m = rows.size
    defendant, plaintiff = defendant[rows], plaintiff[rows]
    recovery = pop.court_recovery[rows]
    claims = round_kzt(defendant * lognormal(rng, 13.0 + 0.4 * scale[rows], 1.3, m))
    recent = np.clip(3.0 * rng.random(m) ** (1.0 + np.maximum(p[rows], 0.0)), 0.01, 3.0)
    start = np.maximum(pop.reg_day[rows] + 1, pop.as_of_day - (recent * 365).astype(np.int64))
    act_day = np.minimum(start, pop.as_of_day - 1)
    elsewhere = bern(rng, 0.1, m)
    court_region = np.where(elsewhere, rng.integers(0, 20, m), pop.region[rows])
    region = region_codes(court_region)
    yy = (act_day.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 70) % 100
    case_number = join(
        region,
        int_str(rng.integers(1, 30, m), 2),
        "-",
        int_str(yy, 2),
        "-00-2/",
        int_str(rng.integers(1, 20000, m)),
    )
    columns = {
        "civil_cases_3y": num_col(civil[rows], "int64"),
        "cases_as_defendant_3y": num_col(defendant, "int64"),
        "cases_as_plaintiff_3y": num_col(plaintiff, "int64"),
        "debt_recovery_cases_3y": num_col(recovery, "int64"),
        "bankruptcy_cases_3y": num_col(bankruptcy[rows].astype(np.int64), "int64"),
        "claims_against_kzt_3y": num_col(claims, "float64"),
        "last_act_date": date_col(act_day),
        "last_act_type": cat_col(
            choice(rng, (0.5, 0.25, 0.2, 0.05), m), _cats(spec, "last_act_type")
        ),
        "last_case_region": region,
        "last_case_number": case_number,
    }
    return build_table(spec, pop.ids.take(pa.array(rows)), columns)


def make_utilities(pop: Population, spec: SourceSpec) -> pa.Table:
    """Entities with at least one month of non-payment over one month in 36 months."""
    rng = stream(pop.seed, spec.code)
    rows = np.flatnonzero(pop.util_m36 > 0)
    m = rows.size
    m36 = pop.util_m36[rows]
    m12 = pop.util_m12[rows]
    stick = 0.3 + 0.5 * sigmoid(pop.sloppy[rows])
    run = np.minimum(m36, 1 + rng.binomial(m36 - 1, stick)).astype(np.int64)
    bill = lognormal(rng, 10.3 + 0.5 * pop.scale[rows], 0.7, m)
    arrears = round_kzt(m12 * bill * rng.uniform(0.5, 1.0, m))
    back = np.where(m12 > 0, rng.integers(1, 13, m), rng.integers(13, 37, m))
    providers = 1 + rng.binomial(2, 0.15 + 0.2 * sigmoid(pop.fragile[rows])).astype(np.int64)
    service = np.where(providers > 1, 4, choice(rng, (0.45, 0.2, 0.25, 0.1), m))
    columns = {
        "nonpayment_months_12m": num_col(m12, "int64"),
        "nonpayment_months_36m": num_col(m36, "int64"),
        "max_consecutive_months": num_col(run, "int64"),
        "arrears_kzt": num_col(arrears, "float64"),
        "last_nonpayment_month": date_col(_months_back(pop.as_of_day, back)),
        "providers_with_arrears": num_col(providers, "int64"),
        "service_type": cat_col(service, _cats(spec, "service_type")),
    }
    return build_table(spec, pop.ids.take(pa.array(rows)), columns)


def make_transport(pop: Population, spec: SourceSpec) -> pa.Table:
    """Entities with a transport violation or an international transport certificate."""
    rng = stream(pop.seed, spec.code)
    carrier = pop.section == 7
    trucks = pop.trucks
    certificate = (trucks > 0) & bern(rng, sigmoid(-2.2 + 1.6 * carrier + 0.5 * pop.scale))
    cards = np.where(certificate, np.maximum(1, rng.binomial(trucks, 0.7)), 0)
    lam = np.exp(-3.3 + 0.8 * np.log1p(pop.vehicles + trucks) + 0.6 * pop.sloppy + 0.3 * pop.sham)
    violations = pois(rng, lam)
    overweight = rng.binomial(violations, np.where(trucks > 0, 0.55, 0.1)).astype(np.int64)
    rows = np.flatnonzero((violations > 0) | certificate)
    columns = {
        "violations_3y": num_col(violations[rows], "int64"),
        "overweight_violations_3y": num_col(overweight[rows], "int64"),
        "has_international_certificate": bool_col(certificate[rows]),
        "international_cards_count": num_col(cards[rows], "int64"),
    }
    return build_table(spec, pop.ids.take(pa.array(rows)), columns)
