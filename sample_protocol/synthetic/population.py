"""The population of business entities and their latent risk drivers.

Every entity has observable traits (kind, identifier, region, activity, registration
date, size, regime, assets) and three **latent drivers** that no source shows directly:

- ``sham``: propensity to be a sham company (invoices without real activity);
- ``fragile``: financial fragility;
- ``sloppy``: payment sloppiness.

Each driver is a context part (what the traits imply: young firms, some activities, small
size) plus a correlated personal part. The drivers shape the features of many sources
and the outcomes, which is what makes the sources informative and partly redundant.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from .. import identifier_gen, identifiers
from ._common import F64, I64, Bool, bern, choice, day_number, pois, sigmoid, stream
from ._pools import REGIONS, SECTIONS

__all__ = ["AS_OF", "REGIMES", "Population", "digit_matrix", "make_population"]

#: Observation date: features describe the past, outcomes the following 12 months.
AS_OF = dt.date(2025, 1, 1)
FIRST_YEAR = 1995

#: Tax regimes, in the order of the TAX contract's categories.
REGIMES: tuple[str, ...] = (
    "general",
    "simplified_declaration",
    "patent",
    "retail_tax",
    "agricultural",
    "fixed_deduction",
)
_REGIME_LE = (0.76, 0.19, 0.0, 0.03, 0.0, 0.02)
_REGIME_IE = (0.10, 0.66, 0.10, 0.04, 0.0, 0.10)

#: Correlations of the personal parts of (sham, fragile, sloppy).
_DRIVER_CORR = np.array([[1.0, 0.30, 0.35], [0.30, 1.0, 0.50], [0.35, 0.50, 1.0]])

SHARE_IE = 0.65
_ENTITY_TYPES = {
    identifiers.EntityType.RESIDENT: 0.95,
    identifiers.EntityType.NON_RESIDENT: 0.02,
    identifiers.EntityType.JOINT_IE: 0.03,
}
_UNITS = {
    identifiers.UnitType.HEAD_OFFICE: 0.88,
    identifiers.UnitType.BRANCH: 0.08,
    identifiers.UnitType.REPRESENTATIVE: 0.02,
    identifiers.UnitType.PEASANT_FARM: 0.02,
}


@dataclass(frozen=True, slots=True)
class Population:
    """Column arrays, one element per entity (all numpy, plus the Arrow id column)."""

    n: int
    seed: int
    as_of: dt.date
    ids: pa.Array  # BIN (legal entities) or IIN (individual entrepreneurs)
    is_le: Bool
    bin_type: I64  # 4, 5, 6 for legal entities, 0 for entrepreneurs
    bin_unit: I64  # 0 head office, 1 branch, 2 representative office, 3 peasant farm
    female: Bool  # entrepreneurs: from the IIN; legal entities: unused
    birth_day: I64  # entrepreneurs: from the IIN; legal entities: 0
    region: I64  # index into REGIONS
    district: I64
    section: I64  # index into SECTIONS
    oked: I64  # 5-digit OKED code
    reg_day: I64  # days since 1970-01-01
    age_years: F64
    scale: F64  # latent log size
    staff: I64
    regime: I64  # index into REGIMES
    income: F64  # annual income, KZT (0 when none)
    vehicles: I64
    trucks: I64
    objects: I64  # real-estate objects held
    sham: F64
    fragile: F64
    sloppy: F64
    dereg: Bool
    dereg_day: I64  # 0 when not deregistered
    dereg_reason: I64  # index into TAX deregistration_reason categories, -1 when none
    mass_address: Bool
    # observed history that also shapes the outcomes (state dependence)
    non_filing: Bool  # TAX
    has_debt: Bool  # TAX: tax debt at the observation date
    pseudo_listed: Bool  # TAX: already on the pseudo-enterprise list
    util_m36: I64  # UTILITIES: months of non-payment in the last 36
    util_m12: I64  # UTILITIES: ... of which in the last 12
    court_defendant: I64  # COURT: civil cases as defendant, last 3 years
    court_recovery: I64  # COURT: ... of which debt recovery
    nominee_head: Bool  # LEGAL_ENTITY: headed by a nominee who heads several companies
    street: I64
    house: I64
    office: I64
    name_a: I64  # company: first word; entrepreneur: surname root
    name_b: I64  # company: second word; entrepreneur: first name

    @property
    def as_of_day(self) -> int:
        return day_number(self.as_of)

    @property
    def young(self) -> Bool:
        out: Bool = self.age_years < 2.0
        return out


def digit_matrix(ids: np.ndarray) -> npt.NDArray[np.int64]:
    """The 12 digits of each identifier string, as an (n, 12) integer matrix."""
    arr = np.asarray(ids)
    raw: npt.NDArray[Any]
    if arr.dtype == np.dtype("<U12"):
        raw = arr.view(np.uint32).reshape(-1, 12)  # zero-copy: one code point per digit
    else:
        raw = arr.astype("S12").view(np.uint8).reshape(-1, 12)
    out: npt.NDArray[np.int64] = raw.astype(np.int64) - 48
    return out


def _digits(matrix: npt.NDArray[np.int64], start: int, stop: int) -> I64:
    """Digits ``start:stop`` of each row of a :func:`digit_matrix`, read as a number."""
    weights = 10 ** np.arange(stop - start - 1, -1, -1)
    out: I64 = matrix[:, start:stop] @ weights
    return out


def _civil_day(year: I64, month: I64, day: I64) -> I64:
    d = (
        (year - 1970).astype("datetime64[Y]").astype("datetime64[M]")
        + (month - 1).astype("timedelta64[M]")
    ).astype("datetime64[D]") + (day - 1).astype("timedelta64[D]")
    out: I64 = d.astype(np.int64)
    return out


def _registration_ages(rng: np.random.Generator, n: int, mean_years: float) -> F64:
    """Ages in years, skewed to young entities, within the 30 years since 1995."""
    span = AS_OF.year - FIRST_YEAR
    age = rng.exponential(mean_years, n)
    over = age >= span
    age[over] = rng.uniform(0.0, span, int(over.sum()))
    out: F64 = age
    return out


def _legal_entity_ids(
    rng: np.random.Generator, n: int, as_of_day: int
) -> tuple[np.ndarray, I64, I64, I64]:
    """BINs registered over 30 years: (ids, registration day, type digit, unit digit)."""
    ages = _registration_ages(rng, n, 8.0)
    years = np.minimum(AS_OF.year - 1, np.floor(AS_OF.year - ages)).astype(np.int64)
    years = np.maximum(years, FIRST_YEAR)
    ids = np.empty(n, dtype="<U12")
    order = np.argsort(years, kind="stable")
    bounds = np.searchsorted(years[order], np.arange(FIRST_YEAR, AS_OF.year + 1))
    for i, year in enumerate(range(FIRST_YEAR, AS_OF.year)):
        sel = order[bounds[i] : bounds[i + 1]]
        if sel.size:
            ids[sel] = identifier_gen.random_bins(
                rng,
                int(sel.size),
                years=(year, year),
                entity_type_probs=_ENTITY_TYPES,
                unit_probs=_UNITS,
            )
    digits = digit_matrix(ids)
    type_digit = _digits(digits, 4, 5)
    unit_digit = _digits(digits, 5, 6)
    reg_year = 2000 + _digits(digits, 0, 2)
    reg_year = np.where(reg_year > AS_OF.year, reg_year - 100, reg_year)
    month = _digits(digits, 2, 4)
    day = rng.integers(1, 29, n)
    reg = np.minimum(_civil_day(reg_year, month, day), as_of_day - 1)
    return ids, reg, type_digit, unit_digit


def _entrepreneur_ids(
    rng: np.random.Generator, n: int, as_of_day: int
) -> tuple[np.ndarray, I64, Bool, I64]:
    """IINs of entrepreneurs: (ids, registration day, female, birth day)."""
    ids = identifier_gen.random_iins(rng, n, birth_years=(1950, 2005))
    digits = digit_matrix(ids)
    century_sex = _digits(digits, 6, 7)
    female = century_sex % 2 == 0
    century = 1800 + 100 * ((century_sex - 1) // 2)
    birth = _civil_day(
        century + _digits(digits, 0, 2), _digits(digits, 2, 4), _digits(digits, 4, 6)
    )
    adult = birth + 18 * 365 + 5
    first = max(day_number(dt.date(FIRST_YEAR, 1, 1)), 0)
    reg = as_of_day - np.round(_registration_ages(rng, n, 5.0) * 365.25).astype(np.int64)
    reg = np.clip(reg, first, as_of_day - 1)
    late = reg < adult
    span = np.maximum(as_of_day - adult[late], 1)
    reg[late] = adult[late] + (rng.random(int(late.sum())) * span).astype(np.int64)
    reg = np.minimum(reg, as_of_day - 1)
    return ids, reg, female, birth


def make_population(n: int, seed: int) -> Population:
    """Draw ``n`` entities (about 2 in 3 individual entrepreneurs) for ``seed``."""
    rng = stream(seed, "population")
    as_of_day = day_number(AS_OF)
    is_le = rng.random(n) >= SHARE_IE
    n_le = int(is_le.sum())

    ids = np.empty(n, dtype="<U12")
    reg_day = np.zeros(n, dtype=np.int64)
    bin_type = np.zeros(n, dtype=np.int64)
    bin_unit = np.zeros(n, dtype=np.int64)
    female = np.zeros(n, dtype=np.bool_)
    birth_day = np.zeros(n, dtype=np.int64)
    ids[is_le], reg_day[is_le], bin_type[is_le], bin_unit[is_le] = _legal_entity_ids(
        rng, n_le, as_of_day
    )
    ie = ~is_le
    ids[ie], reg_day[ie], female[ie], birth_day[ie] = _entrepreneur_ids(rng, n - n_le, as_of_day)
    age = (as_of_day - reg_day) / 365.25

    region = choice(rng, [r[3] for r in REGIONS], n)
    district = rng.integers(1, 10, n)
    w_ie = np.array([s[3] for s in SECTIONS])
    w_le = np.array([s[4] for s in SECTIONS])
    section = np.where(is_le, choice(rng, w_le, n), choice(rng, w_ie, n))
    lo = np.array([s[1] for s in SECTIONS])[section]
    hi = np.array([s[2] for s in SECTIONS])[section]
    division = lo + (rng.random(n) * (hi - lo + 1)).astype(np.int64)
    oked = division * 1000 + rng.integers(1, 10, n) * 100 + rng.integers(1, 10, n) * 10
    oked += rng.integers(0, 10, n)
    affinity = np.array([s[5] for s in SECTIONS])[section]

    big_city = region < 3
    young = age < 2.0
    scale = rng.standard_normal(n) + np.where(is_le, 0.0, -0.3) + 0.15 * np.log1p(age)
    z = rng.standard_normal((n, 3)) @ np.linalg.cholesky(_DRIVER_CORR).T
    sham = z[:, 0] + 0.45 * is_le + affinity + 0.65 * young + 0.2 * big_city - 0.15 * scale
    fragile = z[:, 1] + 0.45 * young - 0.3 * scale + 0.25 * np.isin(section, (5, 8))
    sloppy = z[:, 2] + 0.2 * ~is_le - 0.1 * scale + 0.15 * (age > 10)

    sham_pos = np.maximum(sham, 0.0)
    staff_le = np.floor(np.exp(1.1 + 1.2 * scale - 0.6 * sham_pos + 0.3 * rng.standard_normal(n)))
    staff_ie = pois(rng, np.exp(-0.8 + 0.6 * scale))
    staff = np.where(is_le, staff_le, staff_ie).astype(np.int64)
    staff = np.where(is_le & (bin_unit == 2), np.minimum(staff, 5), staff)

    regime = np.where(is_le, choice(rng, _REGIME_LE, n), choice(rng, _REGIME_IE, n))
    regime = np.where(is_le & (sham > 1.0) & (rng.random(n) < 0.6), 0, regime)
    regime = np.where((section == 0) & (rng.random(n) < 0.6), 4, regime)

    log_income = np.where(is_le, 17.0 + 1.1 * scale + 0.4 * sham_pos, 15.0 + 0.7 * scale)
    log_income -= 0.35 * fragile
    income = np.exp(log_income + 0.8 * rng.standard_normal(n))
    dormant = bern(rng, sigmoid(-2.8 + 0.9 * fragile + 0.3 * ~is_le))
    income = np.where(dormant, 0.0, np.round(income))

    lam_v = np.exp(-1.4 + 0.8 * scale + 0.4 * is_le + 1.1 * (section == 7) - 0.8 * sham_pos)
    vehicles = pois(rng, lam_v)
    trucks = rng.binomial(vehicles, np.where(section == 7, 0.7, 0.25)).astype(np.int64)
    lam_o = np.exp(-1.1 + 0.7 * scale + 0.3 * is_le + 0.03 * age - 0.7 * sham_pos)
    objects = pois(rng, lam_o)

    dereg = bern(rng, sigmoid(-4.2 + 0.5 * fragile + 0.5 * sham))
    start = np.maximum(reg_day + 30, as_of_day - 3 * 365)
    dereg_day = np.where(
        dereg, start + (rng.random(n) * np.maximum(as_of_day - start, 1)).astype(np.int64), 0
    )
    dereg &= dereg_day < as_of_day
    dereg_day = np.where(dereg, dereg_day, 0)
    # reasons: 0 voluntary, 1 bankruptcy, 2 reorganisation, 3 invalid, 4 cessation, 5 other
    reason = np.where(is_le, choice(rng, (0.72, 0.0, 0.18, 0.0, 0.0, 0.10), n), 4)
    reason = np.where(~is_le & (rng.random(n) < 0.08), 5, reason)
    reason = np.where((fragile > 1.5) & (fragile > sham), 1, reason)
    reason = np.where(sham > 2.0, 3, reason)
    dereg_reason = np.where(dereg, reason, -1)

    mass_address = bern(rng, sigmoid(-6.2 + 1.6 * sham + 0.8 * is_le))
    street = rng.integers(0, 40, n)
    house = rng.integers(1, 250, n)
    office = np.where(is_le, rng.integers(1, 400, n), 0)
    n_mass = max(3, int(mass_address.sum()) // 25)
    mass_pick = rng.integers(0, n_mass, n)
    street = np.where(mass_address, mass_pick % 40, street)
    house = np.where(mass_address, 300 + mass_pick // 40, house)
    office = np.where(mass_address, 0, office)
    region = np.where(mass_address, mass_pick % 3, region)  # mass addresses sit in big cities

    non_filing = bern(rng, sigmoid(-4.4 + 0.9 * sloppy + 0.8 * fragile + 0.5 * sham))
    has_debt = bern(rng, sigmoid(-2.9 + 1.3 * sloppy + 0.7 * fragile))
    pseudo_listed = bern(rng, sigmoid(-7.6 + 1.8 * sham))
    util_m36 = rng.binomial(36, sigmoid(-5.8 + 1.4 * sloppy + 0.7 * fragile)).astype(np.int64)
    util_m12 = rng.hypergeometric(util_m36, 36 - util_m36, 12).astype(np.int64)

    lam_def = np.exp(-2.7 + 1.0 * sloppy + 0.7 * fragile + 0.35 * scale + 0.3 * is_le)
    court_defendant = pois(rng, lam_def)
    nominee_head = is_le & bern(rng, sigmoid(-4.0 + 1.5 * sham))
    court_recovery = rng.binomial(court_defendant, sigmoid(-0.2 + 0.6 * sloppy)).astype(np.int64)

    name_a = np.where(is_le, rng.integers(0, 30, n), rng.integers(0, 60, n))
    name_b = np.where(is_le, rng.integers(0, 30, n), rng.integers(0, 25, n))

    return Population(
        n=n,
        seed=seed,
        as_of=AS_OF,
        ids=_as_array(pa.array(ids, type=pa.string())),
        is_le=is_le,
        bin_type=bin_type,
        bin_unit=bin_unit,
        female=female,
        birth_day=birth_day,
        region=region,
        district=district,
        section=section,
        oked=oked,
        reg_day=reg_day,
        age_years=age,
        scale=scale,
        staff=staff,
        regime=regime,
        income=income,
        vehicles=vehicles,
        trucks=trucks,
        objects=objects,
        sham=sham,
        fragile=fragile,
        sloppy=sloppy,
        dereg=dereg,
        dereg_day=dereg_day,
        dereg_reason=dereg_reason,
        mass_address=mass_address,
        non_filing=non_filing,
        has_debt=has_debt,
        pseudo_listed=pseudo_listed,
        util_m36=util_m36,
        util_m12=util_m12,
        court_defendant=court_defendant,
        court_recovery=court_recovery,
        nominee_head=nominee_head,
        street=street,
        house=house,
        office=office,
        name_a=name_a,
        name_b=name_b,
    )


def _as_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    return values
