"""``nce_model_lab.quality``: the gates a model must pass before release, and overrides.

Also the two measures the gates and the card use to say how much a held-out number can
be trusted (``evaluate.auc_standard_error`` and ``evaluate.ece_noise_floor``).
"""

from __future__ import annotations

import dataclasses
import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nce_model_lab import quality
from nce_model_lab.errors import LabError
from nce_model_lab.evaluate import (
    auc,
    auc_standard_error,
    calibration_table,
    ece_noise_floor,
    expected_calibration_error,
)
from nce_model_lab.labdir import LabDir
from nce_model_lab.quality import (
    DEFAULT_GATES,
    MAX_REASON_CHARS,
    GateFailure,
    QualityGates,
    QualityRefused,
    check_model,
    check_models,
    check_reason,
    enforce,
    gate_release,
    override_notes,
)
from sample_protocol.audit import AuditLog
from sample_protocol.errors import ValidationError
from sample_protocol.records_base import check_name
from tests.agency_runtime.round_fixtures import LAB
from tests.nce_model_lab.conftest import copy_lab


def with_quality(model, **changes):
    """``model`` with its evaluation's AUC / ECE replaced (the rest as measured)."""
    return dataclasses.replace(model, evaluation=dataclasses.replace(model.evaluation, **changes))


@pytest.fixture(scope="module")
def model(trained):
    _, rnd = trained
    return rnd.model("TAX.payment_discipline")


def test_docstring_examples_run():
    assert doctest.testmod(quality).failed == 0


# -- the gates record ------------------------------------------------------------------------


def test_default_gates_and_serde():
    assert (DEFAULT_GATES.min_auc, DEFAULT_GATES.max_auc, DEFAULT_GATES.max_ece) == (
        0.60,
        0.98,
        0.05,
    )
    gates = QualityGates(min_auc=0.55, max_auc=0.99, max_ece=0.08)
    assert QualityGates.from_json(gates.to_json()) == gates


@pytest.mark.parametrize(
    "values",
    [
        {"min_auc": 0.9, "max_auc": 0.8},
        {"min_auc": -0.1},
        {"max_auc": 1.5},
        {"max_ece": 0.0},
        {"max_ece": 1.2},
    ],
)
def test_bad_gates_are_refused(values):
    with pytest.raises(ValidationError) as err:
        QualityGates(**values)
    assert err.value.code == "bad_option" and "QualityGates" in str(err.value)


# -- checking models -------------------------------------------------------------------------


def test_a_sound_model_passes_every_gate(model):
    assert model.evaluation.auc > 0.7 and model.evaluation.ece < 0.05
    assert check_model(model, DEFAULT_GATES) == ()


@pytest.mark.parametrize(
    ("changes", "gate", "limit"),
    [
        ({"auc": 0.58}, "min_auc", 0.60),
        ({"auc": 0.99}, "max_auc", 0.98),
        ({"ece": 0.07}, "max_ece", 0.05),
    ],
)
def test_each_gate_names_model_measure_value_and_limit(model, changes, gate, limit):
    (failure,) = check_model(with_quality(model, **changes), DEFAULT_GATES)
    assert (failure.model, failure.gate, failure.limit) == (model.name, gate, limit)
    assert failure.value == next(iter(changes.values()))
    assert (failure.n, failure.positives) == (model.evaluation.n, model.evaluation.positives)
    text = failure.describe()
    metric = "AUC" if "auc" in gate else "ECE"
    assert text.startswith(f"{model.name}: {metric} {failure.value:.3f} ")
    assert f"{limit:.3f}" in text and f"--{gate.replace('_', '-')}" in text
    assert f"{model.evaluation.n:,} test rows" in text
    if gate == "max_ece":
        assert failure.noise == pytest.approx(ece_noise_floor(model.evaluation.calibration))
        assert "sampling noise alone" in text


def test_limits_are_inclusive(model):
    at = with_quality(model, auc=0.60, ece=0.05)
    assert check_model(at, DEFAULT_GATES) == ()
    both = with_quality(model, auc=0.5, ece=0.5)
    assert [f.gate for f in check_model(both, DEFAULT_GATES)] == ["min_auc", "max_ece"]


def test_the_session_round_fails_only_on_its_tiny_customs_sample(trained):
    _, rnd = trained
    failures = check_models(rnd.models, DEFAULT_GATES)
    assert failures and {f.model.split(".")[0] for f in failures} == {"CUSTOMS"}
    assert all(f.n < 100 for f in failures)
    loose = QualityGates(min_auc=0.5, max_ece=0.2)
    assert check_models(rnd.models, loose) == ()


# -- refusing and forcing --------------------------------------------------------------------


def test_enforce_refuses_unless_forced(model):
    failures = check_model(with_quality(model, auc=0.52, ece=0.09), DEFAULT_GATES)
    enforce((), force=None)  # nothing to refuse
    enforce(failures, force="reason")  # forced: no error
    with pytest.raises(QualityRefused) as err:
        enforce(failures, force=None)
    assert err.value.code == "quality_gate_failed" and err.value.exit_code == 3
    assert err.value.failures == failures
    assert "1 model(s)" in str(err.value)
    for f in failures:
        assert f.describe() in str(err.value)


