"""Tests of sample_protocol.monitoring: reference distributions, PSI and drift reports."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sample_protocol.errors import SerdeError, ValidationError
from sample_protocol.monitoring import (
    ACT,
    EPSILON,
    MAX_BINS,
    SCORE_NAME,
    WATCH,
    BinnedDistribution,
    DriftAccumulator,
    DriftFlag,
    DriftReport,
    ReferenceDistribution,
    drift_flag,
    drift_report,
    fit_distribution,
    fit_reference,
    psi,
    reference_file,
)

NAMES = ("TAX__staff_count", "TAX__tax_regime", "TAX__registration_date")


def population(n: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A float32 matrix like a model's input (continuous, categorical codes, NaN) and p."""
    rng = np.random.default_rng(seed)
    X = np.empty((n, 3), dtype=np.float32)
    X[:, 0] = rng.lognormal(2.0 + shift, 1.0, n)
    X[:, 1] = rng.choice([0, 1, 2, 3], size=n, p=[0.5, 0.3, 0.15, 0.05])
    X[:, 2] = rng.normal(240.0, 30.0, n).round()
    X[rng.random(n) < 0.2, 2] = np.nan
    p = 1.0 / (1.0 + np.exp(-(0.4 * np.log(X[:, 0]) - 1.5 + rng.normal(0, 0.3, n))))
    return X, p.astype(np.float64)


@pytest.fixture(scope="module")
def reference() -> ReferenceDistribution:
    X, p = population(5000, seed=1)
    return fit_reference("TAX.payment_discipline", X, NAMES, p)


shares = st.integers(2, 12).flatmap(
    lambda k: st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k).filter(lambda v: sum(v) > 0)
)


def _normalise(values: list[float]) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return np.asarray(v / v.sum())


# -- psi ----------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(shares, st.data())
def test_psi_is_nonnegative_and_zero_for_identical(expected: list[float], data) -> None:
    e = _normalise(expected)
    actual = data.draw(st.lists(st.floats(0.0, 1.0), min_size=len(e), max_size=len(e)))
    a = _normalise(actual) if sum(actual) > 0 else np.zeros(len(e))
    assert psi(e, a) >= 0.0
    assert psi(e, e) == 0.0 and psi(a, a) == 0.0
    assert math.isclose(psi(e, a), psi(a, e), rel_tol=1e-9, abs_tol=1e-15)  # symmetric


def test_psi_known_value_and_epsilon_floor() -> None:
    assert psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(
        0.4 * math.log(0.9 / 0.5) - 0.4 * math.log(0.1 / 0.5)
    )
    # an empty bin counts as EPSILON: finite, large
    assert psi([1.0, 0.0], [0.0, 1.0]) == pytest.approx(2 * (1 - EPSILON) * math.log(1 / EPSILON))


@pytest.mark.parametrize(
    ("expected", "actual"),
    [([0.5, 0.5], [1.0]), ([], []), ([0.5, 0.5], [1.5, -0.5]), ([float("nan"), 1.0], [0.5, 0.5])],
)
def test_psi_refuses_bad_shares(expected: list[float], actual: list[float]) -> None:
    with pytest.raises(ValidationError) as err:
        psi(expected, actual)
    assert err.value.code == "bad_psi_input"


def test_flags_and_thresholds() -> None:
    assert (WATCH, ACT) == (0.10, 0.25)
    assert [drift_flag(v) for v in (0.0, 0.10, 0.1000001, 0.25, 0.2500001, 3.0)] == [
        DriftFlag.STABLE,
        DriftFlag.STABLE,
        DriftFlag.WATCH,
        DriftFlag.WATCH,
        DriftFlag.ACT,
        DriftFlag.ACT,
    ]


# -- fitting ------------------------------------------------------------------------------


def test_reference_bins_deciles_and_missing(reference: ReferenceDistribution) -> None:
    assert reference.feature_names == NAMES and reference.rows == 5000
    cont, cat, date = reference.features
    assert len(cont.edges) == MAX_BINS - 1
    assert np.allclose(cont.shares, 0.1, atol=0.002) and cont.missing_share == 0.0
    assert cat.edges == (0.5, 1.5, 2.5)  # one bin per code: edges between observed values
    assert date.missing_share == pytest.approx(0.2, abs=0.02)
    assert math.fsum(date.shares) + date.missing_share == pytest.approx(1.0)
    assert reference.score.name == SCORE_NAME and len(reference.score.edges) == MAX_BINS - 1


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 60), st.integers(1, 3)),
        elements=st.one_of(
            st.floats(-1e6, 1e6, width=32), st.just(np.float32(np.nan)), st.sampled_from([0, 1])
        ),
    )
)
def test_reference_round_trip_and_no_value_on_an_edge(X: np.ndarray) -> None:
    names = tuple(f"c{j}" for j in range(X.shape[1]))
    p = np.linspace(0.01, 0.99, X.shape[0])
    ref = fit_reference("m", X, names, p)
    assert ReferenceDistribution.from_json(ref.to_json()) == ref
    for j, dist in enumerate(ref.features):
        assert len(dist.edges) <= MAX_BINS - 1
        assert not np.isin(X[:, j].astype(np.float64), np.asarray(dist.edges)).any()
        assert math.fsum(dist.shares) + dist.missing_share == pytest.approx(1.0, abs=1e-12)
        if not np.isnan(X[:, j]).all():
            assert all(s > 0 for s in dist.shares)  # every bin holds training rows
    # the population it was fitted on does not drift at all
    report = drift_report(ref, X, p)
    assert all(f.psi == 0.0 for f in (*report.features, report.score))


