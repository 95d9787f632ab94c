"""``registry-combiner verify-release | ingest | ingest-feed | combine | show | export``."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from registry_combiner.cli import app
from sample_protocol.audit import AuditLog
from tests.registry_combiner.world import RegisterWorld

runner = CliRunner()
COMMANDS = ("verify-release", "ingest", "ingest-feed", "combine", "show", "export")


def _run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(command):
    code, out, _ = _run(command, "--help")
    assert code == 0 and "--state" in out and len(out) > 300


def test_the_whole_register_flow_on_the_command_line(rworld: RegisterWorld, tmp_path: Path):
    w = rworld.world
    state = tmp_path / "state"
    trust = ["--state", str(state), "--trust", str(w.trust), "--root-pub", str(w.root_pub)]
    batches = [str(rworld.batches[s]) for s in ("TAX", "LEGAL_STATS", "CIVIL_STATUS")]
    key = ["--key", str(rworld.register_key)]

    code, _, err = _run("ingest", batches[1], *trust)
    assert code == 3 and "batch_release_unknown" in err

    code, out, err = _run("verify-release", str(rworld.register_bundle), *trust, "--json")
    assert code == 0, err
    assert json.loads(out)["release_id"] == rworld.release_id

    code, out, err = _run("ingest", *batches, *trust, *key, "--json")
    assert code == 0, err
    assert [b["source"] for b in json.loads(out)["batches"]] == [
        "TAX", "LEGAL_STATS", "CIVIL_STATUS",
    ]  # fmt: skip
    code, out, err = _run("ingest", batches[2], batches[0], *trust, *key)
    assert code == 3 and err.count("batch_replayed") == 2

    code, out, err = _run("ingest-feed", "UTILITIES", str(rworld.feeds["UTILITIES"]),
                          "--state", str(state), "--as-of", "2025-01-31")  # fmt: skip
    assert code == 0 and "UTILITIES as of 2025-01-31" in out, err
    code, _, err = _run("ingest-feed", "TAX", str(rworld.feeds["UTILITIES"]), "--state", str(state))
    assert code == 3 and "feed_not_direct" in err
    code, _, err = _run(
        "ingest-feed", "COURT", str(rworld.feeds["UTILITIES"]), "--state", str(state)
    )
    assert code == 2 and "feed_missing_column" in err
    code, _, err = _run(
        "ingest-feed", "COURT", "x.parquet", "--state", str(state), "--as-of", "01.02"
    )
    assert code == 2 and "YYYY-MM-DD" in err

    code, out, err = _run("combine", "--release", str(rworld.register_bundle), *trust, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["entities"] == 4000 and summary["feeds"] == {"UTILITIES": 1}
    assert "COURT" in summary["feeds_missing"]

    some = pq.read_table(rworld.feeds["UTILITIES"])["bin"][0].as_py()
    code, out, err = _run("show", some, "--state", str(state), "--json")
    assert code == 0, err
    view = json.loads(out)
    assert len(view["indexes"]) == 4 and all(ix["partial"] for ix in view["indexes"])
    code, out, _ = _run("show", some, "--state", str(state))
    assert code == 0 and "payment_discipline" in out and "history" in out
    code, _, err = _run("show", "123456789012", "--state", str(state))
    assert code == 2 and "checksum" in err

    out_file = tmp_path / "export.parquet"
    code, out, err = _run("export", "--out", str(out_file), "--state", str(state))
    assert code == 0 and pq.read_table(out_file).num_rows == 16_000, err

    log = AuditLog(state / "audit.log", actor="register")
    assert log.verify().entries >= 8
    entries = list(log.entries())
    outcomes = {(e.action, e.outcome) for e in entries}
    assert {
        ("release_verified", "ok"),
        ("batch_ingested", "ok"),
        ("batch_ingested", "refused"),
        ("feed_ingested", "ok"),
        ("feed_ingested", "refused"),
        ("feed_ingested", "error"),
        ("combined", "ok"),
    } <= outcomes
    refused = next(e for e in entries if e.outcome == "refused" and e.action == "batch_ingested")
    assert refused.details["code"] in {"batch_release_unknown", "batch_replayed"}
