"""``nce-lab train-table`` with CliRunner: a bundle from a CSV or Parquet table, and the
bad inputs that must end with a clear error, exit 2 or 3, and no bundle."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from nce_model_lab.cli import app
from nce_model_lab.labdir import LabDir
from sample_protocol.bundle_verify import verify_bundle
from tests.nce_model_lab.test_generic import World, make_world

runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return make_world(tmp_path_factory.mktemp("cli-table"), n_rows=800, seed=8)


def args(world: World, out: Path, *extra: str, data: Path | None = None) -> list[str]:
    return [
        "train-table", str(data or world.csv),
        "--target", "default",
        "--id", "loan_id",
        "--key", str(world.key("nce-lab")),
        "--out", str(out),
        *extra,
    ]  # fmt: skip


def test_json_with_trust_and_lab_dir(world, tmp_path):
    lab = tmp_path / "lab"
    extra = ("--trust", str(world.trust_path), "--root-pub", str(world.root_pub))
    result = runner.invoke(
        app, args(world, tmp_path / "bundle", *extra, "--lab-dir", str(lab), "--json")
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["source"] == "TAX" and data["index"] == "financial_stability"
    assert data["sequence"] == 1 and data["n_rows"] == 800 and len(data["cv_auc"]) == 5
    assert data["parity"]["passed"] is True and data["bundle"] == str(tmp_path / "bundle")
    verified = verify_bundle(tmp_path / "bundle", trust=world.trust, audience="TAX", state_dir=None)
    assert verified.release_id == data["release_id"]
    assert data["release_id"] in LabDir(lab).read_registry().releases
    again = runner.invoke(
        app, args(world, tmp_path / "second", *extra, "--lab-dir", str(lab), "--json")
    )
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["sequence"] == 2


def test_text_output_parquet_labels_and_options(world, tmp_path):
    table = world.table
    labels = pa.array(np.where(table["default"].to_numpy() == 1, "bad", "good"))
    table = table.set_column(table.column_names.index("default"), "default", labels)
    data = tmp_path / "credit.parquet"
    pq.write_table(table, data)
    out = tmp_path / "bundle"
    result = runner.invoke(
        app,
        args(
            world, out, "--positive", "bad", "--drop", "region", "--drop", "debt_ratio",
            "--source", "LEGAL_STATS", "--index", "payment_discipline", "--sequence", "7",
            data=data,
        ),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "trained LEGAL_STATS.payment_discipline on credit.parquet: 800 rows" in text
    assert "(default = 'bad')" in text and "5-fold cross-validated AUC" in text
    assert "not a feature: region (--drop)" in text and "sequence 7" in text
    verified = verify_bundle(out, trust=world.trust, audience="LEGAL_STATS", state_dir=None)
    assert [m.name for m in verified.manifest.models] == ["LEGAL_STATS.payment_discipline"]
    assert "LEGAL_STATS__region" not in verified.manifest.models[0].input_names


def _refused(world: World, tmp_path: Path, argv: list[str], code: str, exit_code: int = 2) -> str:
    result = runner.invoke(app, argv)
    assert result.exit_code == exit_code, result.output
    assert f"[{code}]" in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "bundle").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle")]
    return result.stderr


def test_missing_target_column(world, tmp_path):
    argv = args(world, tmp_path / "bundle")
    argv[argv.index("default")] = "defaulted"
    err = _refused(world, tmp_path, argv, "no_target_column")
    assert "'defaulted'" in err and str(world.csv) in err


def test_non_binary_target(world, tmp_path):
    table = world.table.set_column(
        world.table.column_names.index("default"), "default", pa.array(np.arange(800) % 3)
    )
    data = tmp_path / "three.csv"
    pacsv.write_csv(table, data)
    err = _refused(
        world, tmp_path, args(world, tmp_path / "bundle", data=data), "non_binary_target"
    )
    assert "exactly two distinct values" in err and "three.csv" in err


def test_unreadable_files(world, tmp_path):
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1\x00\x01\x02PAR1")
    for data in (garbage, tmp_path / "missing.csv"):
        err = _refused(
            world, tmp_path, args(world, tmp_path / "bundle", data=data), "unreadable_table"
        )
        assert data.name in err


def test_duplicate_ids(world, tmp_path):
    ids = world.table["loan_id"].to_pylist()
    ids[500] = ids[3]
    table = world.table.set_column(0, "loan_id", pa.array(ids))
    data = tmp_path / "dups.csv"
    pacsv.write_csv(table, data)
    err = _refused(world, tmp_path, args(world, tmp_path / "bundle", data=data), "duplicate_id")
    assert "data row 501 repeats the id of data row 4" in err and ids[3] not in err


def test_world_readable_key(world, tmp_path):
    key = tmp_path / "nce-lab.key"
    key.write_bytes(world.key("nce-lab").read_bytes())
    os.chmod(key, 0o644)
    argv = args(world, tmp_path / "bundle")
    argv[argv.index("--key") + 1] = str(key)
    err = _refused(world, tmp_path, argv, "key_permissions")
    assert "chmod 600" in err


def test_key_not_a_lab_is_refused(world, tmp_path):
    argv = args(world, tmp_path / "bundle", "--trust", str(world.trust_path), "--root-pub",
                str(world.root_pub))  # fmt: skip
    argv[argv.index("--key") + 1] = str(world.key("tax-body"))
    _refused(world, tmp_path, argv, "trust_wrong_role", exit_code=3)


def test_trust_needs_root_pub_and_out_must_be_new(world, tmp_path):
    argv = args(world, tmp_path / "bundle", "--trust", str(world.trust_path))
    _refused(world, tmp_path, argv, "bad_option")
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "old").write_text("x")
    result = runner.invoke(app, args(world, tmp_path / "bundle"))
    assert result.exit_code == 2 and "[bundle_exists]" in result.stderr
    assert sorted(p.name for p in (tmp_path / "bundle").iterdir()) == ["old"]
