"""Identifying strings: company and personal names, addresses, phones, e-mails.

They exist so that depersonalisation has something real to remove. Everything is built
column-wise with Arrow compute (no per-entity Python loop).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._common import I64, Bool, int_str, join
from ._pools import (
    COMPANY_WORDS_A,
    COMPANY_WORDS_B,
    EMAIL_DOMAINS,
    FEMALE_NAMES,
    KOREAN_FROM,
    MALE_NAMES,
    MOBILE_PREFIXES,
    REGIONS,
    RUSSIAN_FROM,
    STREETS,
    SURNAME_ROOTS,
)
from .population import Population

__all__ = [
    "company_names",
    "emails",
    "first_names",
    "phones",
    "street_addresses",
    "surnames",
]

_LEGAL_FORM_PREFIX = (
    "TOO",
    "AO",
    "PK",
    "RGP",
    "OO",
    "Filial TOO",
    "Predstavitelstvo",
    "KKh",
    "SIP",
)


def _pick(pool: tuple[str, ...], idx: I64) -> pa.Array:
    return pa.array(list(pool), type=pa.string()).take(pa.array(np.asarray(idx, dtype=np.int64)))


def surnames(root: I64, female: Bool, kazakh_style: Bool) -> pa.Array:
    """Surnames from roots: -ov/-ova (-ev/-eva after a vowel ending), or -uly/-kyzy."""
    root = np.asarray(root, dtype=np.int64)
    korean = root >= KOREAN_FROM
    russian = (root >= RUSSIAN_FROM) & ~korean
    uly = kazakh_style & ~russian & ~korean
    ends_vowel = np.array([r[-1] in "aeiouy" for r in SURNAME_ROOTS])[root]
    # 0 -ov, 1 -ova, 2 -ev, 3 -eva, 4 -uly, 5 -kyzy, 6 (none)
    suffix = np.where(ends_vowel, 2, 0) + female.astype(np.int64)
    suffix = np.where(uly, 4 + female.astype(np.int64), suffix)
    suffix = np.where(korean, 6, suffix)
    ends = _pick(("ov", "ova", "ev", "eva", "uly", "kyzy", ""), suffix)
    return join(_pick(SURNAME_ROOTS, root), ends)


def first_names(idx: I64, female: Bool) -> pa.Array:
    idx = np.asarray(idx, dtype=np.int64)
    merged = np.where(female, len(MALE_NAMES) + idx % len(FEMALE_NAMES), idx % len(MALE_NAMES))
    return _pick(MALE_NAMES + FEMALE_NAMES, merged)


def legal_form_codes(pop: Population, rows: I64) -> I64:
    """Index into the LEGAL_ENTITY ``legal_form`` categories for legal entities ``rows``.

    From the BIN: type 6 is a joint entrepreneurship, unit 1 a branch, 2 a representative
    office, 3 a peasant farm; head offices are mostly LLPs.
    """
    t = pop.bin_type[rows]
    u = pop.bin_unit[rows]
    draw = (pop.name_a[rows] * 31 + pop.name_b[rows] * 7 + pop.house[rows]) % 100
    # 0 LLP, 1 JSC, 2 production cooperative, 3 state enterprise, 4 non-profit
    form = np.select([draw < 86, draw < 88, draw < 89, draw < 91], [0, 1, 2, 3], 4)
    form = np.where(u == 1, 5, form)
    form = np.where(u == 2, 6, form)
    form = np.where(u == 3, 7, form)
    form = np.where(t == 6, 8, form)
    out: I64 = form.astype(np.int64)
    return out


def company_names(pop: Population, rows: I64) -> pa.Array:
    """Names like 'TOO "Altyn Trade"' for legal entities ``rows``."""
    form = legal_form_codes(pop, rows)
    return join(
        _pick(_LEGAL_FORM_PREFIX, form),
        ' "',
        _pick(COMPANY_WORDS_A, pop.name_a[rows] % len(COMPANY_WORDS_A)),
        " ",
        _pick(COMPANY_WORDS_B, pop.name_b[rows] % len(COMPANY_WORDS_B)),
        '"',
    )


def street_addresses(pop: Population, rows: I64) -> pa.Array:
    """'Almaty, Abai ave. 12, office 5' (the office part only where there is one)."""
    office = pop.office[rows]
    has_office = pa.array(office > 0)
    office_part = pc.if_else(has_office, join(", office ", int_str(office)), pa.scalar(""))
    return join(
        _pick(tuple(r[2] for r in REGIONS), pop.region[rows]),
        ", ",
        _pick(STREETS, pop.street[rows]),
        " ",
        int_str(pop.house[rows]),
        office_part,
    )


def phones(rng: np.random.Generator, n: int) -> pa.Array:
    """Mobile numbers '+7 7XX XXX XX XX'."""
    prefix = np.array(MOBILE_PREFIXES)[rng.integers(0, len(MOBILE_PREFIXES), n)]
    a = rng.integers(0, 1000, n)
    b = rng.integers(0, 100, n)
    c = rng.integers(0, 100, n)
    return join(
        "+7 ",
        int_str(prefix),
        " ",
        int_str(a, 3),
        " ",
        int_str(b, 2),
        " ",
        int_str(c, 2),
    )


def emails(rng: np.random.Generator, local: pa.Array) -> pa.Array:
    """'<local><digits>@<domain>' with ``local`` lower-cased."""
    n = len(local)
    domain = _pick(EMAIL_DOMAINS, rng.integers(0, len(EMAIL_DOMAINS), n))
    return join(pc.utf8_lower(local), int_str(rng.integers(1, 100, n)), "@", domain)


def region_codes(region: I64) -> pa.Array:
    return _pick(tuple(r[0] for r in REGIONS), region)


def kato_codes(pop: Population, rows: I64) -> pa.Array:
    """9-digit KATO: region (2), district (2), settlement (5)."""
    region = pop.region[rows]
    district = pop.district[rows] * 10 + np.where(region < 3, 1, 3)
    rural = (pop.district[rows] % 4 == 0) & (region >= 3)
    settlement = np.where(rural, 20000 + (pop.street[rows] * 37 + pop.house[rows]) % 900, 10000)
    return join(region_codes(region), int_str(district, 2), int_str(settlement, 5))
