"""Tests of agency_runtime/score.py (and ``agency-runtime score``'s exit codes and output).

The lab's real release (``release_fixtures``), the tax body's raw population, real ONNX
runs; the expected probabilities are recomputed here with a bare onnxruntime session.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from agency_runtime.cli import app
from agency_runtime.errors import RuntimeInputError
from agency_runtime.sample_round import AUDIT_FILE
from agency_runtime.score import _Behind, _Prefetch, score_population
from agency_runtime.verify import features_file
from sample_protocol.audit import AuditLog
from sample_protocol.batch import BATCH_SCHEMA, open_batch
from sample_protocol.bundle import RELEASE_STATE_FILE, BundleError
from sample_protocol.bundle_verify import release_counter_name
from sample_protocol.errors import ProtocolError, TrustError
from sample_protocol.features import FeatureSpec
from sample_protocol.scores import ScoreScale, categorise, to_values
from sample_protocol.trust import MonotonicCounter

from .release_fixtures import N_ENTITIES, ReleaseWorld, read_bundle, release_world
from .round_fixtures import LAB, REGISTER, TAX_BODY

AS_OF = dt.date(2025, 1, 1)
runner = CliRunner()


@pytest.fixture(scope="module")
def rw(tmp_path_factory: pytest.TempPathFactory) -> ReleaseWorld:
    return release_world(tmp_path_factory)


@pytest.fixture(scope="module")
def scored(rw: ReleaseWorld, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    base = tmp_path_factory.mktemp("scored")
    seen: list[tuple[int, int | None]] = []
    result = score_population(
        rw.bundle("TAX"),
        rw.world.extract("TAX"),
        source="TAX",
        key=rw.world.secret(TAX_BODY),
        out=base / "batch",
        state_dir=base / "state",
        trust=rw.world.trust_root,
        as_of=AS_OF,
        batch_size=256,
        progress=lambda done, total: seen.append((done, total)),
    )
    return base, [result, seen]


def _score(rw: ReleaseWorld, tmp_path: Path, population: Path | None = None, **kw: object):
    kw.setdefault("key", rw.world.secret(TAX_BODY))
    kw.setdefault("trust", rw.world.trust_root)
    return score_population(
        kw.pop("bundle", rw.bundle("TAX")),
        population or rw.world.extract("TAX"),
        source=kw.pop("source", "TAX"),
        out=kw.pop("out", tmp_path / "batch"),
        state_dir=kw.pop("state_dir", tmp_path / "state"),
        as_of=AS_OF,
        batch_size=kw.pop("batch_size", 500),
        **kw,
    )


def entries(state: Path) -> list[dict]:
    return [e.to_dict() for e in AuditLog(state / AUDIT_FILE, actor="t").entries()]


def sorted_rows(table: pa.Table) -> pa.Table:
    return table.sort_by([("bin", "ascending"), ("index", "ascending")])


# --------------------------------------------------------------------------- scoring


def test_every_entity_gets_every_index_once(rw: ReleaseWorld, scored) -> None:
    base, (result, seen) = scored
    opened = open_batch(base / "batch", trust=rw.world.trust_root)
    table = opened.table
    manifest, _ = read_bundle(rw.bundle("TAX"))
    indexes = [m.index for m in manifest.models]
    assert opened.signer == TAX_BODY and opened.manifest.source == "TAX"
    assert table.schema.equals(BATCH_SCHEMA)
    assert result.entities == N_ENTITIES and table.num_rows == N_ENTITIES * len(indexes)
    assert sorted(result.indexes) == sorted(indexes)
    raw_bins = set(pq.read_table(rw.world.extract("TAX"), columns=["bin"])["bin"].to_pylist())
    for index in indexes:
        part = table.filter(pc.equal(table["index"], index))
        assert set(part["bin"].to_pylist()) == raw_bins
    assert set(table["release_id"].to_pylist()) == {rw.release_id}
    assert set(table["as_of"].to_pylist()) == {AS_OF}
    assert sum(result.categories[indexes[0]].values()) == N_ENTITIES
    assert seen[-1] == (N_ENTITIES, N_ENTITIES)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) == 6


def test_values_and_categories_come_from_the_signed_release(rw: ReleaseWorld, scored) -> None:
    """Recompute everything with a bare onnxruntime session and the release's own files."""
    base, _ = scored
    table = open_batch(base / "batch", trust=rw.world.trust_root).table
    manifest, content = read_bundle(rw.bundle("TAX"))
    raw = pq.read_table(rw.world.extract("TAX"))
    # the lab trained on office codes cut to 2 characters (k-anonymity): do the same by hand
    cut = pc.utf8_slice_codeunits(raw["tax_office_code"], 0, 2)
    raw = raw.set_column(raw.column_names.index("tax_office_code"), "tax_office_code", cut)
    for entry in manifest.models:
        spec = FeatureSpec.from_json(content[features_file(entry)])
        session = ort.InferenceSession(content[entry.file], providers=["CPUExecutionProvider"])
        (proba,) = session.run(["probabilities"], {"input": spec.transform(raw)})
        expected = np.round(proba[:, 1].astype(np.float64), 4)
        part = table.filter(pc.equal(table["index"], entry.index))
        order = pc.index_in(raw["bin"], value_set=part["bin"])
        part = part.take(order)
        got = part["probability"].to_numpy()
        np.testing.assert_allclose(got, expected, atol=1.5e-4)  # float32 vs float32, rounded
        scale = ScoreScale.from_json(manifest.training[f"scale:{entry.index}"])
        assert part["value"].to_pylist() == to_values(got, scale).tolist()
        cutoffs = manifest.cutoffs_for(entry.index)
        assert part["category"].to_pylist() == categorise(got, cutoffs).tolist()
        assert len(set(part["category"].to_pylist())) >= 2


