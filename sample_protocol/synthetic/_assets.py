"""Asset and trade sources: VEHICLES (24.9), REAL_ESTATE (24.11), FIN_DEPOSITORY (24.6),
CUSTOMS."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..catalogue import SourceSpec
from ._common import (
    bern,
    bool_col,
    build_table,
    cat_col,
    int_str,
    join,
    lognormal,
    num_col,
    pois,
    round_kzt,
    sigmoid,
    stream,
    with_nulls,
)
from ._names import legal_form_codes
from .population import Population

__all__ = ["make_customs", "make_fin_depository", "make_real_estate", "make_vehicles"]

_LETTERS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _cats(spec: SourceSpec, name: str) -> tuple[str, ...]:
    return spec.field(name).categories or ()


def _letters(rng: np.random.Generator, n: int, k: int) -> pa.Array:
    pool = pa.array(list(_LETTERS))
    parts = [pool.take(pa.array(rng.integers(0, 26, n))) for _ in range(k)]
    return join(*parts)


def make_vehicles(pop: Population, spec: SourceSpec) -> pa.Table:
    """Entities with at least one registered vehicle."""
    rng = stream(pop.seed, spec.code)
    rows = np.flatnonzero(pop.vehicles > 0)
    m = rows.size
    vehicles, trucks = pop.vehicles[rows], pop.trucks[rows]
    cars = rng.binomial(vehicles - trucks, 0.85).astype(np.int64)
    mean_newest = np.clip(6.0 + 2.5 * pop.fragile[rows] - 1.5 * pop.scale[rows], 0.5, 25.0)
    newest_age = np.minimum(np.floor(rng.exponential(mean_newest)), 40).astype(np.int64)
    newest_year = pop.as_of.year - 1 - newest_age
    mean_age = newest_age + np.where(vehicles > 1, rng.exponential(4.0, m), 0.0) + 0.5
    plate = join(
        int_str(rng.integers(1, 1000, m), 3),
        _letters(rng, m, 3),
        int_str(pop.region[rows] + 1, 2),
    )
    columns = {
        "vehicles_count": num_col(vehicles, "int64"),
        "trucks_count": num_col(trucks, "int64"),
        "cars_count": num_col(cars, "int64"),
        "newest_vehicle_year": num_col(newest_year, "int64"),
        "mean_vehicle_age_years": num_col(np.round(np.minimum(mean_age, 99.0), 1), "float64"),
        "first_plate": plate,
    }
    return build_table(spec, pop.ids.take(pa.array(rows)), columns)


def make_real_estate(pop: Population, spec: SourceSpec) -> pa.Table:
    """Entities holding at least one real-estate object."""
    rng = stream(pop.seed, spec.code)
    rows = np.flatnonzero(pop.objects > 0)
    m = rows.size
    objects = pop.objects[rows]
    f, p, scale = pop.fragile[rows], pop.sloppy[rows], pop.scale[rows]
    non_res = rng.binomial(objects, np.where(pop.is_le[rows], 0.8, 0.3)).astype(np.int64)
    land = np.round(objects * lognormal(rng, 6.5, 1.2, m), 1)
    built = np.round(objects * lognormal(rng, 4.8 + 0.2 * scale, 0.9, m), 1)
    value = round_kzt(built * lognormal(rng, 11.4, 0.6, m))
    encumbered = rng.binomial(objects, sigmoid(-1.7 + 0.6 * f + 0.2 * scale)).astype(np.int64)
    collateral = round_kzt(value * encumbered / objects * rng.uniform(0.4, 1.2, m))
    restricted = bern(rng, sigmoid(-4.2 + 0.9 * p + 0.6 * f))
    cadastral = join(
        int_str(pop.region[rows] + 1, 2),
        ":",
        int_str(rng.integers(1, 400, m), 3),
        ":",
        int_str(rng.integers(1, 999, m), 3),
        ":",
        int_str(rng.integers(1, 9999, m), 4),
    )
    columns = {
        "objects_count": num_col(objects, "int64"),
        "non_residential_count": num_col(non_res, "int64"),
        "land_area_m2": num_col(land, "float64"),
        "built_area_m2": num_col(built, "float64"),
        "taxable_value_kzt": num_col(value, "float64"),
        "encumbrances_count": num_col(encumbered, "int64"),
        "collateral_kzt": num_col(collateral, "float64"),
        "has_restrictions": bool_col(restricted),
        "cadastral_number": cadastral,
    }
    return build_table(spec, pop.ids.take(pa.array(rows)), columns)


def make_fin_depository(pop: Population, spec: SourceSpec) -> pa.Table:
    """Public-interest entities: joint-stock companies and the largest firms."""
    rng = stream(pop.seed, spec.code)
    le_rows = np.flatnonzero(pop.is_le)
    jsc = legal_form_codes(pop, le_rows) == 1
    big = (pop.staff[le_rows] > 250) | (
        (pop.scale[le_rows] > 2.0) & (rng.random(le_rows.size) < 0.5)
    )
    rows = le_rows[(jsc | big) & (pop.income[le_rows] > 0)]
    m = rows.size
    s, f = pop.sham[rows], pop.fragile[rows]
    revenue = round_kzt(pop.income[rows] * np.exp(0.1 * rng.standard_normal(m)))
    profit = round_kzt(revenue * (0.07 - 0.08 * f + 0.06 * rng.standard_normal(m)))
    assets = round_kzt(revenue * np.exp(-0.2 + 0.6 * rng.standard_normal(m))) + 1.0
    leverage = 1.3 * sigmoid(-0.5 + 0.8 * f + 0.7 * rng.standard_normal(m))
    equity = round_kzt(assets * (1.0 - leverage))
    current = np.round(np.exp(0.3 - 0.45 * f + 0.5 * rng.standard_normal(m)), 3)
    noise = rng.standard_normal(m)
    opinion = np.select(
        [s > 2.2, f + noise > 2.8, f + noise > 1.6, rng.random(m) < 0.03], [2, 3, 1, 4], 0
    )
    late = bern(rng, sigmoid(-2.5 + 0.8 * f))
    trn = join("60", int_str(rng.integers(0, 10**10, m), 10))
    columns = {
        "trn": with_nulls(trn, bern(rng, 0.05, m)),
        "statement_year": num_col(np.where(late, 2022, 2023), "int64"),
        "revenue_kzt": num_col(revenue, "float64"),
        "net_profit_kzt": num_col(profit, "float64"),
        "total_assets_kzt": num_col(assets, "float64"),
        "equity_kzt": num_col(equity, "float64"),
        "current_ratio": num_col(current, "float64", bern(rng, 0.05, m)),
        "debt_to_assets": num_col(np.round(leverage, 4), "float64"),
        "return_on_assets": num_col(np.round(np.clip(profit / assets, -100, 100), 4), "float64"),
        "audit_opinion": cat_col(opinion, _cats(spec, "audit_opinion")),
        "affiliates_count": num_col(pois(rng, np.exp(1.5 + 0.3 * pop.scale[rows])), "int64"),
        "board_size": num_col(3 + pois(rng, np.full(m, 2.0)), "int64"),
    }
    return build_table(spec, pop.ids.take(pa.array(rows)), columns)


def make_customs(pop: Population, spec: SourceSpec) -> pa.Table:
    """Entities that filed a customs declaration in the last 12 months."""
    rng = stream(pop.seed, spec.code)
    s_pos = np.maximum(pop.sham, 0.0)
    goods = np.isin(pop.section, (2, 6))
    trader = bern(
        rng, sigmoid(-4.0 + 0.7 * pop.scale + 0.7 * pop.is_le + 0.9 * goods + 0.5 * s_pos)
    )
    rows = np.flatnonzero(trader)
    m = rows.size
    s, f, p, scale = pop.sham[rows], pop.fragile[rows], pop.sloppy[rows], pop.scale[rows]
    s_pos = s_pos[rows]
    declarations = 1 + pois(rng, np.exp(1.0 + 0.8 * scale))
    imports = round_kzt(declarations * lognormal(rng, 15.5, 1.2, m))
    exports = np.where(bern(rng, 0.2, m), round_kzt(declarations * lognormal(rng, 15.0, 1.3, m)), 0)
    payments = round_kzt(imports * 0.15 * np.exp(-0.5 * s_pos))
    debt = np.where(bern(rng, sigmoid(-3.5 + 1.0 * p + 0.5 * f)), lognormal(rng, 12.5, 1.2, m), 0.0)
    violations = pois(rng, np.exp(-2.6 + 0.8 * s + 0.4 * p))
    adjustments = pois(rng, np.exp(-2.2 + 1.0 * s) * np.log1p(declarations))
    columns = {
        "declarations_12m": num_col(declarations, "int64"),
        "imports_kzt_12m": num_col(imports, "float64"),
        "exports_kzt_12m": num_col(exports, "float64"),
        "customs_payments_kzt_12m": num_col(payments, "float64"),
        "customs_debt_kzt": num_col(round_kzt(debt), "float64"),
        "customs_violations_3y": num_col(violations, "int64"),
        "valuation_adjustments_3y": num_col(adjustments, "int64"),
    }
    return build_table(spec, pop.ids.take(pa.array(rows)), columns)
