"""``nce-lab train``, ``release`` and ``card``, with CliRunner (one lab, trained once)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import nce_model_lab._cli_train as cli_train
import nce_model_lab.release as release_mod
from nce_model_lab.cli import app
from nce_model_lab.labdir import LabDir
from sample_protocol.bundle_verify import verify_bundle
from sample_protocol.records import MANIFEST_NAME, REGISTER_AUDIENCE, ReleaseManifest
from tests.agency_runtime.round_fixtures import LAB
from tests.nce_model_lab.conftest import Lab, new_lab

runner = CliRunner()


@pytest.fixture(scope="module")
def trained_lab(tmp_path_factory) -> tuple[Lab, str]:
    """A lab trained with ``nce-lab train --json``, and that command's output."""
    made = new_lab(tmp_path_factory.mktemp("cli-train"))
    result = runner.invoke(
        app, ["train", "--lab-dir", str(made.lab), "--request", made.request_id, "--json"]
    )
    assert result.exit_code == 0, result.output
    return made, result.output


@pytest.fixture
def lab(trained_lab) -> Lab:
    return trained_lab[0]


def release_args(lab: Lab, out, *extra: str) -> list[str]:
    return [
        "release",
        "--lab-dir", str(lab.lab),
        "--request", lab.request_id,
        "--key", str(lab.world.key(LAB)),
        "--trust", str(lab.world.trust),
        "--root-pub", str(lab.world.root_pub),
        "--out", str(out),
        *extra,
    ]  # fmt: skip


def test_train_json(trained_lab):
    lab, output = trained_lab
    data = json.loads(output)
    models = data["round"]["models"]
    assert data["round"]["request_id"] == lab.request_id
    assert {m["name"] for m in models} >= {"combiner.financial_stability", "TAX.payment_discipline"}
    for m in models:
        assert m["parity"]["passed"] is True and m["evaluation"]["auc"] > 0.5
        assert m["family"] in {"hgb", "scorecard"}
    assert (LabDir(lab.lab).round_dir(lab.request_id) / "models" / "evaluation.json").is_file()


def test_train_text_names_family_auc_ece_and_parity(lab, monkeypatch):
    trained = release_mod.load_trained_round(lab.lab, lab.request_id)  # no second training
    monkeypatch.setattr(cli_train, "train_round", lambda *a, **k: trained)
    result = runner.invoke(app, ["train", "--lab-dir", str(lab.lab), "--request", lab.request_id])
    assert result.exit_code == 0, result.output
    assert "AUC" in result.output and "ECE" in result.output and "parity" in result.output
    line = next(x for x in result.output.splitlines() if "combiner.financial_stability" in x)
    assert ("scorecard" in line or "hgb" in line) and " ok " in line


#: The CLI lab's CUSTOMS models see 54 test rows and fail the default gates.
LOOSE = ("--min-auc", "0.5", "--max-ece", "0.2")
FORCE = ("--force", "cli test: CUSTOMS has 54 test rows")


def test_release_writes_bundles_that_verify(lab, tmp_path):
    args = release_args(lab, tmp_path / "out", "--json", "--valid-days", "90", *FORCE)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert REGISTER_AUDIENCE in data["bundles"] and "TAX" in data["bundles"]
    assert data["release_id"] in LabDir(lab.lab).read_registry().releases
    for audience, path in data["bundles"].items():
        v = verify_bundle(
            path, trust=lab.world.trust_root, audience=audience, state_dir=tmp_path / audience
        )
        assert v.manifest.release_id == data["release_id"] and v.models
        assert data["cards"][audience] == str(Path(path) / "model_card.html")
        assert v.manifest.model_card == "model_card.html"
    assert set(data["quality_overrides"]) == {"CUSTOMS"}
    assert all(o.endswith(FORCE[1]) for o in data["quality_overrides"]["CUSTOMS"])
    assert data["quality_gates"] == {"kind": "QualityGates", "min_auc": 0.6, "max_auc": 0.98,
                                     "max_ece": 0.05}  # fmt: skip


def test_release_text(lab, tmp_path):
    result = runner.invoke(app, release_args(lab, tmp_path / "out", "--sequence", "7", *LOOSE))
    assert result.exit_code == 0, result.output
    assert "signed bundles" in result.output and "REGISTER" in result.output
    assert "rel7-" in result.output
    assert "every model passes the quality gates" in result.output


def test_release_failing_the_gates_exits_3_and_writes_nothing(lab, tmp_path):
    lab_copy = tmp_path / "lab"
    shutil.copytree(lab.lab, lab_copy)
    copy = Lab(lab.world, lab_copy, lab.request_id)
    out = tmp_path / "out"
    result = runner.invoke(app, release_args(copy, out))
    assert result.exit_code == 3, result.output
    assert "quality_gate_failed" in result.output and "--force" in result.output
    trained = release_mod.load_trained_round(copy.lab, copy.request_id)
    for m in trained.models:
        ev = m.evaluation
        if ev.auc < 0.6:
            assert f"{m.name}: AUC {ev.auc:.3f} below the floor 0.600 (--min-auc" in result.output
        if ev.ece > 0.05:
            assert f"{m.name}: ECE {ev.ece:.3f} above the ceiling 0.050 (--max-ece" in result.output
        if ev.auc >= 0.6 and ev.ece <= 0.05:
            assert f"{m.name}:" not in result.output
    assert not out.exists() or not list(out.iterdir())
    assert not LabDir(copy.lab).read_registry().releases.keys() - set(
        LabDir(lab.lab).read_registry().releases
    )