def test_csv_input_gives_the_same_rows(rw: ReleaseWorld, scored, tmp_path: Path) -> None:
    base, _ = scored
    csv = tmp_path / "TAX.csv"
    pacsv.write_csv(pq.read_table(rw.world.extract("TAX")), csv)
    result = _score(rw, tmp_path, csv)
    ours = open_batch(result.out, trust=rw.world.trust_root).table
    theirs = open_batch(base / "batch", trust=rw.world.trust_root).table
    assert sorted_rows(ours).equals(sorted_rows(theirs))


def test_sealed_to_the_register(rw: ReleaseWorld, tmp_path: Path) -> None:
    result = _score(rw, tmp_path, seal_to=rw.world.public(REGISTER))
    assert result.manifest.sealed
    opened = open_batch(result.out, trust=rw.world.trust_root, recipient=rw.world.secret(REGISTER))
    assert opened.table.num_rows == result.rows


def test_a_pinned_lab_key_works_without_a_trust_root(rw: ReleaseWorld, tmp_path: Path) -> None:
    result = _score(rw, tmp_path, trust=None, lab_public=rw.world.public(LAB))
    assert open_batch(result.out, trust=rw.world.trust_root).manifest.row_count == result.rows


# --------------------------------------------------------------------------- refusals


def _nothing_left(out: Path) -> None:
    assert not out.exists()
    if out.parent.exists():  # no temporary directory left beside it either
        assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


def test_refusals_leave_nothing(rw: ReleaseWorld, tmp_path: Path) -> None:
    cases = [
        ({"seal_to": rw.world.public(LAB)}, TrustError, "trust_wrong_role"),
        ({"key": rw.world.secret(rw.body("LEGAL_STATS"))}, TrustError, "trust_wrong_source"),
        ({"bundle": rw.bundle("LEGAL_STATS")}, BundleError, "bundle_wrong_audience"),
    ]
    for i, (kw, kind, code) in enumerate(cases):
        out = tmp_path / f"out{i}" / "batch"
        with pytest.raises(kind) as err:
            _score(rw, tmp_path, out=out, state_dir=tmp_path / f"state{i}", **kw)
        assert err.value.code == code and err.value.exit_code == 3
        _nothing_left(out)
        assert entries(tmp_path / f"state{i}")[-1]["outcome"] == "refused"


def test_rollback_refused(rw: ReleaseWorld, tmp_path: Path) -> None:
    state = tmp_path / "state"
    MonotonicCounter(state / RELEASE_STATE_FILE).check_and_advance(
        release_counter_name("TAX"), 7, what="test"
    )
    with pytest.raises(BundleError) as err:
        _score(rw, tmp_path, state_dir=state)
    assert err.value.code == "bundle_rollback"
    _nothing_left(tmp_path / "batch")


