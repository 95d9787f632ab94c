"""Tests of agency_runtime/monitor.py and _cli_monitor.py: ``monitor`` end to end.

One real round per module: a TAX-only economy of 1,200 entities, trained and released by
the lab's own code (``train_round``, ``release_round``: real ONNX, real signatures; only
the model card's plots are stubbed out, for time). If
the release does not carry drift references yet, :func:`with_references` re-signs the TAX
bundle with them (fitted with ``nce_model_lab.reference`` on the lab's training table),
as the lab's release does once it writes them itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from agency_runtime.cli import app
from agency_runtime.errors import RuntimeInputError, RuntimeRefused
from agency_runtime.monitor import MONITOR_ACTION, MonitorReport, monitor_population
from agency_runtime.sample_round import AUDIT_FILE
from nce_model_lab.reference import reference_bytes
from sample_protocol.audit import AuditLog
from sample_protocol.bundle import build_manifest_files, write_bundle
from sample_protocol.bundle_verify import verify_bundle
from sample_protocol.catalogue import get_source
from sample_protocol.features import FeatureSpec
from sample_protocol.keys import SecretKey
from sample_protocol.monitoring import WATCH, DriftFlag, reference_file
from sample_protocol.records import MANIFEST_NAME, ReleaseManifest

from .lab_shortcut import release_from_economy
from .round_fixtures import LAB, TAX_BODY, World, build_round_world

runner = CliRunner()
N_ENTITIES = 1200


@dataclasses.dataclass
class Round:
    world: World
    bundle: Path  # the TAX bundle, with references
    bare: Path  # the TAX bundle without references
    population: Path  # the TAX extract (the body's own table)


def _manifest(bundle: Path) -> ReleaseManifest:
    return ReleaseManifest.from_json((bundle / MANIFEST_NAME).read_bytes())


def _rewrite(bundle: Path, out: Path, key: SecretKey, files: dict[str, bytes]) -> Path:
    manifest = dataclasses.replace(_manifest(bundle), files=build_manifest_files(files))
    return write_bundle(out, manifest, files, key)


def with_references(world: World, bundle: Path, training: pa.Table, out: Path) -> Path:
    """``bundle`` if it lists every model's reference, else a re-signed copy that does."""
    manifest = _manifest(bundle)
    if all(reference_file(m.name) in manifest.files for m in manifest.models):
        return bundle
    files = {name: (bundle / name).read_bytes() for name in manifest.files}
    verified = verify_bundle(bundle, trust=world.trust_root, audience="TAX", state_dir=None)
    for m in manifest.models:
        spec = FeatureSpec.from_json(files[f"models/{m.name}.features.json"])
        X = spec.transform(training)
        files[reference_file(m.name)] = reference_bytes(
            m.name, X, m.input_names, verified.models[m.name].run(X)
        )
    return _rewrite(bundle, out, world.secret(LAB), files)


def without_references(world: World, bundle: Path, out: Path) -> Path:
    manifest = _manifest(bundle)
    refs = {reference_file(m.name) for m in manifest.models}
    files = {n: (bundle / n).read_bytes() for n in manifest.files if n not in refs}
    return _rewrite(bundle, out, world.secret(LAB), files)


@pytest.fixture(scope="module")
def rnd(tmp_path_factory: pytest.TempPathFactory) -> Round:
    root = tmp_path_factory.mktemp("monitor")
    world = build_round_world(root / "world", n_entities=N_ENTITIES, seed=5, sources=("TAX",))
    bundles, training = release_from_economy(
        world, root, sources=("TAX",), sample_size=N_ENTITIES,
        force="a 1,200-entity test economy: quality gates are not the subject here",
    )  # fmt: skip
    (tax,) = [b for b in bundles if b.name == "TAX"]
    bundle = with_references(world, tax, training, root / "with-references" / "TAX")
    bare = without_references(world, bundle, root / "bare" / "TAX")
    return Round(world, bundle, bare, world.extract("TAX"))


