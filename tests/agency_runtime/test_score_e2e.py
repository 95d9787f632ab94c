"""End to end at the bodies: the lab's release, verified and used to score whole populations.

Every step is a real ``agency-runtime`` command (Typer's runner, same code as the console
script): the tax body and the legal-statistics body each verify their bundle, score their
whole synthetic population (Parquet and CSV), and the batches are then checked the way the
register and ``minisign`` would: signature, schema, one row per entity and index.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from agency_runtime.cli import app
from agency_runtime.sample_round import AUDIT_FILE
from sample_protocol.batch import BATCH_SCHEMA, BATCH_SIGNATURE_NAME, open_batch
from sample_protocol.records import BATCH_COLUMNS, MANIFEST_NAME
from sample_protocol.signing import verify_file

from .release_fixtures import N_ENTITIES, ReleaseWorld, read_bundle, release_world
from .round_fixtures import REGISTER

runner = CliRunner()


@pytest.fixture(scope="module")
def rw(tmp_path_factory: pytest.TempPathFactory) -> ReleaseWorld:
    return release_world(tmp_path_factory)


@pytest.mark.parametrize(("source", "fmt"), [("TAX", "parquet"), ("LEGAL_STATS", "csv")])
def test_a_body_verifies_the_release_and_scores_its_population(
    rw: ReleaseWorld, tmp_path: Path, source: str, fmt: str
) -> None:
    body = rw.body(source)
    state = tmp_path / body / "state"
    bundle = rw.bundle(source)
    population = rw.world.extract(source)
    if fmt == "csv":
        population = tmp_path / f"{source}.csv"
        pacsv.write_csv(pq.read_table(rw.world.extract(source)), population)

    key = ["--key", str(rw.world.key(body)), "--state", str(state)]
    verified = runner.invoke(app, ["verify", str(bundle), *rw.trust_args(), *key])
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.startswith(f"VERIFIED: release {rw.release_id}")

    out = tmp_path / "outbox" / f"{source}.batch"
    scored = runner.invoke(
        app,
        [
            "score", str(bundle), str(population), "--source", source, *rw.trust_args(), *key,
            "--out", str(out), "--seal-to", str(rw.world.pub(REGISTER)), "--json",
        ],
    )  # fmt: skip
    assert scored.exit_code == 0, scored.output
    summary = json.loads(scored.stdout)
    manifest, _ = read_bundle(bundle)
    indexes = [m.index for m in manifest.models]
    assert summary["entities"] == N_ENTITIES
    assert summary["rows"] == N_ENTITIES * len(indexes)

    # What minisign -Vm manifest.json -p <body>.minisign.pub checks: the body's signature.
    signed = verify_file(out / MANIFEST_NAME, rw.world.public(body))
    assert signed.signer == body and f"batch_id:{summary['batch_id']}" in signed.trusted_comment
    assert (out / BATCH_SIGNATURE_NAME).is_file()

    # What the register does: open, check everything, load.
    opened = open_batch(out, trust=rw.world.trust_root, recipient=rw.world.secret(REGISTER))
    table = opened.table
    assert opened.signer == body and opened.manifest.sealed
    assert tuple(table.column_names) == BATCH_COLUMNS and table.schema.equals(BATCH_SCHEMA)
    assert table.num_rows == N_ENTITIES * len(indexes)
    assert set(table["index"].to_pylist()) == set(indexes)
    assert set(table["source"].to_pylist()) == {source}
    bins = pq.read_table(rw.world.extract(source), columns=["bin"])["bin"].to_pylist()
    assert set(table["bin"].to_pylist()) == set(bins)

    audit = runner.invoke(app, ["audit", "verify", str(state / AUDIT_FILE), "--json"])
    assert audit.exit_code == 0, audit.output
    assert json.loads(audit.stdout)["entries"] == 3  # verified, verified again, scored
