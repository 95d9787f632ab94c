"""``nce-lab sample request``, ``nce-lab sample ingest`` and ``nce-lab status``, with CliRunner."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nce_model_lab.cli import app
from sample_protocol.keys import generate_keypair, write_keypair
from tests.agency_runtime.round_fixtures import LAB, TAX_BODY
from tests.nce_model_lab.test_sample_ingest import make_sample, new_round, new_world

runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return new_world(tmp_path_factory.mktemp("world"))


def request_args(world, tmp_path, *extra, key=None):
    return [
        "sample", "request",
        "--key", str(key or world.key(LAB)),
        "--trust", str(world.trust),
        "--root-pub", str(world.root_pub),
        "--lab-dir", str(tmp_path / "lab"),
        "--out", str(tmp_path / "out"),
        "--sources", "TAX,STATS", "--sources", "court",
        "--sent-on", "2025-03-03",
        *extra,
    ]  # fmt: skip


def test_request_json(world, tmp_path):
    result = runner.invoke(app, request_args(world, tmp_path, "--size", "400", "--json"))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    request = data["request"]
    assert request["due_date"] == "2025-03-18" and request["sample_size"] == 400
    assert request["recipients"] == [TAX_BODY, "court-body", "stats-body"]
    assert request["as_of"] == "2024-03-03"
    for key in ("file", "signature", "lab_copy"):
        assert Path(data[key]).is_file(), key
    assert data["file"].endswith(f"{request['request_id']}.json")


def test_request_text(world, tmp_path):
    result = runner.invoke(app, request_args(world, tmp_path, "--as-of", "2024-01-01"))
    assert result.exit_code == 0, result.output
    assert "due 2025-03-18 (10 business days, Kazakhstan calendar)" in result.stdout
    assert "send it to tax-body, court-body, stats-body" in result.stdout


@pytest.mark.parametrize(
    ("extra", "code", "needle"),
    [
        (["--size", "0"], "bad_option", "sample size"),
        (["--sent-on", "2025-13-01"], "bad_option", "--sent-on"),
        (["--as-of", "2025-04-01"], "bad_option", "as-of"),
        (["--as-of", "2024-12-01"], "horizon_open", "horizon still open"),
        (["--k", "1"], "bad_option", "k-anonymity"),
        (["--sources", "NOPE"], "unknown_source", "NOPE"),
    ],
)
def test_request_bad_options_exit_2(world, tmp_path, extra, code, needle):
    result = runner.invoke(app, request_args(world, tmp_path, *extra))
    assert result.exit_code == 2, result.output
    assert f"[{code}]" in result.stderr and needle in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_request_fields_file_with_a_direct_identifier_exits_2(world, tmp_path):
    fields = tmp_path / "fields.json"
    fields.write_text(json.dumps({"TAX": ["taxpayer_name"]}))
    result = runner.invoke(app, request_args(world, tmp_path, "--fields-file", str(fields)))
    assert result.exit_code == 2
    assert "[direct_identifier_requested]" in result.stderr and "taxpayer_name" in result.stderr


def test_request_with_a_body_key_is_refused_exit_3(world, tmp_path):
    result = runner.invoke(app, request_args(world, tmp_path, key=world.key(TAX_BODY)))
    assert result.exit_code == 3
    assert "[trust_wrong_role]" in result.stderr


def test_request_with_another_root_key_is_refused_exit_3(world, tmp_path):
    other = write_keypair(generate_keypair("impostor-root"), tmp_path / "keys")
    args = request_args(world, tmp_path)
    args[args.index("--root-pub") + 1] = str(other.public)
    result = runner.invoke(app, args)
    assert result.exit_code == 3 and "trust root" in result.stderr


def ingest_args(rnd, *files, json_out=False):
    return [
        "sample", "ingest", *map(str, files),
        "--key", str(rnd.world.key(LAB)),
        "--trust", str(rnd.world.trust),
        "--root-pub", str(rnd.world.root_pub),
        "--lab-dir", str(rnd.lab),
        *(["--json"] if json_out else []),
    ]  # fmt: skip


def test_ingest_prints_each_file_and_the_coverage(tmp_path, world):
    rnd = new_round(tmp_path, world=world)
    good = [make_sample(rnd, s) for s in ("TAX", "STATS")]
    result = runner.invoke(app, ingest_args(rnd, *good))
    assert result.exit_code == 0, result.output
    assert result.stdout.count("accepted ") == 2
    assert f"training table rounds/{rnd.request.request_id}/training.parquet: 300 rows" in (
        result.stdout
    )
    assert "TAX" in result.stdout and "100.0%" in result.stdout
    assert "not received yet: COURT" in result.stdout


def test_ingest_with_a_refused_file_exits_3_and_keeps_the_good_one(tmp_path, world):
    rnd = new_round(tmp_path, world=world)
    good = make_sample(rnd, "STATS")
    bad = make_sample(rnd, "COURT", recipient=rnd.world.public("register"))
    result = runner.invoke(app, ingest_args(rnd, good, bad, json_out=True))
    assert result.exit_code == 3, result.output
    data = json.loads(result.stdout)
    assert data["accepted_count"] == 1 and data["refused_count"] == 1
    codes = [o["code"] for o in data["outcomes"]]
    assert codes == ["accepted", "envelope_wrong_recipient"]
    assert data["coverage"][0]["sources"][0]["source"] == "STATS"
    text = runner.invoke(app, ingest_args(rnd, bad))
    assert text.exit_code == 3
    assert "REFUSED" in text.stdout and "[envelope_wrong_recipient]" in text.stderr


def test_status_text_and_json(tmp_path, world):
    rnd = new_round(tmp_path, world=world, sent_on=dt.date(2025, 3, 3))
    assert runner.invoke(app, ingest_args(rnd, make_sample(rnd, "TAX"))).exit_code == 0
    args = ["status", "--lab-dir", str(rnd.lab), "--today", "2025-03-27"]
    text = runner.invoke(app, args)
    assert text.exit_code == 0, text.output
    assert "OVERDUE" in text.stdout and "answered 1, pending 0, overdue 2" in text.stdout
    assert "by 4 business days" in text.stdout
    data = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    [req] = data["requests"]
    assert req["overdue"] == ["court-body", "stats-body"] and req["answered"] == [TAX_BODY]
    assert data["today"] == "2025-03-27"


def test_status_bad_today_exits_2(tmp_path):
    result = runner.invoke(app, ["status", "--lab-dir", str(tmp_path), "--today", "27/03/2025"])
    assert result.exit_code == 2 and "[bad_option]" in result.stderr
