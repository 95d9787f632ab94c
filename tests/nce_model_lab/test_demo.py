"""``nce-lab demo`` plays a whole round through the real CLIs."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from nce_model_lab.cli import app
from nce_model_lab.demo import run_demo
from nce_model_lab.errors import LabError
from sample_protocol.identifier_columns import identifier_mask
from sample_protocol.records import ReleaseManifest, is_random_id

runner = CliRunner()


def test_demo_runs_a_round_and_leaves_no_identifier(tmp_path):
    seen: list[str] = []
    result = run_demo(tmp_path / "demo", entities=2_000, seed=3, progress=seen.append)
    summary = json.loads(json.dumps(result.to_dict()))  # what --json prints
    assert summary["training_rows"] == summary["sample_size"]
    assert result.sample_size == 1_000
    assert result.training_rows == 1_000
    table = pq.read_table(result.training_table)
    assert all(is_random_id(r) for r in table["rid"].to_pylist())
    for name in table.column_names:
        column = table[name]
        if str(column.type) in ("string", "large_string"):
            assert not identifier_mask(column).any(), name
    assert {f"outcome_{i}" for i in result.oracle_auc} <= set(table.column_names)
    parties = {s["party"] for s in result.steps}
    assert {"nce-lab", "tax-body", "stats-body", "register"} <= parties
    assert all(s["exit"] == 0 for s in result.steps)
    # the lab trained and released: one bundle per preliminary body and one for the register
    assert {m["name"].split(".")[0] for m in result.models} >= {"TAX", "combiner"}
    assert all(0.0 <= m["auc"] <= 1.0 for m in result.models)
    assert sorted(p.rsplit("/", 1)[-1] for p in result.bundles) == sorted(
        ["TAX", "LEGAL_STATS", "CIVIL_STATUS", "REGISTER"]
    )
    # each body's bundle says how its sample was generalised, so it scores raw data alike
    for bundle in result.bundles:
        audience = bundle.rsplit("/", 1)[-1]
        if audience == "REGISTER":
            continue
        manifest = ReleaseManifest.from_json(
            (tmp_path / "demo" / bundle / "manifest.json").read_text()
        )
        note = json.loads(manifest.training[f"generalisation:{audience}"])
        assert isinstance(note, dict)
    assert any("ingest and join" in line for line in seen)
    # The truth stays in its own folder, never in the lab's directory.
    assert (tmp_path / "demo" / "economy" / "truth" / "truth.parquet").exists()
    assert not list((tmp_path / "demo" / "lab").rglob("truth*"))


def test_demo_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(LabError) as err:
        run_demo(tmp_path / "x", entities=2_000)
    assert err.value.code == "demo_out_not_empty"
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


def test_demo_cli_bad_option_is_exit_2(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "d"), "--entities", "10"])
    assert result.exit_code == 2
    assert "--entities: expected at least 1,000" in result.output
