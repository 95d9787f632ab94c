"""Tests of agency_runtime/_cli_sample.py: ``issue-list`` and ``prepare-sample`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from agency_runtime.cli import app
from agency_runtime.sample_round import (
    AUDIT_FILE,
    list_file_name,
    mapping_path,
    sample_file_name,
)
from sample_protocol.audit import AuditLog

from .round_fixtures import TAX_BODY, World, build_round_world

runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_round_world(
        tmp_path_factory.mktemp("world"), n_entities=3000, seed=7, sources=("TAX", "STATS")
    )


def _common(world: World, party: str, out: Path) -> list[str]:
    return [
        "--trust", str(world.trust), "--root-pub", str(world.root_pub),
        "--key", str(world.key(party)), "--state", str(world.state(party)), "--out", str(out),
    ]  # fmt: skip


def _issue(world: World, request: Path, out: Path, *extra: str) -> Result:
    args = ["issue-list", str(request), *_common(world, TAX_BODY, out)]
    return runner.invoke(app, [*args, "--register", str(world.extract("TAX")), *extra])


def _prepare(world: World, request: Path, party: str, source: str, lists: Path, out: Path,
             *extra: str, extract: Path | None = None) -> Result:  # fmt: skip
    args = [
        "prepare-sample", str(request), "--list", str(lists / list_file_name(party)),
        "--source", source, "--extract", str(extract or world.extract(source)),
        *_common(world, party, out), *extra,
    ]  # fmt: skip
    return runner.invoke(app, args)


def test_commands_are_registered_with_help() -> None:
    for command in ("issue-list", "prepare-sample"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert "--trust" in result.output and "--json" in result.output
    assert "--stratify" in runner.invoke(app, ["issue-list", "--help"]).output
    assert "--outcomes" in runner.invoke(app, ["prepare-sample", "--help"]).output


def test_round_through_the_cli(world: World, tmp_path: Path) -> None:
    request = world.write_request(sample_size=200)
    result = _issue(world, request, tmp_path / "lists", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["entities"] == 200 and set(summary["recipients"]) == {TAX_BODY, "stats-body"}
    assert "verified" in result.stderr  # progress lines go to standard error
    assert mapping_path(world.state(TAX_BODY), summary["request_id"]).is_file()

    result = _prepare(world, request, "stats-body", "STATS", tmp_path / "lists", tmp_path / "s")
    assert result.exit_code == 0, result.output
    assert "200 rows of 200 listed entities (0 not in the extract)" in result.stdout
    assert (tmp_path / "s" / sample_file_name(summary["request_id"], "STATS")).is_file()

    result = _prepare(world, request, TAX_BODY, "TAX", tmp_path / "lists", tmp_path / "s",
                      "--outcomes", str(world.outcomes), "--k", "6", "--json", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    prepared = json.loads(result.stdout)
    assert prepared["outcomes"] is True and prepared["k_target"] == 6
    assert prepared["manifest"]["report"]["passed"] is True
    assert result.stderr == ""

    again = _issue(world, request, tmp_path / "lists2")
    assert again.exit_code == 3 and "already_issued" in again.stderr
    forced = _issue(world, request, tmp_path / "lists2", "--force")
    assert forced.exit_code == 0 and "replaced the earlier list" in forced.stdout


def test_refusals_exit_3(world: World, tmp_path: Path) -> None:
    forged = world.write_request(sample_size=20, signer="stats-body")
    result = _issue(world, forged, tmp_path / "out")
    assert result.exit_code == 3
    assert "trust_wrong_role" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()

    too_big = world.write_request(sample_size=3500)
    result = _issue(world, too_big, tmp_path / "out")
    assert result.exit_code == 3 and "register_too_small" in result.stderr

    request = world.write_request(sample_size=20)
    assert _issue(world, request, tmp_path / "lists").exit_code == 0
    result = _prepare(world, request, "stats-body", "TAX", tmp_path / "lists", tmp_path / "s")
    assert result.exit_code == 3 and "trust_wrong_source" in result.stderr
    assert not (tmp_path / "s").exists()

    # a trust root that does not verify against the pinned root key: refused and audited
    args = ["issue-list", str(request), *_common(world, TAX_BODY, tmp_path / "o")]
    args[args.index("--root-pub") + 1] = str(world.pub("nce-lab"))
    result = runner.invoke(app, [*args, "--register", str(world.extract("TAX"))])
    assert result.exit_code == 3 and "signature_unknown_key" in result.stderr
    log = AuditLog(world.state(TAX_BODY) / AUDIT_FILE, actor=TAX_BODY)
    last = list(log.entries())[-1]
    assert (last.action, last.outcome) == ("trust_root_loaded", "refused")


def test_bad_input_exit_2(world: World, tmp_path: Path) -> None:
    request = world.write_request(sample_size=20)
    assert _issue(world, request, tmp_path / "lists").exit_code == 0
    table = pq.read_table(world.extract("STATS")).drop_columns(["oked"])
    pq.write_table(table, tmp_path / "STATS.parquet")
    result = _prepare(world, request, "stats-body", "STATS", tmp_path / "lists", tmp_path / "s",
                      extract=tmp_path / "STATS.parquet")  # fmt: skip
    assert result.exit_code == 2
    assert "missing_column" in result.stderr and "'oked'" in result.stderr
    assert not (tmp_path / "s").exists()

    result = _prepare(world, request, "stats-body", "STATS", tmp_path / "lists", tmp_path / "s",
                      "--k", "2")  # fmt: skip
    assert result.exit_code == 2 and "bad_k" in result.stderr

    result = _issue(world, tmp_path / "absent.json", tmp_path / "out")
    assert result.exit_code == 2 and "missing_request" in result.stderr

    bad_key = tmp_path / "bad.key"
    bad_key.write_text("{}")
    bad_key.chmod(0o600)
    args = ["issue-list", str(request), *_common(world, TAX_BODY, tmp_path / "o")]
    args[args.index("--key") + 1] = str(bad_key)
    result = runner.invoke(app, [*args, "--register", str(world.extract("TAX"))])
    assert result.exit_code == 2 and "Traceback" not in result.output