def test_existing_output_is_bad_input(rw: ReleaseWorld, tmp_path: Path) -> None:
    (tmp_path / "batch").mkdir()
    with pytest.raises(RuntimeInputError) as err:
        _score(rw, tmp_path)
    assert err.value.code == "output_exists"
    assert list((tmp_path / "batch").iterdir()) == []


def _edited(rw: ReleaseWorld, path: Path, column: str, row: int, value: object) -> Path:
    table = pq.read_table(rw.world.extract("TAX"))
    values = table[column].to_pylist()
    values[row] = value
    i = table.column_names.index(column)
    table = table.set_column(
        i,
        pa.field(column, table.schema.field(column).type),
        pa.array(values, table.schema.field(column).type),
    )
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize(
    ("edit", "code", "where"),
    [
        (("staff_count", 5, -1), "out_of_range", "row 6"),
        (("bin", 7, "12345"), "invalid_identifier", "row 8"),
        (("bin", N_ENTITIES - 1, "first"), "duplicate_identifier", f"row {N_ENTITIES}"),
        (("drop", "tax_regime"), "missing_column", "'tax_regime'"),
        (("type", "audits_3y"), "wrong_type", "'audits_3y'"),
        (("garbage",), "unreadable_extract", "not a readable Parquet"),
        (("empty",), "empty_input", "no rows"),
    ],
)
def test_bad_input_is_named_and_leaves_nothing(
    rw: ReleaseWorld, tmp_path: Path, edit: tuple, code: str, where: str
) -> None:
    path = tmp_path / "pop.parquet"
    table = pq.read_table(rw.world.extract("TAX"))
    if edit[0] == "drop":
        pq.write_table(table.drop_columns([edit[1]]), path)
    elif edit[0] == "type":
        i = table.column_names.index(edit[1])
        pq.write_table(table.set_column(i, edit[1], pc.cast(table[edit[1]], pa.string())), path)
    elif edit[0] == "garbage":
        path.write_bytes(b"PAR1" + os.urandom(64))
    elif edit[0] == "empty":
        pq.write_table(table.slice(0, 0), path)
    else:
        column, row, value = edit
        if value == "first":  # the last row repeats the first entity: found at the very end
            value = table["bin"][0].as_py()
        _edited(rw, path, column, row, value)
    out = tmp_path / "out" / "batch"
    with pytest.raises(RuntimeInputError) as err:
        _score(rw, tmp_path, path, out=out, batch_size=256)
    assert err.value.code == code and err.value.exit_code == 2
    assert where in str(err.value) and str(path) in str(err.value)
    _nothing_left(out)
    last = entries(tmp_path / "state")[-1]
    assert last["action"] == "batch_scored" and last["outcome"] == "error"
    assert last["details"]["code"] == code


# --------------------------------------------------------------------------- CLI


def _cli(rw: ReleaseWorld, tmp_path: Path, *extra: str, key: str = TAX_BODY):
    args = [
        "score", str(rw.bundle("TAX")), str(rw.world.extract("TAX")),
        "--source", "TAX", "--key", str(rw.world.key(key)), "--out", str(tmp_path / "batch"),
        "--state", str(tmp_path / "state"), *rw.trust_args(), *extra,
    ]  # fmt: skip
    return runner.invoke(app, args)


