"""A synthetic consumer-credit table for ``nce-lab train-table`` (tests and benchmarks).

There is no internet access here, so the public credit sets (Kaggle's "Give Me Some
Credit", the UCI German and Taiwan credit data) cannot be downloaded. This table copies
their *shape* instead: the ten "Give Me Some Credit" columns with that set's quirks
(income missing for about a fifth of the applicants, debt ratios in the thousands exactly
where income is missing, utilisation above 100%, late-payment counters that move
together, dependants sometimes missing) plus German-credit-style text columns (purpose,
housing, checking account, employment length, region), a true/false column and a date.
The default (``SeriousDlqin2yrs``-like, about 7%) follows a latent creditworthiness with
non-linear effects and interactions, so that trees have something to find beyond a
linear score. ``true_probability`` is returned apart, for the oracle AUC.

>>> table, p = credit_table(1000, seed=1)
>>> table.num_rows, "default" in table.column_names, round(float(p.mean()), 2) < 0.2
(1000, True, True)
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import numpy.typing as npt
import pyarrow as pa

__all__ = ["credit_table"]

_PURPOSE = ("car", "furniture", "radio_tv", "education", "business", "repairs", "other")
_HOUSING = ("own", "rent", "free")
_CHECKING = ("no_account", "<0", "0-200", ">=200")
_EMPLOYMENT = ("unemployed", "<1", "1-4", "4-7", ">=7")
_REGIONS = tuple(f"region_{i:02d}" for i in range(17))


def _pick(
    rng: np.random.Generator, labels: tuple[str, ...], logits: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    """Per row, an index into ``labels`` drawn from softmax(``logits`` row)."""
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random(p.shape[0])[:, None]
    out: npt.NDArray[np.int64] = (p.cumsum(axis=1) < u).sum(axis=1).clip(0, len(labels) - 1)
    return out


def credit_table(n: int, seed: int = 0) -> tuple[pa.Table, npt.NDArray[np.float64]]:
    """``n`` applicants: the table (``loan_id``, features, ``default``) and the true
    probability of default of each row."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n)  # latent creditworthiness: higher is riskier
    age = np.clip(np.round(48 - 6 * z + rng.normal(0, 13, n)), 21, 95).astype(np.int64)
    income = np.exp(rng.normal(8.6 - 0.25 * z, 0.6, n))
    income_missing = rng.random(n) < 0.19 + 0.04 * (z > 1)
    debt = np.exp(rng.normal(-1.2 + 0.25 * z, 0.7, n))
    debt_ratio = np.where(income_missing, np.round(np.exp(rng.normal(6.5, 1.5, n))), debt)
    util = np.clip(rng.beta(0.7, 1.6, n) + 0.25 * np.tanh(z), 0.0, None)
    util = np.where(rng.random(n) < 0.004, util * rng.uniform(10, 2000, n), util)
    lines = rng.poisson(np.exp(2.0 - 0.1 * z), n)
    estate = rng.poisson(np.exp(-0.1 - 0.2 * z), n)
    dependants = rng.poisson(0.75, n).astype(np.float64)
    dependants[rng.random(n) < 0.026] = np.nan
    habit = np.exp(-2.1 + 1.1 * z + rng.normal(0, 0.6, n))
    late30 = rng.poisson(habit)
    late60 = rng.poisson(0.35 * habit)
    late90 = rng.poisson(0.3 * habit * (1 + (z > 1.2)))
    purpose = _pick(rng, _PURPOSE, np.outer(z, [0.1, 0.0, -0.1, 0.2, 0.4, 0.1, 0.0]))
    housing = _pick(rng, _HOUSING, np.outer(z, [-0.5, 0.3, 0.2]))
    checking = _pick(
        rng, _CHECKING, np.outer(z, [-0.4, 0.8, 0.1, -0.6]) + np.array([0.3, 0, 0.2, -0.5])
    )
    employment = _pick(rng, _EMPLOYMENT, np.outer(z, [0.6, 0.3, 0.0, -0.2, -0.4]))
    region = rng.integers(0, len(_REGIONS), n)
    collateral = rng.random(n) < 0.35 - 0.1 * np.tanh(z)
    day0 = dt.date(2021, 1, 1).toordinal()
    applied = rng.integers(0, 3 * 365, n) + day0 - dt.date(1970, 1, 1).toordinal()

    region_effect = np.linspace(-0.4, 0.4, len(_REGIONS))[rng.permutation(len(_REGIONS))]
    logit = (
        -3.6
        + 0.55 * z
        + 1.6 * np.clip(util - 0.7, 0.0, 1.0)  # sharp above 70% utilisation
        + 0.45 * np.log1p(late30)
        + 0.9 * np.log1p(late90) * (1 + income_missing)  # late payers without income
        + 0.35 * np.log1p(late60)
        + 0.025 * np.clip(35 - age, 0, None) ** 1.3 / 4  # young applicants
        - 0.2 * np.log(income / 5000.0) * ~income_missing
        + np.array([0.2, 0.0, -0.1, 0.15, 0.35, 0.1, 0.05])[purpose]
        + np.array([-0.25, 0.15, 0.1])[housing]
        + np.array([-0.4, 0.55, 0.1, -0.35])[checking]
        + np.array([0.5, 0.25, 0.0, -0.1, -0.2])[employment]
        + region_effect[region]
        - 0.3 * collateral * (util > 0.5)
    )
    p = 1.0 / (1.0 + np.exp(-logit))
    default = (rng.random(n) < p).astype(np.int64)
    table = pa.table(
        {
            "loan_id": pa.array([f"L{seed:02d}{i:08d}" for i in range(n)], pa.string()),
            "revolving_utilization": util,
            "age": age,
            "late_30_59_days": late30,
            "debt_ratio": debt_ratio,
            "monthly_income": pa.array(np.round(income), mask=income_missing),
            "open_credit_lines": lines,
            "late_90_days": late90,
            "real_estate_loans": estate,
            "late_60_89_days": late60,
            "dependants": pa.array(dependants, from_pandas=True),
            "purpose": pa.array(np.array(_PURPOSE)[purpose]),
            "housing": pa.array(np.array(_HOUSING)[housing]),
            "checking_account": pa.array(np.array(_CHECKING)[checking]),
            "employment_years": pa.array(np.array(_EMPLOYMENT)[employment]),
            "region": pa.array(np.array(_REGIONS)[region]),
            "has_collateral": pa.array(collateral),
            "application_date": pa.array(applied.astype(np.int32), pa.int32()).cast(pa.date32()),
            "default": default,
        }
    )
    return table, p
