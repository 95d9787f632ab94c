"""``nce_model_lab.release``: train a round into LAB/rounds/<id>/models/, release signed bundles.

One lab (a 4,000-entity economy, every source) is trained and released once per session
(``trained`` and ``released`` in conftest.py); tests that change the lab work on a copy.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nce_model_lab.card import MODEL_CARD_FILE
from nce_model_lab.errors import LabError
from nce_model_lab.labdir import LabDir
from nce_model_lab.release import (
    EVALUATION_FILE,
    LIBRARIES,
    QualityGates,
    QualityRefused,
    load_trained_round,
    next_sequence,
    release_round,
    train_round,
    with_margin,
)
from sample_protocol.audit import AuditLog
from sample_protocol.bundle_verify import verify_bundle
from sample_protocol.catalogue import index_ids
from sample_protocol.features import FeatureSpec
from sample_protocol.records import (
    REGISTER_AUDIENCE,
    CategoryCutoffs,
    SampleManifest,
    sha256_file,
)
from sample_protocol.scores import CutoffRule, ScoreScale, categorise
from tests.agency_runtime.round_fixtures import LAB
from tests.nce_model_lab.conftest import FORCE_REASON, add_request, copy_lab

#: Gates the session's round passes (its CUSTOMS models: AUC 0.52-0.75, ECE up to 0.14).
LOOSE = QualityGates(min_auc=0.5, max_auc=0.98, max_ece=0.2)

# -- train_round ---------------------------------------------------------------------------


def test_every_model_and_its_files_are_written(trained):
    lab, rnd = trained
    names = {m.name for m in rnd.models}
    assert {f"combiner.{i}" for i in index_ids()} <= names
    assert {"TAX.financial_stability", "TAX.payment_discipline"} <= names
    files = {p.name for p in lab.models_dir.iterdir()}
    expected = {EVALUATION_FILE}
    for name in names:
        expected |= {f"{name}.onnx", f"{name}.features.json", f"{name}.parity.json"}
        expected.add(f"{name}.reference.json")
    assert files == expected  # nothing else: no pickle, no leftovers
    assert not [p for p in lab.models_dir.parent.iterdir() if p.name.startswith(".models")]


def test_evaluation_json_is_the_round(trained):
    lab, rnd = trained
    assert load_trained_round(lab.lab, lab.request_id) == rnd
    assert rnd.training_sha256 == sha256_file(LabDir(lab.lab).training_path(lab.request_id))
    assert rnd.split == {"train": 2400, "validation": 800, "test": 800}
    assert set(rnd.libraries) == set(LIBRARIES) and rnd.seed == 0


def test_models_are_sound_and_pass_parity(trained):
    _, rnd = trained
    for m in rnd.models:
        assert m.parity.passed and m.parity.max_abs_diff <= 1e-5, m.name
        assert m.parity.category_flips == 0
        assert m.evaluation.auc > 0.5 and 0.0 <= m.evaluation.ece < 0.2, m.name
        assert set(m.evaluation.category_rates) == {"low", "medium", "high"}
        assert m.family in {"hgb", "scorecard"}
        assert m.cutoffs.index == m.index and 0 < m.cutoffs.medium_from < m.cutoffs.high_from
    for i in index_ids():
        assert rnd.model(f"combiner.{i}").evaluation.auc > 0.7


def test_feature_specs_match_the_model_inputs(trained):
    lab, rnd = trained
    for m in rnd.models:
        spec = FeatureSpec.from_json((lab.models_dir / m.features_file).read_bytes())
        if m.source is not None:
            assert spec.names == m.input_names
            assert set(spec.sources) == {m.source}  # a body's model reads its source only
        else:
            assert set(spec.names) <= set(m.input_names)
        fixture = json.loads((lab.models_dir / m.parity_file).read_bytes())
        assert fixture["n_features"] == len(m.input_names) and fixture["n_rows"] > 0


def test_unknown_request_and_missing_table(trained, tmp_path):
    lab, _ = trained
    with pytest.raises(LabError) as err:
        train_round(lab.lab, "req-20250303-aaaaaaaaaaaaaaaa")
    assert err.value.code == "unknown_request" and "req-20250303-" in str(err.value)
    copy = copy_lab(lab, tmp_path / "lab")
    other = add_request(lab.world, copy.lab, tmp_path / "outbox")
    with pytest.raises(LabError) as err:
        train_round(copy.lab, other)
    assert err.value.code == "no_training_table" and "training.parquet" in str(err.value)
    with pytest.raises(LabError) as err:
        release_round(
            copy.lab,
            other,
            lab_key=lab.world.secret(LAB),
            trust=lab.world.trust_root,
            out_dir=tmp_path / "out",
        )
    assert err.value.code == "not_trained"


# -- with_margin ----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 99), min_size=10, max_size=60))
def test_margin_keeps_validation_categories(values):
    p = np.array(values, dtype=np.float64) / 100.0
    lo, hi = np.quantile(p, [0.3, 0.9], method="higher")
    if not 0 < lo < hi < 1:
        return
    cut = CategoryCutoffs("payment_discipline", float(lo), float(hi))
    moved = with_margin(cut, p)
    assert (categorise(p, moved) == categorise(p, cut)).all()
    for old, new in ((cut.medium_from, moved.medium_from), (cut.high_from, moved.high_from)):
        assert new <= old
        # off every validation value, unless nothing lies below the cut-off
        assert new not in p or (new == old and not (p < old).any())


# -- release_round --------------------------------------------------------------------------


def test_one_bundle_per_source_and_one_for_the_register(released, trained):
    _, rnd = trained
    _, bundles = released
    sources = sorted({m.source for m in rnd.models if m.source})
    assert [b.name for b in bundles] == [*sources, REGISTER_AUDIENCE]
    assert len({b.parent for b in bundles}) == 1


def test_every_bundle_verifies_for_its_audience(released, trained, tmp_path):
    _, rnd = trained
    lab, bundles = released
    for bundle in bundles:
        state = tmp_path / bundle.name
        v = verify_bundle(bundle, trust=lab.world.trust_root, audience=bundle.name, state_dir=state)
        man = v.manifest
        assert man.sequence == 1 and man.lab == LAB
        if bundle.name == REGISTER_AUDIENCE:
            assert all(m.source is None for m in man.models)
            assert {m.index for m in man.models} == set(index_ids())
            assert not [k for k in man.training if k.startswith("generalisation:")]
        else:
            assert {m.source for m in man.models} == {bundle.name}
            # how the body's sample was generalised, so that it scores its raw data alike
            path = LabDir(lab.lab).manifest_path(rnd.request_id, bundle.name)
            key = f"generalisation:{bundle.name}"
            if path.is_file():
                sample = SampleManifest.from_json(path.read_text())
                assert json.loads(man.training[key]) == dict(sample.report.generalised)
            else:  # a round built without a sample from this body: nothing to say
                assert key not in man.training
        assert set(v.models) == {m.name for m in man.models} == set(v.parity)
        assert max(v.parity.values()) <= 1e-5
        for entry in man.models:
            trained_model = rnd.model(entry.name)
            assert entry.input_names == trained_model.input_names
            assert set(entry.input_types) == {"float32"}
            assert entry.output_names == ("label", "probabilities")
            assert entry.opset == {"": 17, "ai.onnx.ml": 3}
            assert man.cutoffs_for(entry.index) == trained_model.cutoffs
            spec = f"models/{entry.name}.features.json"
            assert spec in man.files and (bundle / spec).is_file()
            assert ScoreScale.from_json(man.training[f"scale:{entry.index}"]) == (
                trained_model.scale
            )
        assert man.model_card == MODEL_CARD_FILE and MODEL_CARD_FILE in man.files
        assert sha256_file(bundle / MODEL_CARD_FILE) == man.files[MODEL_CARD_FILE]
        assert QualityGates.from_json(man.training["quality_gates"]) == QualityGates()
        assert man.training["training_sha256"] == rnd.training_sha256
        assert man.training["seed"] == "0"
        assert CutoffRule.from_json(man.training["cutoff_rule"]) == CutoffRule()
        assert {f"library:{name}" for name in LIBRARIES} <= set(man.training)


def test_release_is_recorded_and_the_next_sequence_follows(released, tmp_path):
    lab, bundles = released
    release_id = bundles[0].parent.name
    assert release_id in LabDir(lab.lab).read_registry().releases
    assert next_sequence(lab.lab) == 2
    copy = copy_lab(lab, tmp_path / "lab")
    again = release_round(
        copy.lab,
        copy.request_id,
        lab_key=lab.world.secret(LAB),
        trust=lab.world.trust_root,
        out_dir=tmp_path / "out",
        valid_days=30,
        gates=LOOSE,
    )
    v = verify_bundle(again[0], trust=lab.world.trust_root, audience=again[0].name, state_dir=None)
    assert v.manifest.sequence == 2
    assert v.manifest.expires_at - v.manifest.created_at == dt.timedelta(days=30)


def test_a_changed_training_table_or_model_is_refused(released, tmp_path):
    lab, _ = released
    args = {"lab_key": lab.world.secret(LAB), "trust": lab.world.trust_root, "gates": LOOSE}
    changed = copy_lab(lab, tmp_path / "a")
    (changed.models_dir / "combiner.financial_stability.onnx").write_bytes(b"not a model")
    with pytest.raises(LabError) as err:
        release_round(changed.lab, changed.request_id, out_dir=tmp_path / "out-a", **args)
    assert err.value.code == "trained_file_changed"
    assert "combiner.financial_stability.onnx" in str(err.value)
    assert not list((tmp_path / "out-a").iterdir())  # no partial release left behind
    stale = copy_lab(lab, tmp_path / "b")
    path = LabDir(stale.lab).training_path(stale.request_id)
    table = pq.read_table(path)
    pq.write_table(table.slice(0, 3000), path)
    with pytest.raises(LabError) as err:
        release_round(stale.lab, stale.request_id, out_dir=tmp_path / "out-b", **args)
    assert err.value.code == "trained_round_stale" and "train again" in str(err.value)


def test_a_key_that_is_not_the_labs_is_refused(released, tmp_path):
    from sample_protocol.errors import TrustError
    from tests.agency_runtime.round_fixtures import TAX_BODY

    lab, _ = released
    copy = copy_lab(lab, tmp_path / "lab")
    with pytest.raises(TrustError):
        release_round(
            copy.lab,
            copy.request_id,
            lab_key=lab.world.secret(TAX_BODY),
            trust=lab.world.trust_root,
            out_dir=tmp_path / "out",
        )
    assert not LabDir(copy.lab).read_registry().releases.keys() - set(
        LabDir(lab.lab).read_registry().releases
    )


# -- quality gates ----------------------------------------------------------------------------


def _audit(lab_dir) -> list:
    return list(AuditLog(LabDir(lab_dir).audit_path, LAB).entries())


def test_a_round_failing_the_gates_is_refused_and_nothing_is_written(trained, tmp_path):
    lab, rnd = trained
    copy = copy_lab(lab, tmp_path / "lab")
    out = tmp_path / "out"
    with pytest.raises(QualityRefused) as err:
        release_round(
            copy.lab,
            copy.request_id,
            lab_key=lab.world.secret(LAB),
            trust=lab.world.trust_root,
            out_dir=out,
        )
    assert err.value.code == "quality_gate_failed" and err.value.exit_code == 3
    message = str(err.value)
    failing = {f.model for f in err.value.failures}
    assert failing and all(name.startswith("CUSTOMS.") for name in failing)
    for f in err.value.failures:  # each failing model, measure, value and limit is named
        metric = "AUC" if f.gate.endswith("auc") else "ECE"
        assert f"{f.model}: {metric} {f.value:.3f}" in message
        assert f"{f.limit:.3f}" in message
        assert f.value == getattr(rnd.model(f.model).evaluation, metric.lower())
    assert "--force" in message
    assert not out.exists() or not list(out.iterdir())
    assert not LabDir(copy.lab).read_registry().releases.keys() - set(
        LabDir(lab.lab).read_registry().releases
    )
    last = _audit(copy.lab)[-1]
    assert (last.action, last.outcome, last.subject) == (
        "release_refused",
        "refused",
        copy.request_id,
    )
    assert "CUSTOMS." in last.details["failures"]


def test_a_forced_release_records_each_override(released):
    lab, bundles = released
    for bundle in bundles:
        v = verify_bundle(bundle, trust=lab.world.trust_root, audience=bundle.name, state_dir=None)
        overrides = v.manifest.quality_overrides
        if bundle.name == "CUSTOMS":
            assert overrides and all(o.endswith(f"forced: {FORCE_REASON}") for o in overrides)
            assert all(o.startswith("CUSTOMS.") for o in overrides)
        else:
            assert overrides == ()  # its models pass: nothing overridden there
    entries = _audit(lab.lab)
    (forced,) = [e for e in entries if e.action == "quality_gates_overridden"]
    assert forced.details["reason"] == FORCE_REASON
    assert forced.subject == bundles[0].parent.name
    written = next(e for e in entries if e.action == "release_written")
    assert written.details["quality_overrides"] == forced.details["count"] != "0"


def test_custom_gates_are_applied_and_recorded(trained, tmp_path):
    lab, _ = trained
    args = {"lab_key": lab.world.secret(LAB), "trust": lab.world.trust_root}
    copy = copy_lab(lab, tmp_path / "lab")
    bundles = release_round(copy.lab, copy.request_id, out_dir=tmp_path / "a", gates=LOOSE, **args)
    for bundle in bundles:
        v = verify_bundle(bundle, trust=lab.world.trust_root, audience=bundle.name, state_dir=None)
        assert QualityGates.from_json(v.manifest.training["quality_gates"]) == LOOSE
        assert v.manifest.quality_overrides == ()
    leak = QualityGates(min_auc=0.0, max_auc=0.8, max_ece=1.0)  # "leakage" above 0.8
    with pytest.raises(QualityRefused) as err:
        release_round(copy.lab, copy.request_id, out_dir=tmp_path / "b", gates=leak, **args)
    assert {f.gate for f in err.value.failures} == {"max_auc"}
    assert "combiner." in str(err.value) and "above the ceiling 0.800" in str(err.value)
    assert not (tmp_path / "b").exists() or not list((tmp_path / "b").iterdir())


@pytest.mark.parametrize("reason", ["", "   ", "x" * 101, "two\nlines"])
def test_a_bad_force_reason_is_refused(trained, tmp_path, reason):
    lab, _ = trained
    with pytest.raises(LabError) as err:
        release_round(
            lab.lab,
            lab.request_id,
            lab_key=lab.world.secret(LAB),
            trust=lab.world.trust_root,
            out_dir=tmp_path / "out",
            force=reason,
        )
    assert err.value.code == "bad_option" and "--force" in str(err.value)
    assert not (tmp_path / "out").exists()