def test_override_notes_fit_the_manifest(model):
    longest = "m" * 60 + ".business_reputation"
    failures = check_model(
        dataclasses.replace(with_quality(model, auc=0.5, ece=0.9), name=longest), DEFAULT_GATES
    )
    reason = "r" * MAX_REASON_CHARS
    notes = override_notes(failures, reason)
    assert len(notes) == 2
    for note in notes:
        check_name("quality_overrides", note)  # what ReleaseManifest.validate checks
        assert len(note) <= 200 and note.endswith("...")  # the reason cut to fit
        assert note.startswith(f"{longest}: ") and "; forced: rrr" in note
    assert override_notes(failures + failures, reason) == notes  # unique
    (short,) = override_notes(failures[:1], "board decision 12")
    assert short == f"{longest}: AUC 0.500 below the floor 0.600; forced: board decision 12"


@pytest.mark.parametrize(
    ("reason", "ok"),
    [
        ("  demo on a tiny sample ", "demo on a tiny sample"),
        ("x" * MAX_REASON_CHARS, "x" * MAX_REASON_CHARS),
        ("", None),
        ("x" * (MAX_REASON_CHARS + 1), None),
        ("tab\there", None),
        ("del\x7f", None),
    ],
)
def test_check_reason(reason, ok):
    if ok is not None:
        assert check_reason(reason) == ok
        return
    with pytest.raises(LabError) as err:
        check_reason(reason)
    assert err.value.code == "bad_option" and "--force" in str(err.value)


def test_gate_release_audits_a_refusal(trained, tmp_path):
    lab, rnd = trained
    copy = copy_lab(lab, tmp_path / "lab")
    strict = QualityGates(min_auc=0.9)
    with pytest.raises(QualityRefused):
        gate_release(LabDir(copy.lab), LAB, rnd, strict, force=None)
    forced = gate_release(LabDir(copy.lab), LAB, rnd, strict, force="accepted by the board")
    assert forced == check_models(rnd.models, strict)
    assert {f.model for f in forced} == {m.name for m in rnd.models}  # all below 0.9
    entries = list(AuditLog(LabDir(copy.lab).audit_path, LAB).entries())
    refused = [e for e in entries if e.action == "release_refused"]
    assert len(refused) == 1 and refused[0].outcome == "refused"
    assert QualityGates.from_json(refused[0].details["quality_gates"]) == strict
    assert refused[0].details["code"] == "quality_gate_failed"
    assert len(refused[0].details["failures"]) <= 3000
    AuditLog(LabDir(copy.lab).audit_path, LAB).verify()


def test_gate_failure_serde():
    f = GateFailure("TAX.x", "max_ece", 0.07, 0.05, 200, 20, 0.051)
    assert GateFailure.from_json(f.to_json()) == f


# -- how far a held-out measure can be trusted ------------------------------------------------


def test_ece_noise_floor_matches_a_perfectly_calibrated_model():
    rng = np.random.default_rng(11)
    n, draws = 400, 300
    p = rng.beta(1.0, 6.0, n)
    table = calibration_table(rng.random(n) < p, p)
    floor = ece_noise_floor(table)
    simulated = [
        expected_calibration_error((rng.random(n) < p).astype(int), p) for _ in range(draws)
    ]
    # the floor is the exact expectation per bin; the simulation's bins move a little
    assert np.mean(simulated) == pytest.approx(floor, rel=0.15)
    assert ece_noise_floor(()) == 0.0


@settings(max_examples=25, deadline=None)
@given(st.integers(5, 400), st.floats(0.01, 0.99))
def test_ece_noise_floor_is_exact_for_one_bin(n, p):
    from math import comb

    exact = sum(comb(n, k) * p**k * (1 - p) ** (n - k) * abs(k / n - p) for k in range(n + 1))
    table = (quality_bin(n, p),)
    assert ece_noise_floor(table) == pytest.approx(exact, rel=1e-9, abs=1e-12)


def quality_bin(n, p):
    from nce_model_lab.evaluate import CalibrationBin

    return CalibrationBin(0.0, 1.0, n, p, p)


def test_auc_standard_error_matches_the_spread_of_auc():
    rng = np.random.default_rng(5)
    n, draws = 600, 300
    aucs = []
    for _ in range(draws):
        y = (rng.random(n) < 0.2).astype(int)
        score = rng.normal(size=n) + 1.2 * y
        aucs.append(auc(y, score / (1 + np.abs(score)) / 2 + 0.5))
    mean = float(np.mean(aucs))
    se = auc_standard_error(mean, int(0.2 * n), int(0.8 * n))
    assert float(np.std(aucs)) == pytest.approx(se, rel=0.2)
    with pytest.raises(LabError) as err:
        auc_standard_error(0.7, 0, 10)
    assert err.value.code == "single_class"