def _monitor(rnd: Round, bundle: Path, population: Path, state: Path, *extra: str) -> Result:
    args = [
        "monitor", str(bundle), str(population),
        "--trust", str(rnd.world.trust), "--root-pub", str(rnd.world.root_pub),
        "--source", "TAX", "--state", str(state), *extra,
    ]  # fmt: skip
    return runner.invoke(app, args)


def _entries(state: Path) -> list[tuple[str, str, dict[str, str]]]:
    """The monitor's audit entries (``verify`` logs its own ``release_verified`` too)."""
    log = AuditLog(state / AUDIT_FILE, actor=TAX_BODY)
    log.verify()
    assert {e.actor for e in log.entries()} == {TAX_BODY}
    return [(e.action, e.outcome, e.details) for e in log.entries() if e.action == MONITOR_ACTION]


def _shifted(rnd: Round, dest: Path) -> tuple[Path, str]:
    """The population with one unbounded amount the model reads moved far (x10 + 1e6)."""
    table = pq.read_table(rnd.population)
    tax = get_source("TAX")
    names = _manifest(rnd.bundle).models[0].input_names
    field = next(
        f.name
        for f in tax.model_fields()
        if f"TAX__{f.name}" in names and f.dtype == "float64" and f.max_value is None
    )
    i = table.schema.get_field_index(field)
    moved = pc.add(pc.multiply(table[field], 10.0), 1e6)
    pq.write_table(table.set_column(i, field, moved), dest)
    return dest, f"TAX__{field}"


# -- happy paths ---------------------------------------------------------------------


