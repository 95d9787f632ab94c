"""Tests of nce_model_lab.evaluate: ranking, calibration, stability, categories."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import brier_score_loss, roc_auc_score, roc_curve

from nce_model_lab import evaluate as ev
from nce_model_lab.errors import LabError
from nce_model_lab.evaluate import (
    PSI_ACT,
    PSI_WATCH,
    CalibrationBin,
    Evaluation,
    auc,
    brier,
    calibration_table,
    category_table,
    evaluate,
    expected_calibration_error,
    ks_statistic,
    psi,
    psi_status,
)
from sample_protocol.records import CategoryCutoffs

CUT = CategoryCutoffs("payment_discipline", medium_from=0.2, high_from=0.5)


def _draws(n: int, seed: int, a: float = 1.0, b: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.beta(a, b, n)
    y = (rng.random(n) < p).astype(np.int8)
    return y, p


def test_docstring_examples_run() -> None:
    result = doctest.testmod(ev)
    assert result.attempted > 0
    assert result.failed == 0


# -- against scikit-learn and by hand ------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(10, 300), st.booleans())
def test_auc_brier_ks_match_sklearn(seed: int, n: int, coarse: bool) -> None:
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    if coarse:  # many ties
        p = np.round(p, 1)
    y = (rng.random(n) < p).astype(np.int8)
    if y.min() == y.max():
        y[0], y[1] = 0, 1
    assert auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert brier(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, p, drop_intermediate=False)
    assert ks_statistic(y, p) == pytest.approx(np.max(np.abs(tpr - fpr)), abs=1e-12)


def test_hand_computed_example() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.3, 0.3, 0.8, 0.6, 0.9])
    # pairs (pos, neg): 0.3 v (0.1 win, 0.3 tie, 0.6 lose); 0.8 and 0.9 beat all three.
    assert auc(y, p) == pytest.approx((1 + 0.5 + 0 + 3 + 3) / 9)
    # thresholds >=0.9: TPR 1/3, FPR 0; >=0.8: 2/3, 0; >=0.6: 2/3, 1/3; >=0.3: 1, 2/3.
    assert ks_statistic(y, p) == pytest.approx(2 / 3)
    expected_brier = (0.01 + 0.09 + 0.49 + 0.04 + 0.36 + 0.01) / 6
    assert brier(y, p) == pytest.approx(expected_brier)


def test_perfect_and_reversed_ranking() -> None:
    y = np.array([0, 0, 1, 1])
    assert auc(y, [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert ks_statistic(y, [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auc(y, [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert ks_statistic(y, [0.4, 0.3, 0.2, 0.1]) == 1.0
    assert auc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert ks_statistic(y, [0.5, 0.5, 0.5, 0.5]) == 0.0


def test_boolean_and_float_targets_accepted() -> None:
    p = np.array([0.1, 0.9, 0.2, 0.7])
    assert auc(np.array([False, True, False, True]), p) == 1.0
    assert auc(np.array([0.0, 1.0, 0.0, 1.0]), p) == 1.0


# -- calibration ---------------------------------------------------------------------


def test_calibration_table_hand_example() -> None:
    y = np.array([0, 0, 1, 0, 1, 1])
    p = np.array([0.1, 0.1, 0.2, 0.6, 0.8, 0.9])
    table = calibration_table(y, p, n_bins=2)
    assert [b.n for b in table] == [3, 3]
    assert table[0].mean_predicted == pytest.approx(0.4 / 3)
    assert table[0].observed_rate == pytest.approx(1 / 3)
    assert table[1].observed_rate == pytest.approx(2 / 3)
    assert table[0].lower == 0.1 and table[-1].upper == 0.9
    ece = (3 * abs(1 / 3 - 0.4 / 3) + 3 * abs(2 / 3 - 2.3 / 3)) / 6
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(ece)


def test_calibration_bins_equal_frequency_and_uniform() -> None:
    y, p = _draws(10_000, 1)
    table = calibration_table(y, p, n_bins=10)
    assert len(table) == 10
    assert all(abs(b.n - 1000) <= 1 for b in table)
    assert sum(b.n for b in table) == 10_000
    uniform = calibration_table(y, p, n_bins=10, strategy="uniform")
    assert uniform[0].lower == 0.0
    assert all(b.upper - b.lower == pytest.approx(0.1) for b in uniform)
    same = calibration_table(np.array([0, 1, 1]), np.full(3, 0.4))
    assert len(same) == 1 and isinstance(same[0], CalibrationBin)
    assert (same[0].lower, same[0].upper, same[0].n) == (0.4, 0.4, 3)
    assert same[0].mean_predicted == pytest.approx(0.4)
    assert same[0].observed_rate == pytest.approx(2 / 3)


def test_ece_small_when_calibrated_large_when_not() -> None:
    y, p = _draws(200_000, 2)
    assert expected_calibration_error(y, p) < 0.01
    assert expected_calibration_error(y, np.clip(p * 2.0, 0.0, 1.0)) > 0.1
    assert expected_calibration_error(y, p**3) > 0.1


# -- PSI -----------------------------------------------------------------------------


def test_psi_stable_and_shifted() -> None:
    rng = np.random.default_rng(5)
    reference = rng.beta(1.0, 5.0, 50_000)
    same = rng.beta(1.0, 5.0, 50_000)
    shifted = rng.beta(2.0, 3.0, 50_000)
    assert psi(reference, reference) == pytest.approx(0.0, abs=1e-12)
    assert psi(reference, same) < 0.01
    assert psi(reference, shifted) > PSI_ACT
    assert psi_status(psi(reference, same)) == "stable"
    assert psi_status(psi(reference, shifted)) == "act"


def test_psi_hand_example_and_empty_bins() -> None:
    reference = np.array([0.1, 0.2, 0.3, 0.4])
    current = np.array([0.1, 0.1, 0.1, 0.35])  # bins [<0.175, <0.25, <0.325, rest]
    got = psi(reference, current, n_bins=4)
    r = np.array([0.25, 0.25, 0.25, 0.25])
    c = np.array([0.75, 1e-4, 1e-4, 0.25])
    assert got == pytest.approx(float(np.sum((c - r) * np.log(c / r))))
    assert math.isfinite(psi(reference, np.full(4, 0.99)))


def test_psi_status_thresholds() -> None:
    assert (PSI_WATCH, PSI_ACT) == (0.10, 0.25)
    assert psi_status(0.0999) == "stable"
    assert psi_status(0.10) == "watch"
    assert psi_status(0.2499) == "watch"
    assert psi_status(0.25) == "act"


# -- categories and evaluate ---------------------------------------------------------


def test_category_table() -> None:
    y = np.array([0, 0, 1, 0, 1, 1, 0, 0])
    p = np.array([0.05, 0.1, 0.2, 0.3, 0.5, 0.9, 0.15, 0.25])
    table = category_table(y, p, CUT)
    assert set(table) == {"low", "medium", "high"}
    assert table["low"].n == 3 and table["low"].observed_rate == 0.0
    assert table["medium"].n == 3 and table["medium"].observed_rate == pytest.approx(1 / 3)
    assert table["high"].n == 2 and table["high"].observed_rate == 1.0
    assert sum(r.share for r in table.values()) == pytest.approx(1.0)
    empty = category_table(np.array([0, 1]), np.array([0.01, 0.02]), CUT)
    assert empty["high"].n == 0 and empty["high"].observed_rate is None


def test_evaluate_collects_everything_and_round_trips() -> None:
    y, p = _draws(5_000, 3)
    _, p_train = _draws(5_000, 4)
    result = evaluate(y, p, cutoffs=CUT, p_reference=p_train)
    assert result.auc == pytest.approx(roc_auc_score(y, p))
    assert result.gini == pytest.approx(2 * result.auc - 1)
    assert result.ks == pytest.approx(ks_statistic(y, p))
    assert result.brier == pytest.approx(brier_score_loss(y, p))
    assert result.ece == pytest.approx(expected_calibration_error(y, p))
    assert len(result.calibration) == 10
    assert set(result.category_rates) == {"low", "medium", "high"}
    assert result.psi is not None and result.psi < PSI_WATCH
    assert (result.n, result.positives) == (5_000, int(y.sum()))
    assert Evaluation.from_json(result.to_json()) == result
    bare = evaluate(y, p, cutoffs=None)
    assert bare.psi is None and bare.category_rates == {}


# -- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("y", "p", "code", "words"),
    [
        ([0, 1, 1], [0.1, 0.2], "length_mismatch", "expected the same length, found 3 and 2"),
        ([0, 2, 1], [0.1, 0.2, 0.3], "non_binary_target", "first: row 1, value 2"),
        (["a", "b"], [0.1, 0.2], "non_binary_target", "y_true: expected 0/1"),
        ([0, 1, 1], [0.1, math.nan, 0.3], "bad_probability", "p: expected probabilities"),
        ([0, 1], [0.1, 1.2], "bad_probability", "outside (first: row 1, value 1.2)"),
        ([1, 1, 1], [0.1, 0.2, 0.3], "single_class", "found only 1 (positive) in 3 row(s)"),
        ([0, 0], [0.1, 0.2], "single_class", "found only 0 (negative)"),
        ([], [], "empty_input", "p: expected at least one value"),
        ([[0, 1]], [[0.1, 0.2]], "bad_shape", "expected a 1-D array"),
    ],
)
@pytest.mark.parametrize("func", [auc, ks_statistic, evaluate])
def test_bad_input_refused(
    y: list[object], p: list[object], code: str, words: str, func: object
) -> None:
    with pytest.raises(LabError) as err:
        if func is evaluate:
            evaluate(y, p, cutoffs=None)
        else:
            func(y, p)  # type: ignore[operator]
    assert err.value.code == code
    assert words in str(err.value)
    assert isinstance(err.value, ValueError)


def test_single_class_allowed_where_it_makes_sense() -> None:
    y = np.zeros(4, dtype=np.int8)
    p = np.array([0.1, 0.2, 0.1, 0.3])
    assert brier(y, p) == pytest.approx(np.mean(p**2))
    assert expected_calibration_error(y, p, n_bins=2) > 0
    table = category_table(y, p, CUT)
    assert (table["low"].n, table["medium"].n, table["high"].n) == (2, 2, 0)


def test_bad_bins_strategy_and_reference() -> None:
    y, p = _draws(100, 6)
    with pytest.raises(LabError, match="n_bins: expected a positive integer") as err:
        calibration_table(y, p, n_bins=0)
    assert err.value.code == "bad_bins"
    with pytest.raises(LabError, match="strategy: expected one of quantile, uniform") as err:
        expected_calibration_error(y, p, strategy="kmeans")
    assert err.value.code == "bad_strategy"
    with pytest.raises(LabError, match="reference: expected probabilities") as err:
        evaluate(y, p, cutoffs=None, p_reference=np.array([0.1, math.nan]))
    assert err.value.code == "bad_probability"
