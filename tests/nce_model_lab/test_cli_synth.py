"""``nce-lab synth`` through the CLI: happy path, JSON, and user mistakes."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
from typer.testing import CliRunner

from nce_model_lab.cli import app
from sample_protocol.catalogue import get_source

runner = CliRunner()


def test_synth_writes_sources_truth_and_summary(tmp_path):
    out = tmp_path / "eco"
    result = runner.invoke(
        app,
        [
            "synth",
            "--entities",
            "1500",
            "--seed",
            "4",
            "--sources",
            "TAX,COURT",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n_entities"] == 1500 and summary["sources"] == ["TAX", "COURT"]
    assert sorted(p.name for p in (out / "sources").iterdir()) == ["COURT.parquet", "TAX.parquet"]
    assert pq.read_schema(out / "sources" / "TAX.parquet").equals(
        get_source("TAX").arrow_schema(), check_metadata=False
    )
    assert (out / "truth" / "truth.parquet").exists()
    assert (out / "observed" / "outcomes.parquet").exists()


def test_synth_refuses_a_non_empty_directory_without_force(tmp_path):
    out = tmp_path / "eco"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    result = runner.invoke(app, ["synth", "--entities", "1000", "--out", str(out)])
    assert result.exit_code == 2
    assert "not empty" in result.output
    assert (out / "mine.txt").read_text() == "keep"


def test_synth_unknown_source_and_bad_count_are_exit_2(tmp_path):
    bad_source = runner.invoke(app, ["synth", "--sources", "NOPE", "--out", str(tmp_path / "a")])
    assert bad_source.exit_code == 2
    assert "NOPE" in bad_source.output
    bad_count = runner.invoke(app, ["synth", "--entities", "0", "--out", str(tmp_path / "b")])
    assert bad_count.exit_code == 2
    assert "Traceback" not in bad_count.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