def test_constant_and_all_missing_columns() -> None:
    assert fit_distribution("c", [3.0, 3.0, 3.0]) == BinnedDistribution("c", (), (1.0,), 0.0)
    nan = float("nan")
    assert fit_distribution("c", [nan, nan]) == BinnedDistribution("c", (), (0.0,), 1.0)
    with pytest.raises(ValidationError) as err:
        fit_distribution("c", [])
    assert err.value.code == "bad_distribution"


def test_fit_reference_checks_shapes() -> None:
    with pytest.raises(ValidationError) as err:
        fit_reference("m", np.zeros((4, 2), np.float32), ("a",), np.zeros(4))
    assert err.value.code == "bad_drift_input"
    with pytest.raises(ValidationError) as err:
        fit_reference("m", np.zeros((4, 1), np.float32), ("a",), np.zeros(3))
    assert err.value.code == "bad_drift_input"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("edges", [2.0, 1.0]),
        ("shares", [0.5, 0.6]),
        ("shares", [0.5]),
        ("missing_share", -0.1),
        ("edges", list(range(MAX_BINS))),
    ],
)
def test_a_damaged_reference_is_refused(reference, field: str, value) -> None:
    data = json.loads(reference.to_json())
    data["score"]["edges"], data["score"]["shares"] = [1.0], [0.5, 0.5]
    data["score"]["missing_share"] = 0.0
    data["score"][field] = value
    with pytest.raises(ValidationError) as err:
        ReferenceDistribution.from_json(json.dumps(data))
    assert err.value.code == "bad_distribution" or isinstance(err.value, SerdeError)


def test_reference_path() -> None:
    assert reference_file("TAX.conscientiousness") == "models/TAX.conscientiousness.reference.json"


# -- reports ------------------------------------------------------------------------------


def test_same_population_is_stable(reference: ReferenceDistribution) -> None:
    X, p = population(4000, seed=2)
    report = drift_report(reference, X, p)
    assert report.rows == 4000 and report.flag is DriftFlag.STABLE
    assert all(f.psi < WATCH for f in report.features) and report.score.psi < WATCH
    assert [f.name for f in report.features] == list(NAMES)
    assert DriftReport.from_json(report.to_json()) == report


def test_shifted_population_flags_act(reference: ReferenceDistribution) -> None:
    X, p = population(4000, seed=3, shift=1.0)
    report = drift_report(reference, X, p)
    cont, cat, date = report.features
    assert cont.flag is DriftFlag.ACT and cont.psi > ACT
    assert cat.flag is DriftFlag.STABLE and date.flag is DriftFlag.STABLE
    assert report.score.flag is DriftFlag.ACT and report.flag is DriftFlag.ACT
    assert report.max_feature_psi == cont.psi


def test_missing_values_drift(reference: ReferenceDistribution) -> None:
    X, p = population(4000, seed=4)
    X[:, 2] = np.nan  # the column is no longer filled in
    report = drift_report(reference, X, p)
    assert report.features[2].missing_share == 1.0 and report.features[2].flag is DriftFlag.ACT


def test_accumulator_batches_equal_one_pass(reference: ReferenceDistribution) -> None:
    X, p = population(3001, seed=5, shift=0.2)
    acc = DriftAccumulator(reference)
    for start in range(0, len(X), 250):
        acc.add(X[start : start + 250], p[start : start + 250])
    assert acc.rows == 3001
    assert acc.report() == drift_report(reference, X, p)


def test_report_needs_rows_and_matching_shapes(reference: ReferenceDistribution) -> None:
    acc = DriftAccumulator(reference)
    with pytest.raises(ValidationError) as err:
        acc.report()
    assert err.value.code == "drift_no_rows"
    with pytest.raises(ValidationError) as err:
        acc.add(np.zeros((5, 2), np.float32), np.zeros(5))
    assert err.value.code == "bad_drift_input"
    with pytest.raises(ValidationError) as err:
        acc.add(np.zeros((5, 3), np.int64), np.zeros(5))
    assert err.value.code == "bad_drift_input"