def test_command_is_registered_with_help() -> None:
    result = runner.invoke(app, ["monitor", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--trust", "--source", "--state", "--out", "--json"):
        assert option in result.output
    assert "PSI" in result.output


def test_own_population_is_stable_and_logged(rnd: Round, tmp_path: Path) -> None:
    state, out = tmp_path / "state", tmp_path / "drift.json"
    key = str(rnd.world.key(TAX_BODY))
    result = _monitor(rnd, rnd.bundle, rnd.population, state, "--out", str(out), "--key", key)
    assert result.exit_code == 0, result.output
    report = MonitorReport.from_json(out.read_bytes())
    manifest = _manifest(rnd.bundle)
    assert report.release_id == manifest.release_id and report.rows == N_ENTITIES
    entries = {m.name: m for m in manifest.models}
    assert sorted(m.model for m in report.models) == sorted(entries)
    for drift in report.models:
        assert [f.name for f in drift.features] == list(entries[drift.model].input_names)
        assert drift.flag is DriftFlag.STABLE, drift
        assert drift.score.psi < WATCH
    assert report.flag is DriftFlag.STABLE
    # the readable table: one block per model, its probability first
    assert "overall STABLE" in result.stdout and "probability" in result.stdout
    assert manifest.models[0].name in result.stdout
    # aggregates only: no identifier, no row of the input in the report
    bins = pq.read_table(rnd.population, columns=["bin"])["bin"].to_pylist()
    text = out.read_text()
    assert not any(b in text for b in bins[:50])
    ((action, outcome, details),) = _entries(state)
    assert (action, outcome) == (MONITOR_ACTION, "ok")
    assert details["rows"] == str(N_ENTITIES) and details["flag"] == "stable"
    assert details["release_id"] == manifest.release_id


def test_shifted_population_flags_act(rnd: Round, tmp_path: Path) -> None:
    shifted, column = _shifted(rnd, tmp_path / "shifted.parquet")
    result = _monitor(rnd, rnd.bundle, shifted, tmp_path / "state", "--json", "-q")
    assert result.exit_code == 0, result.output
    report = MonitorReport.from_dict(json.loads(result.stdout))
    assert report.flag is DriftFlag.ACT
    (drift,) = [m for m in report.models if m.model == _manifest(rnd.bundle).models[0].name]
    (moved,) = [f for f in drift.features if f.name == column]
    assert moved.flag is DriftFlag.ACT and moved.psi > 0.25
    assert _entries(tmp_path / "state")[0][2]["flag"] == "act"


def test_csv_in_small_batches_gives_the_same_report(rnd: Round, tmp_path: Path) -> None:
    state = tmp_path / "state"
    now = dt.datetime.now(dt.UTC)
    trust = rnd.world.trust_root
    whole = monitor_population(
        rnd.bundle, rnd.population, trust=trust, source="TAX", state_dir=state, now=now
    )
    csv = tmp_path / "tax.csv"
    pacsv.write_csv(pq.read_table(rnd.population), csv)
    small = monitor_population(
        rnd.bundle, csv, trust=trust, source="TAX", state_dir=state, now=now, batch_rows=300
    )
    assert small.rows == whole.rows == N_ENTITIES and small.input_file == "tax.csv"
    for a, b in zip(small.models, whole.models, strict=True):
        assert a.model == b.model and a.rows == b.rows
        assert np.allclose([f.psi for f in a.features], [f.psi for f in b.features], atol=1e-9)
        assert abs(a.score.psi - b.score.psi) < 1e-9
    assert [e[1] for e in _entries(state)] == ["ok", "ok"]


# -- unhappy paths: nothing written, refusal logged ------------------------------------


def _refused(result: Result, exit_code: int, code: str, out: Path, state: Path) -> None:
    assert result.exit_code == exit_code, result.output
    assert f"[{code}]" in result.stderr
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]
    ((action, outcome, details),) = _entries(state)
    assert action == MONITOR_ACTION and details["code"] == code
    assert outcome == ("refused" if exit_code == 3 else "error")


def test_missing_column_is_bad_input(rnd: Round, tmp_path: Path) -> None:
    table = pq.read_table(rnd.population)
    field = _manifest(rnd.bundle).models[0].input_names[0].split("__", 1)[1]
    pq.write_table(table.drop_columns([field]), tmp_path / "partial.parquet")
    out, state = tmp_path / "drift.json", tmp_path / "state"
    result = _monitor(rnd, rnd.bundle, tmp_path / "partial.parquet", state, "--out", str(out))
    _refused(result, 2, "missing_column", out, state)
    assert repr(field) in result.stderr


def test_unreadable_and_empty_input(rnd: Round, tmp_path: Path) -> None:
    bad = tmp_path / "garbage.parquet"
    bad.write_bytes(b"this is not parquet at all")
    out, state = tmp_path / "drift.json", tmp_path / "state"
    _refused(_monitor(rnd, rnd.bundle, bad, state, "--out", str(out)), 2, "unreadable_extract",
             out, state)  # fmt: skip
    empty = tmp_path / "empty.parquet"
    pq.write_table(pq.read_table(rnd.population).slice(0, 0), empty)
    with pytest.raises(RuntimeInputError) as err:
        monitor_population(
            rnd.bundle, empty, trust=rnd.world.trust_root, source="TAX", state_dir=state
        )
    assert err.value.code == "empty_input"


def test_bundle_without_reference_is_refused(rnd: Round, tmp_path: Path) -> None:
    out, state = tmp_path / "drift.json", tmp_path / "state"
    result = _monitor(rnd, rnd.bare, rnd.population, state, "--out", str(out))
    _refused(result, 3, "bundle_no_reference", out, state)
    assert "reference.json" in result.stderr


def test_tampered_bundle_is_refused(rnd: Round, tmp_path: Path) -> None:
    bundle = tmp_path / "TAX"
    shutil.copytree(rnd.bundle, bundle)
    ref = bundle / reference_file(_manifest(bundle).models[0].name)
    data = json.loads(ref.read_bytes())
    data["score"]["shares"][0], data["score"]["shares"][-1] = (
        data["score"]["shares"][-1],
        data["score"]["shares"][0],
    )
    ref.write_text(json.dumps(data))
    out, state = tmp_path / "drift.json", tmp_path / "state"
    result = _monitor(rnd, bundle, rnd.population, state, "--out", str(out))
    _refused(result, 3, "bundle_file_tampered", out, state)


def test_wrong_source_is_refused(rnd: Round, tmp_path: Path) -> None:
    with pytest.raises(RuntimeRefused) as err:
        monitor_population(
            rnd.bundle, rnd.population, trust=rnd.world.trust_root, source="STATS",
            state_dir=tmp_path / "state",
        )  # fmt: skip
    assert err.value.code == "source_not_owned"
