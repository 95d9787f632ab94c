"""The TAX source (para 24.1): registration, regime, filings, amounts and the lists."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..catalogue import SourceSpec
from ._common import (
    bern,
    bool_col,
    build_table,
    cat_col,
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
from ._names import company_names, first_names, region_codes, surnames
from .population import Population

__all__ = ["make_tax"]

MRP_2024 = 3692.0  # monthly calculation index, KZT
VAT_THRESHOLD = 20000 * MRP_2024


def _taxpayer_names(pop: Population) -> pa.Array:
    le_rows = np.flatnonzero(pop.is_le)
    ie_rows = np.flatnonzero(~pop.is_le)
    female = pop.female[ie_rows]
    kazakh_style = (pop.name_b[ie_rows] + pop.birth_day[ie_rows]) % 4 == 0
    ie_names = join(
        "IP ",
        surnames(pop.name_a[ie_rows], female, kazakh_style),
        " ",
        first_names(pop.name_b[ie_rows], female),
    )
    names = pa.concat_arrays([company_names(pop, le_rows), ie_names])
    return names.take(pa.array(np.argsort(np.concatenate([le_rows, ie_rows]))))


def make_tax(pop: Population, spec: SourceSpec) -> pa.Table:
    """One row per entity (the tax body knows every registered entity)."""
    rng = stream(pop.seed, spec.code)
    n = pop.n
    s, f, p = pop.sham, pop.fragile, pop.sloppy
    s_pos = np.maximum(s, 0.0)
    le = pop.is_le
    today = pop.as_of_day
    general = pop.regime == 0

    non_filing = pop.non_filing
    balance = (le | general) & ~non_filing
    income = pop.income
    has_income = income > 0

    burden = np.exp(np.log(0.045) + 0.55 * rng.standard_normal(n) - 0.55 * s - 0.1 * p)
    burden = np.clip(burden, 0.0005, 0.6)
    taxes_paid = round_kzt(income * burden + np.where(has_income, 0.0, lognormal(rng, 9.0, 1.0, n)))
    taxes_paid = np.where(non_filing & (rng.random(n) < 0.5), 0.0, taxes_paid)
    penalty_rate = np.exp(-5.5 + 0.9 * p + 0.2 * f + 0.8 * rng.standard_normal(n))
    penalties = round_kzt(taxes_paid * np.minimum(penalty_rate, 0.5))
    coefficient = np.where(has_income, np.minimum(taxes_paid / np.maximum(income, 1.0), 1.0), 0.0)

    margin = 0.09 - 0.1 * f + 0.05 * rng.standard_normal(n)
    taxable = round_kzt(income * margin)
    cit_rate = np.array([0.0, 0.03, 0.01, 0.04, 0.005, 0.1])[pop.regime]
    cit = np.where(general, np.maximum(taxable, 0.0) * np.where(le, 0.2, 0.1), income * cit_rate)

    vat_payer = general & ((income > VAT_THRESHOLD) | (le & (s > 0.8)) | (rng.random(n) < 0.05))
    value_added = np.exp(np.log(0.2) - 0.5 * s + 0.4 * rng.standard_normal(n))
    vat = round_kzt(income * 0.12 * value_added)
    refund_p = sigmoid(-3.2 + 1.0 * s + 0.5 * (pop.section == 2))
    vat_refund = np.where(
        bern(rng, refund_p), round_kzt(income * 0.12 * rng.uniform(0.05, 0.4, n)), 0
    )

    assets = np.where(
        has_income,
        income * np.exp(-0.5 + 0.9 * rng.standard_normal(n)),
        lognormal(rng, 14.0, 1.5, n),
    )
    assets = round_kzt(assets)
    leverage = np.exp(-0.7 + 0.7 * f + 0.35 * rng.standard_normal(n))
    liabilities = round_kzt(assets * leverage)
    fixed_share = sigmoid(-1.0 - 0.7 * s + 0.3 * pop.objects + 0.8 * rng.standard_normal(n))
    fixed = round_kzt(assets * fixed_share)
    authorized = round_kzt(lognormal(rng, 12.0 + 0.6 * pop.scale - 0.3 * s_pos, 1.3, n))
    property_tax = np.where(
        le, round_kzt(fixed * 0.015), round_kzt(pop.objects * lognormal(rng, 10.0, 1.0, n))
    )
    transport_tax = round_kzt(pop.vehicles * lognormal(rng, 10.4, 0.6, n))

    wage = lognormal(rng, 12.4, 0.35, n)
    payroll = round_kzt(pop.staff * 12 * wage * 0.22 * np.exp(-0.2 * np.maximum(p + f, 0)))

    has_debt = pop.has_debt
    mu_debt = 11.0 + 0.5 * pop.scale + 0.8 * p + 0.3 * f
    debt = np.where(has_debt, round_kzt(lognormal(rng, mu_debt, 1.1, n)), 0)
    tax_debtor = has_debt & (debt > 6 * MRP_2024) & bern(rng, sigmoid(0.3 + 0.8 * p))

    risk = 0.55 * s + 0.35 * p + 0.3 * f + 0.55 * rng.standard_normal(n)
    risk_category = np.select([risk > 2.0, risk > 0.9], [2, 1], 0)
    audits = pois(rng, np.exp(-2.3 + 0.45 * s + 0.3 * f + 0.3 * le + 0.2 * pop.scale))
    risk_audit = bern(rng, sigmoid(-3.8 + 0.9 * s + 0.4 * p))
    sanctions = pois(rng, np.exp(-1.3 + 0.9 * p + 0.3 * s))

    reason = pop.dereg_reason
    liquidation_audit = bern(rng, sigmoid(-5.4 + 0.9 * f)) | (
        pop.dereg & le & (reason == 0) & (rng.random(n) < 0.6)
    )
    suspended = ~le & bern(rng, sigmoid(-3.3 + 0.6 * f)) & ~pop.dereg
    start = np.maximum(pop.reg_day + 1, today - 3 * 365)
    suspension_day = start + (rng.random(n) * np.maximum(today - start, 1)).astype(np.int64)
    suspension_day = np.minimum(suspension_day, today - 1)

    lists = {
        "inactive": bern(rng, sigmoid(-5.2 + 0.9 * f + 0.7 * s + 0.5 * p + 1.6 * non_filing)),
        "pseudo_enterprise": pop.pseudo_listed,
        "absent_at_address": bern(rng, sigmoid(-6.2 + 1.2 * s + 0.4 * f + 1.2 * pop.mass_address)),
        "bankrupt": (le & bern(rng, sigmoid(-8.0 + 1.5 * f))) | (pop.dereg & (reason == 1)),
        "invalid_registration": bern(rng, sigmoid(-8.6 + 1.6 * s)) | (pop.dereg & (reason == 3)),
        "illegal_reorganisation": le & bern(rng, sigmoid(-9.0 + 1.3 * s)),
        "tax_debtor": tax_debtor,
    }

    nf = non_filing
    no_income = ~has_income | nf
    office = join(region_codes(pop.region), int_str(pop.district, 2))
    columns: dict[str, pa.Array] = {
        "taxpayer_name": _taxpayer_names(pop),
        "registration_date": date_col(pop.reg_day),
        "deregistration_date": date_col(pop.dereg_day, ~pop.dereg),
        "deregistration_reason": cat_col(
            np.maximum(reason, 0), spec.field("deregistration_reason").categories or (), ~pop.dereg
        ),
        "suspension_start_date": date_col(suspension_day, ~suspended),
        "tax_office_code": office,
        "tax_regime": cat_col(pop.regime, spec.field("tax_regime").categories or ()),
        "audits_3y": num_col(audits, "int64"),
        "risk_audit_scheduled": bool_col(risk_audit),
        "non_filing": bool_col(non_filing),
        "tax_burden_coefficient": num_col(coefficient, "float64", no_income),
        "risk_category": cat_col(risk_category, spec.field("risk_category").categories or ()),
        "taxes_paid_kzt": num_col(taxes_paid, "float64"),
        "penalties_paid_kzt": num_col(penalties, "float64"),
        "tax_debt_kzt": num_col(debt, "float64"),
        "liquidation_audit_requested": bool_col(liquidation_audit),
        "tax_sanctions_3y": num_col(sanctions, "int64"),
        "authorized_capital_kzt": num_col(authorized, "float64", ~le),
        "total_capital_kzt": num_col(assets - liabilities, "float64", ~balance),
        "total_assets_kzt": num_col(assets, "float64", ~balance),
        "total_liabilities_kzt": num_col(liabilities, "float64", ~balance),
        "fixed_assets_kzt": num_col(fixed, "float64", ~balance),
        "annual_income_kzt": num_col(income, "float64", nf),
        "taxable_income_kzt": num_col(taxable, "float64", ~general | nf),
        "cit_kzt": num_col(round_kzt(cit), "float64", nf),
        "vat_kzt": num_col(vat, "float64", ~vat_payer | nf),
        "vat_refund_kzt": num_col(vat_refund, "float64", ~vat_payer | nf),
        "property_tax_kzt": num_col(property_tax, "float64", nf),
        "transport_tax_kzt": num_col(transport_tax, "float64", nf),
        "staff_count": num_col(pop.staff, "int64"),
        "payroll_taxes_kzt": num_col(payroll, "float64"),
        **{name: bool_col(flag) for name, flag in lists.items()},
    }
    return build_table(spec, pop.ids, columns)