def test_cli_summary_json_and_exit_codes(rw: ReleaseWorld, tmp_path: Path) -> None:
    result = _cli(
        rw,
        tmp_path / "a",
        "--json",
        "--as-of",
        "2025-01-01",
        "--seal-to",
        str(rw.world.pub(REGISTER)),
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["entities"] == N_ENTITIES and summary["sealed"] is True
    assert summary["as_of"] == "2025-01-01" and summary["body"] == TAX_BODY
    assert "verified" in result.stderr  # progress goes to standard error

    result = _cli(rw, tmp_path / "b", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"scored {N_ENTITIES:,} entities of TAX")
    assert result.stderr == ""

    refused = _cli(rw, tmp_path / "c", key=rw.body("LEGAL_STATS"))
    assert refused.exit_code == 3 and "[trust_wrong_source]" in refused.stderr
    bad = _cli(rw, tmp_path / "d", "--as-of", "01/01/2025")
    assert bad.exit_code == 2 and "[bad_option]" in bad.stderr
    assert not (tmp_path / "c" / "batch").exists() and not (tmp_path / "d" / "batch").exists()


def test_every_error_is_a_protocol_error() -> None:
    assert issubclass(RuntimeInputError, ProtocolError)


def test_prefetch_passes_errors_on_and_stops_with_its_consumer() -> None:
    produced: list[int] = []

    def items(fail_at: int | None = None):
        for i in range(1000):
            if i == fail_at:
                raise ValueError("bad row")
            produced.append(i)
            yield i

    ahead = _Prefetch(items(), depth=2)
    with contextlib.closing(ahead):
        for i in ahead:
            if i == 3:
                break
    assert not ahead._thread.is_alive()
    assert len(produced) < 10  # it stopped, a few items ahead at most
    with pytest.raises(ValueError, match="bad row"), contextlib.closing(_Prefetch(items(5))) as p:
        list(p)  # items 0-4, then the producer's error, raised here


def test_behind_handles_in_order_and_passes_the_first_error_on() -> None:
    handled: list[int] = []
    behind: _Behind[int] = _Behind(handled.append, depth=2)
    for i in range(50):
        behind.put(i)
    behind.finish()
    assert handled == list(range(50))
    assert not behind._thread.is_alive()

    def handle(i: int) -> None:
        if i == 3:
            raise ValueError("cannot write row 3")
        handled.append(i)

    handled.clear()
    failing: _Behind[int] = _Behind(handle, depth=1)
    with pytest.raises(ValueError, match="row 3"):
        for i in range(100):
            failing.put(i)  # raises once the thread has met the error
        failing.finish()
    with pytest.raises(ValueError, match="row 3"):
        failing.finish()  # still the same error; the thread has stopped
    assert handled == [0, 1, 2]  # nothing after the error was handled


@pytest.mark.parametrize("workers", [1, 3])
def test_batches_in_flight_change_nothing_but_speed(
    rw: ReleaseWorld, scored, tmp_path: Path, workers: int
) -> None:
    base, _ = scored
    result = _score(rw, tmp_path, model_workers=workers, batch_size=256)
    ours = open_batch(result.out, trust=rw.world.trust_root).table
    theirs = open_batch(base / "batch", trust=rw.world.trust_root).table
    # Same rows in the same order, whatever ran at once. onnxruntime's sums may differ in
    # the last bit with another thread count, which can move a probability by one
    # rounding step (1e-4); nothing else changes.
    same = ["bin", "source", "index", "release_id", "as_of"]
    assert ours.select(same).equals(theirs.select(same))
    p_ours, p_theirs = (t["probability"].to_numpy() for t in (ours, theirs))
    assert np.abs(p_ours - p_theirs).max() <= 1.0001e-4
    equal = p_ours == p_theirs
    assert equal.mean() > 0.99
    for col in ("value", "category"):
        assert ours[col].filter(pa.array(equal)).equals(theirs[col].filter(pa.array(equal)))
    with pytest.raises(ValueError, match="model_workers"):
        _score(rw, tmp_path / "zero", model_workers=0)
    assert not (tmp_path / "zero" / "batch").exists()


def test_a_gated_model_reopened_with_fewer_threads_gives_the_same_probabilities(
    rw: ReleaseWorld, tmp_path: Path
) -> None:
    from agency_runtime.verify import verify_release

    release = verify_release(
        rw.bundle("TAX"), state_dir=tmp_path / "state", actor=TAX_BODY,
        trust=rw.world.trust_root, source="TAX",
        body_key_id=rw.world.secret(TAX_BODY).key_id,
    )  # fmt: skip
    gated = release.models[0].gated
    one = gated.with_threads(1)
    assert one.session is not gated.session and one.sha256 == gated.sha256
    X = np.random.default_rng(0).normal(size=(300, gated.spec.n_features)).astype(np.float32)
    assert np.allclose(one.run(X), gated.run(X), rtol=0, atol=1e-6)  # last-bit sums only
    with pytest.raises(ValueError, match="threads"):
        gated.with_threads(0)
