"""Tests of sample_protocol.scores: value scaling, categories, cut-off derivation."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sample_protocol import scores
from sample_protocol.errors import SerdeError, ValidationError
from sample_protocol.records import CategoryCutoffs
from sample_protocol.scores import (
    DEFAULT_SCALE,
    CutoffRule,
    ScoreScale,
    categorise,
    derive_cutoffs,
    fit_scale,
    to_values,
)

EXAMPLES = settings(max_examples=50, deadline=None)
PROBS = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
SCALES = st.builds(
    ScoreScale,
    base_value=st.floats(min_value=5.0, max_value=95.0),
    base_probability=st.floats(min_value=1e-4, max_value=0.9999),
    points_to_double_odds=st.floats(min_value=0.5, max_value=60.0),
)


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counting one half (independent of the module)."""
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    pos = int(y.sum())
    neg = y.size - pos
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def test_docstring_examples_run() -> None:
    result = doctest.testmod(scores, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


# -- ScoreScale and to_values -------------------------------------------------------


def test_formula_at_known_points() -> None:
    scale = ScoreScale(base_value=50, base_probability=0.10, points_to_double_odds=8)
    base_odds = 0.1 / 0.9
    doubled = 2 * base_odds / (1 + 2 * base_odds)
    halved = 0.5 * base_odds / (1 + 0.5 * base_odds)
    values = to_values(np.array([0.10, doubled, halved]), scale)
    assert values.tolist() == [50, 58, 42]
    assert values.dtype == np.int16


def test_extremes_and_shape() -> None:
    p = np.array([[0.0, 1.0], [1e-300, 1 - 1e-16]])
    values = to_values(p)
    assert values.shape == (2, 2)
    assert values.tolist() == [[1, 99], [1, 99]]


def test_custom_range_is_respected() -> None:
    scale = ScoreScale(base_value=30, min_value=10, max_value=60)
    values = to_values(np.linspace(0.0, 1.0, 101), scale)
    assert values.min() == 10 and values.max() == 60


@EXAMPLES
@given(hnp.arrays(np.float64, st.integers(1, 200), elements=PROBS), SCALES)
def test_values_monotone_and_in_range(p: np.ndarray, scale: ScoreScale) -> None:
    order = np.argsort(p, kind="stable")
    values = to_values(p[order], scale)
    assert np.all(np.diff(values.astype(np.int64)) >= 0)
    assert values.min() >= 1 and values.max() <= 99


@EXAMPLES
@given(PROBS, PROBS, SCALES)
def test_value_monotone_pairwise(a: float, b: float, scale: ScoreScale) -> None:
    low, high = sorted((a, b))
    assert scale.value(low) <= scale.value(high)


@EXAMPLES
@given(SCALES)
def test_scale_serde_round_trip(scale: ScoreScale) -> None:
    again = ScoreScale.from_json(scale.to_json())
    assert again == scale
    assert again.canonical_bytes() == scale.canonical_bytes()


def test_scale_refuses_bad_fields() -> None:
    with pytest.raises(ValidationError, match=r"ScoreScale\.base_probability") as err:
        ScoreScale(base_probability=1.0)
    assert err.value.code == "invalid_record"
    with pytest.raises(ValidationError, match=r"points_to_double_odds"):
        ScoreScale(points_to_double_odds=0.0)
    with pytest.raises(ValidationError, match=r"min_value/max_value"):
        ScoreScale(min_value=0)
    with pytest.raises(ValidationError, match=r"base_value"):
        ScoreScale(base_value=120)
    with pytest.raises(ValidationError, match=r"finite"):
        ScoreScale(points_to_double_odds=math.inf)
    with pytest.raises(SerdeError, match="unexpected field"):
        ScoreScale.from_json('{"kind":"ScoreScale","pdo":8}')


@pytest.mark.parametrize(
    ("p", "found"),
    [
        ([0.1, float("nan"), float("nan")], "found NaN in 2 row(s) (first: row 1)"),
        ([0.1, 0.2, 1.5], "found 1 row(s) outside (first: row 2, value 1.5)"),
        ([-0.01], "found 1 row(s) outside (first: row 0"),
    ],
)
def test_to_values_refuses_bad_probabilities(p: list[float], found: str) -> None:
    with pytest.raises(ValidationError) as err:
        to_values(np.array(p))
    assert err.value.code == "bad_probability"
    assert "probabilities: expected probabilities in [0, 1]" in str(err.value)
    assert found in str(err.value)


def test_to_values_refuses_non_numbers() -> None:
    with pytest.raises(ValidationError, match="expected an array of probabilities") as err:
        to_values(np.array(["a", "b"]))
    assert err.value.code == "bad_probability"


# -- AUC kept by the integer value ---------------------------------------------------

REALISTIC = [(1.0, 9.0), (2.0, 18.0), (0.5, 10.0), (2.0, 5.0), (1.0, 50.0), (0.3, 3.0)]


@pytest.mark.parametrize(("a", "b"), REALISTIC)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fitted_value_keeps_auc(a: float, b: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.beta(a, b, 20_000)
    y = (rng.random(p.size) < p).astype(np.int8)
    scale = fit_scale(p)
    values = to_values(p, scale)
    assert abs(_auc(y, p) - _auc(y, values)) <= 0.005
    # the bulk of the population spreads over the range
    assert np.unique(values).size >= 80


@pytest.mark.parametrize(("a", "b"), REALISTIC)
def test_default_scale_keeps_auc_on_realistic_risks(a: float, b: float) -> None:
    rng = np.random.default_rng(7)
    p = rng.beta(a, b, 20_000)
    y = (rng.random(p.size) < p).astype(np.int8)
    assert abs(_auc(y, p) - _auc(y, to_values(p, DEFAULT_SCALE))) <= 0.005


@settings(max_examples=15, deadline=None)
@given(
    st.floats(min_value=0.3, max_value=5.0),
    st.floats(min_value=2.0, max_value=60.0),
    st.integers(0, 2**32 - 1),
)
def test_fitted_value_keeps_auc_property(a: float, b: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.beta(a, b, 5_000)
    y = (rng.random(p.size) < p).astype(np.int8)
    if y.min() == y.max():
        return
    values = to_values(p, fit_scale(p))
    assert abs(_auc(y, p) - _auc(y, values)) <= 0.005


def test_fit_scale_maps_percentiles_into_span() -> None:
    rng = np.random.default_rng(3)
    p = rng.beta(1.0, 12.0, 10_000)
    scale = fit_scale(p, target_span=(5.0, 95.0))
    lo, hi = to_values(np.quantile(p, [0.01, 0.99]), scale).tolist()
    assert (lo, hi) == (5, 95)
    assert to_values(np.array([scale.base_probability]), scale).tolist() == [50]
    assert ScoreScale.from_json(scale.to_json()) == scale


def test_fit_scale_refuses_constant_and_bad_arguments() -> None:
    with pytest.raises(ValidationError, match="expected probabilities that vary") as err:
        fit_scale(np.full(100, 0.2))
    assert err.value.code == "cannot_fit_scale"
    with pytest.raises(ValidationError, match="at least 2 probabilities"):
        fit_scale(np.array([0.2]))
    with pytest.raises(ValidationError, match=r"fit_scale\.target_span"):
        fit_scale(np.linspace(0.1, 0.9, 10), target_span=(60.0, 98.0))
    with pytest.raises(ValidationError, match=r"fit_scale\.quantiles"):
        fit_scale(np.linspace(0.1, 0.9, 10), quantiles=(0.9, 0.1))
    with pytest.raises(ValidationError, match="NaN"):
        fit_scale(np.array([0.1, math.nan]))


# -- categories ----------------------------------------------------------------------


@EXAMPLES
@given(hnp.arrays(np.float64, st.integers(1, 50), elements=PROBS))
def test_categorise_matches_scalar_rule(p: np.ndarray) -> None:
    cut = CategoryCutoffs("payment_discipline", medium_from=0.1, high_from=0.4)
    assert categorise(p, cut).tolist() == [cut.category(float(x)) for x in p]


def test_categorise_boundaries_and_errors() -> None:
    cut = CategoryCutoffs("payment_discipline", medium_from=0.1, high_from=0.4)
    got = categorise(np.array([0.0, 0.0999, 0.1, 0.3999, 0.4, 1.0]), cut)
    assert got.tolist() == ["low", "low", "medium", "medium", "high", "high"]
    with pytest.raises(ValidationError, match="NaN") as err:
        categorise(np.array([math.nan]), cut)
    assert err.value.code == "bad_probability"


def test_quantile_rule_gives_its_shares() -> None:
    rng = np.random.default_rng(11)
    p = rng.beta(1.0, 9.0, 10_000)
    cut = derive_cutoffs("financial_stability", p)
    cats = categorise(p, cut)
    assert cut.index == "financial_stability"
    assert abs(np.mean(cats == "high") - 0.10) <= 0.001
    assert abs(np.mean(cats == "medium") - 0.20) <= 0.001
    rule = CutoffRule(medium_share=0.25, high_share=0.05)
    cats = categorise(p, derive_cutoffs("financial_stability", p, rule))
    assert abs(np.mean(cats == "high") - 0.05) <= 0.001
    assert abs(np.mean(cats == "medium") - 0.25) <= 0.001


def test_odds_rule_follows_base_rate() -> None:
    p = np.linspace(0.0, 0.2, 1001)  # mean 0.1
    cut = derive_cutoffs("payment_discipline", p, "odds")
    assert cut.medium_from == pytest.approx(0.1)
    odds = 3 * 0.1 / 0.9
    assert cut.high_from == pytest.approx(odds / (1 + odds))
    cut = derive_cutoffs(
        "payment_discipline", p, CutoffRule("odds", high_odds_ratio=2.0), base_rate=0.05
    )
    assert cut.medium_from == pytest.approx(0.05)
    assert cut.high_from == pytest.approx((2 * 0.05 / 0.95) / (1 + 2 * 0.05 / 0.95))


def test_cutoff_rule_round_trip_and_refusals() -> None:
    rule = CutoffRule("odds", high_odds_ratio=4.0)
    assert CutoffRule.from_json(rule.to_json()) == rule
    with pytest.raises(ValidationError, match=r"CutoffRule\.method") as err:
        CutoffRule("ranked")
    assert err.value.code == "unknown_rule"
    with pytest.raises(ValidationError, match="one of odds, quantile") as err:
        derive_cutoffs("payment_discipline", np.linspace(0, 1, 10), "ranked")
    assert err.value.code == "unknown_rule"
    with pytest.raises(ValidationError, match="medium_share/high_share"):
        CutoffRule(medium_share=0.6, high_share=0.5)
    with pytest.raises(ValidationError, match="odds_ratio"):
        CutoffRule(medium_odds_ratio=3.0, high_odds_ratio=2.0)


def test_derive_cutoffs_refusals() -> None:
    with pytest.raises(ValidationError, match="too concentrated") as err:
        derive_cutoffs("payment_discipline", np.full(1000, 0.3))
    assert err.value.code == "cannot_derive_cutoffs"
    with pytest.raises(ValidationError, match=r"derive_cutoffs\.index"):
        derive_cutoffs("Not An Index", np.linspace(0, 1, 10))
    with pytest.raises(ValidationError, match=r"derive_cutoffs\.base_rate"):
        derive_cutoffs("payment_discipline", np.zeros(10), "odds")
    with pytest.raises(ValidationError, match="at least one probability"):
        derive_cutoffs("payment_discipline", np.array([]))
    with pytest.raises(ValidationError, match="outside"):
        derive_cutoffs("payment_discipline", np.array([0.1, 2.0]))


def test_derive_cutoffs_when_one_tie_spans_both_quantiles() -> None:
    """Regression: a coarse model on 200 validation rows gave the same probability at the
    70% and 90% quantiles, and training failed (cannot_derive_cutoffs)."""
    p = np.concatenate([np.full(50, 0.02), np.full(140, 0.15), np.full(10, 0.6)])
    cut = derive_cutoffs("conscientiousness", p)
    assert (cut.medium_from, cut.high_from) == (0.15, 0.6)  # high starts at the next value up
    p = np.concatenate([np.full(60, 0.02), np.full(140, 0.15)])  # nothing above the tie
    cut = derive_cutoffs("conscientiousness", p)
    assert (cut.medium_from, cut.high_from) == (0.02, 0.15)
    assert {cut.category(x) for x in p} == {"medium", "high"}
