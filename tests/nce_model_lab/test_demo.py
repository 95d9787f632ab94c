"""``nce-lab demo`` plays a whole round through the real CLIs."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from nce_model_lab.cli import app
from nce_model_lab.demo import run_demo
from nce_model_lab.errors import LabError
from sample_protocol.batch import open_batch
from sample_protocol.catalogue import Catalogue, Mode
from sample_protocol.errors import ValidationError
from sample_protocol.identifier_columns import identifier_mask
from sample_protocol.keys import load_public_key, load_secret_key
from sample_protocol.records import ReleaseManifest, is_random_id
from sample_protocol.trust import load_trust_root

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
    assert {"nce-lab", "tax-body", "stats-body", "legal-stats-body", "register"} <= parties
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
    _check_scoring_and_register(result, summary, seen)


def _check_scoring_and_register(result, summary, seen):
    base = result.out
    preliminary = ["CIVIL_STATUS", "LEGAL_STATS", "TAX"]
    done = {(s["party"], s["step"]) for s in result.steps}
    # every preliminary body verified its bundle and scored its whole population
    for code, party in [
        ("TAX", "tax-body"),
        ("LEGAL_STATS", "legal-stats-body"),
        ("CIVIL_STATUS", "civil-status-body"),
    ]:
        assert {(party, f"{code} verify"), (party, f"{code} score")} <= done
    assert sorted(b.rsplit("/", 1)[-1] for b in result.batches) == preliminary
    # the batches are sealed to the register: they open with its key, not without
    trust = load_trust_root(
        base / "trust.json", root_public=load_public_key(base / "keys" / "nce-root.pub")
    )
    register_key = load_secret_key(base / "keys" / "register.key")
    for batch in result.batches:
        opened = open_batch(base / batch, trust=trust, recipient=register_key)
        source = batch.rsplit("/", 1)[-1]
        assert opened.manifest.source == source
        assert opened.manifest.release_id == result.release_id
        # every entity of the body's population, once per index its model informs
        population = pq.read_metadata(base / "economy" / "sources" / f"{source}.parquet")
        bins = set(opened.table["bin"].to_pylist())
        assert len(bins) == population.num_rows
        indexes = set(opened.table["index"].to_pylist())
        assert indexes and opened.table.num_rows == len(bins) * len(indexes)
        with pytest.raises(ValidationError) as err:
            open_batch(base / batch, trust=trust)
        assert err.value.code == "batch_recipient_required"
    # the register's steps: release, batches, every direct feed, combine, export, report
    register_steps = [s["step"] for s in result.steps if s["party"] == "register"]
    catalogue = Catalogue.default()
    direct = [
        c
        for c in catalogue.source_codes()
        if catalogue.mode(c) is Mode.DIRECT and not catalogue.source(c).optional
    ]
    assert sorted(result.direct_feeds) == sorted(direct)
    for step in ["verify release", "ingest 3 batches", "combine", "export", "signed report"]:
        assert step in register_steps
    assert {f"{c} direct feed" for c in direct} <= set(register_steps)
    assert any("[          register] combine" in line for line in seen)
    assert (base / "register" / "register.sqlite").is_file()
    assert result.register_db == str(base / "register" / "register.sqlite")
    assert result.report.endswith(".html")
    assert (base / result.report).is_file()
    if result.model_card:
        assert (base / result.model_card).is_file()
    # the end table: four indexes, each measured on every entity outside the sample
    table = summary["indexes"]
    assert sorted(row["index"] for row in table) == sorted(result.oracle_auc)
    for row in table:
        assert row["entities"] == result.entities - result.sample_size
        assert row["unscored"] == 0
        assert 0.5 < row["federated_auc"] <= 1.0, row
        assert 0.0 <= row["lab_auc"] <= 1.0
        assert row["oracle_auc"] == result.oracle_auc[row["index"]]
        assert set(row["categories"]) <= {"low", "medium", "high"}
        assert abs(sum(row["categories"].values()) - 1.0) < 1e-3
    assert set(summary) >= {"batches", "direct_feeds", "register_db", "report", "indexes"}


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