def test_release_forced_text_lists_the_overrides(lab, tmp_path):
    lab_copy = tmp_path / "lab"
    shutil.copytree(lab.lab, lab_copy)
    copy = Lab(lab.world, lab_copy, lab.request_id)
    result = runner.invoke(app, release_args(copy, tmp_path / "out", *FORCE))
    assert result.exit_code == 0, result.output
    assert "quality gates overridden" in result.output and "CUSTOMS." in result.output
    assert f"forced: {FORCE[1]}" in result.output


@pytest.mark.parametrize(
    "extra",
    [("--min-auc", "0.9", "--max-auc", "0.8"), ("--max-ece", "0"), ("--force", " ")],
)
def test_release_bad_gate_options_exit_2(lab, tmp_path, extra):
    result = runner.invoke(app, release_args(lab, tmp_path / "out", *extra))
    assert result.exit_code == 2, result.output
    assert "bad_option" in result.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# -- card --------------------------------------------------------------------------------------


def test_card_of_a_round_text_and_json(lab, tmp_path):
    out = tmp_path / "round.html"
    args = ["card", lab.request_id, "--lab-dir", str(lab.lab), "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"model card of round {lab.request_id}" in result.output and str(out) in result.output
    assert "FAILS: CUSTOMS." in result.output
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    result = runner.invoke(app, [*args, "--json", *LOOSE])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["card"] == str(out) and data["failures"] == [] and data["release_id"] is None
    assert "combiner.financial_stability" in data["models"]


def test_card_of_a_bundle(lab, tmp_path):
    result = runner.invoke(app, release_args(lab, tmp_path / "out", "--json", *FORCE))
    assert result.exit_code == 0, result.output
    bundle = json.loads(result.output)["bundles"]["CUSTOMS"]
    out = tmp_path / "customs.html"
    args = ["card", bundle, "--lab-dir", str(lab.lab), "--out", str(out), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["audiences"] == ["CUSTOMS"] and data["quality_overrides"]
    assert out.read_bytes() == (tmp_path / "out" / data["release_id"] / "CUSTOMS" /
                                "model_card.html").read_bytes()  # fmt: skip
    manifest = ReleaseManifest.from_json((Path(bundle) / MANIFEST_NAME).read_bytes())
    assert list(manifest.quality_overrides) == data["quality_overrides"]
    result = runner.invoke(app, [*args[:-1], "--min-auc", "0.7"])
    assert result.exit_code == 2 and "bad_option" in result.output


def test_card_of_an_unknown_target_exits_2(lab, tmp_path):
    result = runner.invoke(app, ["card", "nothing-here", "--lab-dir", str(lab.lab)])
    assert result.exit_code == 2
    assert "card_target_unknown" in result.output and "nothing-here" in result.output


def test_card_help_explains_it():
    result = runner.invoke(app, ["card", "--help"])
    assert result.exit_code == 0
    for word in ("model card", "HTML", "--lab-dir", "--out", "--min-auc", "held-out"):
        assert word in result.output
    result = runner.invoke(app, ["release", "--help"])
    for word in ("--force", "--min-auc", "--max-auc", "--max-ece", "quality"):
        assert word in result.output


def test_unknown_request_exits_2(lab, tmp_path):
    bad = "req-20250303-aaaaaaaaaaaaaaaa"
    result = runner.invoke(app, ["train", "--lab-dir", str(lab.lab), "--request", bad])
    assert result.exit_code == 2
    assert "unknown_request" in result.output and bad in result.output
    result = runner.invoke(app, ["train", "--lab-dir", str(tmp_path / "empty"), "--request", bad])
    assert result.exit_code == 2


def test_no_training_table_exits_2(lab, tmp_path):
    lab_copy = tmp_path / "lab"
    shutil.copytree(lab.lab, lab_copy)
    LabDir(lab_copy).training_path(lab.request_id).unlink()
    result = runner.invoke(app, ["train", "--lab-dir", str(lab_copy), "--request", lab.request_id])
    assert result.exit_code == 2
    assert "no_training_table" in result.output and "training.parquet" in result.output


def test_parity_failure_exits_3_and_writes_nothing(lab, tmp_path, monkeypatch):
    real = release_mod.require_parity

    def strict(*args, **kwargs):
        return real(*args, **{**kwargs, "tolerance": -1.0})  # no model can pass

    monkeypatch.setattr(release_mod, "require_parity", strict)
    lab_copy = tmp_path / "lab"
    shutil.copytree(lab.lab, lab_copy)
    models = LabDir(lab_copy).round_dir(lab.request_id) / "models"
    shutil.rmtree(models)
    result = runner.invoke(app, ["train", "--lab-dir", str(lab_copy), "--request", lab.request_id])
    assert result.exit_code == 3
    assert "parity" in result.output and "release refused" in result.output
    assert not models.exists()
    assert not [p for p in models.parent.iterdir() if p.name.startswith(".models")]
