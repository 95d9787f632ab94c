"""``registry_combiner.combine`` and ``scoring``: the four indexes of every entity."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from nce_model_lab.training.combiner import Combiner
from nce_model_lab.training.selection import Selection
from registry_combiner.combine import load_models
from registry_combiner.ingest import verify_release
from registry_combiner.scoring import OVERRIDE_RULES
from registry_combiner.store import FLAG_OVERRIDDEN, FLAG_PARTIAL, OVERRIDE_LISTS
from sample_protocol.batch import open_batch
from sample_protocol.bundle import BundleError
from sample_protocol.catalogue import index_ids
from sample_protocol.scores import categorise
from tests.registry_combiner.conftest import Register, new_register

INDEXES = index_ids()


def _results(reg: Register) -> pa.Table:
    run = reg.store.latest_run()
    return pa.concat_tables(list(reg.store.run_results(run.run_id)))


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    ranks = np.empty(len(s))
    ranks[np.argsort(s, kind="stable")] = np.arange(1, len(s) + 1)
    n1 = y.sum()
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * (len(y) - n1)))


def test_every_entity_gets_every_index(combined: Register):
    run = combined.store.latest_run()
    rows = _results(combined)
    assert run.indexes == INDEXES and run.entities == 4000
    assert rows.num_rows == 4 * 4000
    assert rows["entity"].to_pylist() == list(np.repeat(np.arange(1, 4001), 4))
    value = rows["value"].to_numpy()
    assert value.min() >= 1 and value.max() <= 99
    assert not (rows["flags"].to_numpy() & FLAG_PARTIAL).any()  # every body delivered
    counts = run.meta["counts"]
    assert all(sum(counts[i][c] for c in ("low", "medium", "high")) == 4000 for i in INDEXES)
    assert run.meta["preliminary_missing"] == [] and run.meta["feeds_missing"] == []


def test_categories_follow_the_signed_cutoffs_unless_overridden(combined: Register):
    bundle, _ = verify_release(
        combined.world.register_bundle,
        store=combined.store,
        trust=combined.trust,
        state_dir=combined.state,
    )
    rows = _results(combined)
    free = (rows["flags"].to_numpy() & FLAG_OVERRIDDEN) == 0
    for k, index in enumerate(INDEXES):
        mine = (rows["index"].to_numpy() == k) & free
        p = rows["probability"].to_numpy()[mine]
        expected = categorise(p, bundle.manifest.cutoffs_for(index))
        found = np.array(["low", "medium", "high"])[rows["category"].to_numpy()[mine]]
        assert (found == expected).all()


def test_the_indexes_rank_the_true_outcomes(combined: Register):
    rows = _results(combined)
    bins = combined.store.entity_bins()
    outcomes = pq.read_table(combined.world.world.outcomes)
    at = pc.index_in(bins["bin"], outcomes["bin"]).to_numpy()
    for k, index in enumerate(INDEXES):
        mine = rows.filter(pc.equal(rows["index"], k))
        y = np.asarray(outcomes[f"outcome_{index}"].to_numpy(zero_copy_only=False))[at]
        assert _auc(y.astype(int), mine["probability"].to_numpy()) > 0.7, index


def test_probabilities_equal_the_labs_matrix_on_a_joined_table(combined: Register):
    """The register's per-source alignment gives the lab's construction, row for row."""
    bundle, _ = verify_release(
        combined.world.register_bundle,
        store=combined.store,
        trust=combined.trust,
        state_dir=combined.state,
    )
    models = load_models(bundle, combined.store)
    bins = combined.store.entity_bins()
    joined = bins
    w = combined.world
    for source, path in w.feeds.items():
        t = pq.read_table(path)
        joined = joined.join(
            t.rename_columns([c if c == "bin" else f"{source}__{c}" for c in t.column_names]),
            "bin",
            join_type="left outer",
        )
    joined = joined.sort_by("id")
    prelim: dict[tuple[str, str], np.ndarray] = {}
    for source, path in w.batches.items():
        table = open_batch(path, trust=combined.trust, recipient=combined.key).table
        for index in INDEXES:
            part = table.filter(pc.equal(table["index"], index))
            at = pc.index_in(joined["bin"], part["bin"])
            if part.num_rows:
                p = part["probability"].take(at).to_numpy(zero_copy_only=False)
                prelim[(source, index)] = np.asarray(p, dtype=np.float64)
    rows = _results(combined)
    for k, (index, model) in enumerate(models.items()):
        layout = model.layout
        lab = Combiner(
            index=index,
            preliminary_sources=layout.preliminary_sources,
            direct_sources=layout.direct_sources,
            direct_spec=layout.direct_spec,
            model=None,
            selection=Selection(family="hgb", hgb_auc=0, scorecard_auc=0, n_validation=0),
        )
        X = lab.matrix(joined, {s: prelim.get((s, index)) for s in layout.preliminary_sources})
        expected = model.model.run(X)
        found = rows.filter(pc.equal(rows["index"], k))["probability"].to_numpy()
        np.testing.assert_allclose(found, expected, rtol=0, atol=1e-12)


def test_state_lists_override_with_their_reason_first(combined: Register):
    rows = _results(combined)
    lists = pq.read_table(combined.world.feeds["TAX_LISTS"])
    codes = {c.code: i for i, c in combined.store.reason_codes().items()}
    for bit, name in enumerate(OVERRIDE_LISTS):
        on = lists.filter(lists[name])["bin"].to_pylist()
        assert on, name
        ids = [combined.store.entity(b).id for b in on]
        mine = rows.filter(pc.is_in(rows["entity"], pa.array(ids)))
        for k, index in enumerate(INDEXES):
            part = mine.filter(pc.equal(mine["index"], k))
            forced = (part["overrides"].to_numpy() & (1 << bit)) != 0
            if index in OVERRIDE_RULES[name]:
                assert forced.all() and (part["category"].to_numpy() == 2).all()
                assert (part["flags"].to_numpy() & FLAG_OVERRIDDEN).all()
                first = part["reason1"].to_numpy()
                other = [codes[f"TAX_LISTS.{n}"] for n in OVERRIDE_LISTS[:bit]]
                assert np.isin(first, [codes[f"TAX_LISTS.{name}"], *other]).all()
            else:
                assert not forced.any()


def test_reasons_name_sources_that_delivered_and_moved_the_risk_up(combined: Register):
    rows = _results(combined)
    run = combined.store.latest_run()
    codes = combined.store.reason_codes()
    bit = {s: i for i, s in enumerate(run.sources)}
    explained = 0
    for row in rows.slice(0, 2000).to_pylist():
        reasons = [row[f"reason{i}"] for i in range(1, 5)]
        nonzero = [r for r in reasons if r]
        assert reasons[: len(nonzero)] == nonzero  # packed to the front
        assert len(set(nonzero)) == len(nonzero)
        for r in nonzero:
            code = codes[r]
            if code.kind != "override":
                assert row["present"] & (1 << bit[code.source]), code.code
                explained += 1
    assert explained > 500


def test_a_missing_body_makes_indexes_partial_but_never_fails(reg: Register):
    reg.verify()
    reg.ingest("TAX")  # LEGAL_STATS and CIVIL_STATUS never delivered; no feed at all
    orphan = reg.store.ensure_entities(["990140000385"])  # an entity nobody sent anything for
    result = reg.combine(reasons="elevated")
    run = result.run
    assert run.meta["preliminary_missing"] == ["CIVIL_STATUS", "LEGAL_STATS"]
    assert "UTILITIES" in run.meta["feeds_missing"]
    rows = _results(reg)
    assert rows.num_rows == 4 * reg.store.max_entity_id()
    flags = rows["flags"].to_numpy()
    assert (flags & FLAG_PARTIAL).all()  # every entity: bodies and feeds missing
    mine = rows.filter(pc.equal(rows["entity"], int(orphan[0])))
    assert mine.num_rows == 4 and (mine["value"].to_numpy() >= 1).all()
    bit = {s: i for i, s in enumerate(run.sources)}
    assert (mine["missing"].to_numpy() & (1 << bit["TAX"])).all()
    assert not mine["reason1"].to_numpy().any()  # nothing delivered, nothing to blame
    c = rows.filter(pc.equal(rows["index"], INDEXES.index("conscientiousness")))
    assert (c["missing"].to_numpy() & (1 << bit["LEGAL_STATS"])).all()
    low = rows.filter(pc.equal(rows["category"], 0))
    assert not low["reason1"].to_numpy().any()  # elevated: only medium and high explained


def test_history_is_kept_and_reasons_can_be_skipped(reg: Register):
    reg.verify()
    for source in reg.world.batches:
        reg.ingest(source)
    first = reg.combine(reasons="none").run
    second = reg.combine(reasons="none").run
    assert (first.run_id, second.run_id) == (1, 2)
    found = reg.store.results(7, runs=5)
    assert [r.run_id for r, _ in found] == [2, 1]
    assert found[0][1]["probability"].equals(found[1][1]["probability"])
    assert not _results(reg)["reason1"].to_numpy().any()


def test_a_tampered_bundle_is_refused_and_nothing_written(reg: Register, tmp_path: Path):
    reg.verify()
    reg.ingest("LEGAL_STATS")
    bundle = tmp_path / "REGISTER"
    shutil.copytree(reg.world.register_bundle, bundle)
    spec = next((bundle / "models").glob("*.features.json"))
    spec.write_text(spec.read_text().replace('"numeric"', '"bool"', 1))
    reg.world = dataclasses.replace(reg.world, bundles={"REGISTER": bundle})
    with pytest.raises(BundleError) as err:
        reg.combine()
    assert err.value.code == "bundle_file_tampered"
    assert reg.store.runs() == []


def test_an_unknown_reason_mode_is_refused(rworld, tmp_path: Path):
    reg = new_register(rworld, tmp_path / "s")
    try:
        with pytest.raises(ValueError, match="reasons"):
            reg.combine(reasons="some")
    finally:
        reg.store.close()
