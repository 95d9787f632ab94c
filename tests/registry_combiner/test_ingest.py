"""``registry_combiner.ingest``: verify the release, then verify and store the bodies' batches."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from registry_combiner.errors import RegistryRefused
from sample_protocol.batch import BatchError
from sample_protocol.bundle import BundleError
from sample_protocol.errors import ProtocolError
from sample_protocol.signing import sign_file
from tests.agency_runtime.round_fixtures import LAB
from tests.registry_combiner.conftest import Register

REPO = Path(__file__).resolve().parents[2]


def _nothing_stored(reg: Register) -> None:
    assert reg.store.batches() == []
    assert reg.store.max_entity_id() == 0


def test_verified_release_then_every_batch_is_stored(reg: Register):
    reg.verify()
    assert [r.release_id for r in reg.store.releases()] == [reg.world.release_id]
    rows = 0
    for source in ("TAX", "LEGAL_STATS", "CIVIL_STATUS"):
        done = reg.ingest(source)
        assert done.batch.source == source and done.batch.seq > 0
        assert reg.store.batch_rows(done.batch.seq).num_rows == done.batch.row_count
        rows += done.batch.row_count
    assert reg.store.batches(source="TAX")[0].sealed
    assert reg.store.max_entity_id() == 4000
    stored = reg.store.batch_rows(reg.store.batches(source="TAX")[0].seq)
    assert stored.column_names == ["entity", "index", "probability", "value", "category"]
    assert sorted(set(stored["index"].to_pylist())) == [
        "business_reputation", "conscientiousness", "financial_stability", "payment_discipline",
    ]  # fmt: skip


def test_a_batch_of_an_unverified_release_is_refused(reg: Register):
    with pytest.raises(RegistryRefused) as err:
        reg.ingest("LEGAL_STATS")
    assert err.value.code == "batch_release_unknown"
    _nothing_stored(reg)


def test_a_batch_of_an_expired_release_is_refused(reg: Register):
    reg.verify()
    expires = reg.store.release(reg.world.release_id).expires_at
    with pytest.raises(RegistryRefused) as err:
        reg.ingest("LEGAL_STATS", now=expires + dt.timedelta(seconds=1))
    assert err.value.code == "batch_release_expired"
    _nothing_stored(reg)


def test_a_replay_is_refused_even_from_another_path(reg: Register, tmp_path: Path):
    reg.verify()
    reg.ingest("LEGAL_STATS")
    copy = reg.world.copy_batch("LEGAL_STATS", tmp_path / "again")
    for path in (reg.world.batches["LEGAL_STATS"], copy):
        with pytest.raises(RegistryRefused) as err:
            reg.ingest(path)
        assert err.value.code == "batch_replayed"
    assert len(reg.store.batches()) == 1


def _flip(path: Path, at: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "code"),
    [
        (lambda d, w: _flip(d / "batch.parquet"), "batch_hash"),
        (lambda d, w: _flip(d / "manifest.json", 40), "batch_signature"),
        (lambda d, w: (d / "manifest.json.minisig").unlink(), "batch_layout"),
        (lambda d, w: (d / "extra.parquet").write_bytes(b"x"), "batch_layout"),
        (lambda d, w: sign_file(d / "manifest.json", w.world.secret(LAB)), "batch_signer"),
    ],
    ids=["tampered-data", "tampered-manifest", "half-written", "smuggled-file", "foreign-signer"],
)
def test_a_damaged_or_foreign_batch_is_refused_and_nothing_stored(reg, tmp_path, damage, code):
    reg.verify()
    batch = reg.world.copy_batch("LEGAL_STATS", tmp_path / "batch")
    damage(batch, reg.world)
    with pytest.raises(BatchError) as err:
        reg.ingest(batch)
    assert err.value.code == code and err.value.exit_code == 3
    _nothing_stored(reg)


def test_a_sealed_batch_needs_the_registers_key(reg: Register):
    reg.verify()
    reg.key = None  # type: ignore[assignment]
    with pytest.raises(ProtocolError) as err:
        reg.ingest("TAX")
    assert err.value.code == "batch_recipient_required"
    _nothing_stored(reg)


def test_a_tampered_release_bundle_is_refused_and_not_recorded(reg: Register, tmp_path: Path):
    bundle = tmp_path / "REGISTER"
    shutil.copytree(reg.world.register_bundle, bundle)
    _flip(next((bundle / "models").glob("*.onnx")))
    reg.world = dataclasses.replace(reg.world, bundles={"REGISTER": bundle})
    with pytest.raises(BundleError) as err:
        reg.verify()
    assert err.value.code == "bundle_file_tampered"
    assert reg.store.releases() == []


_KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from registry_combiner import store_sqlite
    from registry_combiner.cli import main

    written = store_sqlite.SqliteStore._write_parts

    def write_then_die(self, kind, owner, rows):
        written(self, kind, owner, rows)  # the batch, its entities and rows: not committed
        os.kill(os.getpid(), signal.SIGKILL)

    store_sqlite.SqliteStore._write_parts = write_then_die
    sys.argv = ["registry-combiner", *sys.argv[1:]]
    main()
    """
)


def _cli(reg: Register, *args: str, killer: bool = False) -> subprocess.CompletedProcess[str]:
    w = reg.world.world
    argv = [
        *args,
        "--state", str(reg.state),
        "--trust", str(w.trust),
        "--root-pub", str(w.root_pub),
        "--key", str(reg.world.register_key),
    ]  # fmt: skip
    code = _KILLER if killer else "from registry_combiner.cli import main; main()"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, check=False
    )


def test_an_ingest_killed_before_commit_leaves_the_database_as_it_was(reg: Register):
    reg.verify()
    reg.ingest("LEGAL_STATS")
    reg.store.close()
    killed = _cli(reg, "ingest", str(reg.world.batches["TAX"]), killer=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    conn = sqlite3.connect(reg.state / "register.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT source FROM batches").fetchall() == [("LEGAL_STATS",)]
    assert conn.execute("SELECT count(*) FROM batch_parts").fetchone() == (1,)
    conn.close()
    again = _cli(reg, "ingest", str(reg.world.batches["TAX"]), "--json")
    assert again.returncode == 0, again.stderr
    conn = sqlite3.connect(reg.state / "register.sqlite")
    assert sorted(r[0] for r in conn.execute("SELECT source FROM batches")) == [
        "LEGAL_STATS",
        "TAX",
    ]
    conn.close()
