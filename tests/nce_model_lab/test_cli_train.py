"""``nce-lab train`` and ``nce-lab release``, with CliRunner (one lab, trained once)."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

import nce_model_lab._cli_train as cli_train
import nce_model_lab.release as release_mod
from nce_model_lab.cli import app
from nce_model_lab.labdir import LabDir
from sample_protocol.bundle_verify import verify_bundle
from sample_protocol.records import REGISTER_AUDIENCE
from tests.agency_runtime.round_fixtures import LAB
from tests.nce_model_lab.test_release import Lab, new_lab

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


def test_release_writes_bundles_that_verify(lab, tmp_path):
    result = runner.invoke(app, release_args(lab, tmp_path / "out", "--json", "--valid-days", "90"))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert REGISTER_AUDIENCE in data["bundles"] and "TAX" in data["bundles"]
    assert data["release_id"] in LabDir(lab.lab).read_registry().releases
    for audience, path in data["bundles"].items():
        v = verify_bundle(
            path, trust=lab.world.trust_root, audience=audience, state_dir=tmp_path / audience
        )
        assert v.manifest.release_id == data["release_id"] and v.models


def test_release_text(lab, tmp_path):
    result = runner.invoke(app, release_args(lab, tmp_path / "out", "--sequence", "7"))
    assert result.exit_code == 0, result.output
    assert "signed bundles" in result.output and "REGISTER" in result.output
    assert "rel7-" in result.output


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
