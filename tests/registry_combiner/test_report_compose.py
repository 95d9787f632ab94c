"""``registry_combiner._report_compose``: a report's body composed directly, byte for byte
the body built by way of the entity's view and the report's document."""

from __future__ import annotations

import math

import pytest

from registry_combiner import _report_compose
from registry_combiner._report_compose import CHECK_FIELDS, Fragments, compose_body
from registry_combiner.report import _build_body, _document_body, issue_report
from registry_combiner.store import EntityProfile
from sample_protocol.errors import SerdeError
from tests.agency_runtime.round_fixtures import REGISTER
from tests.registry_combiner.conftest import Register
from tests.registry_combiner.serve_fixtures import unknown_identifier


def _same(store, entity, key, history: int, fragments: Fragments | None) -> None:
    run_id, pieces = compose_body(
        store, entity, register=key.name, key_id=key.key_id, history=history,
        fragments=fragments,
    )  # fmt: skip
    reference = _document_body(store, entity, key=key, history=history)
    assert reference.pieces is not None and reference.order == CHECK_FIELDS
    assert pieces == reference.pieces, entity.bin
    assert run_id == reference.run_id


def test_every_entity_of_a_register_composes_to_the_document_bytes(combined: Register):
    """Overridden, explained and plain indexes; shared fragments or none."""
    store, key = combined.store, combined.world.world.secret(REGISTER)
    fragments = Fragments()
    kinds = {"overridden": 0, "reasons": 0, "plain": 0}
    for i, entity_id in enumerate(store.entity_bins()["id"].to_pylist()):
        entity = store.entity(int(entity_id))
        _same(store, entity, key, 5, fragments if i % 3 else None)
        for _, rows in store.result_rows(entity.id):
            kinds["overridden"] += sum(r["flags"] & 2 for r in rows)
            kinds["reasons"] += sum(bool(r["reason1"]) for r in rows)
            kinds["plain"] += sum(not r["flags"] and not r["reason1"] for r in rows)
    assert all(kinds.values()), kinds  # the register has every kind of row


def test_partial_indexes_history_odd_text_and_an_entity_without_indexes(reg: Register):
    """A body missing (partial everywhere), two runs (history), a renamed entity with
    quotes, escapes, emoji, a line separator and NUL, and an entity never combined."""
    store, key = reg.store, reg.key
    reg.verify()
    for source in list(reg.world.batches)[1:]:  # one body did not deliver
        reg.ingest(source)
    for source in reg.world.feeds:
        reg.feed(source)
    reg.combine()
    bins = store.entity_bins()["bin"].to_pylist()
    store.update_profiles(
        [EntityProfile(bin=bins[0], name='o"b\\r\u00e9n \U0001f600\u2028\x00', region=None)],
        feed_id=store.generation()[1],
    )
    reg.combine()
    fragments = Fragments()
    partial = 0
    for bin_ in bins[:30]:
        entity = store.entity(bin_)
        for history in (1, 2, 5):
            _same(store, entity, key, history, fragments)
        found = store.result_rows(entity.id, runs=5)
        assert len(found) == 2
        partial += sum(r["flags"] & 1 for r in found[0][1])
    assert partial
    fresh = unknown_identifier(reg)
    [new_id] = store.ensure_entities([fresh])  # known, never combined
    _same(store, store.entity(int(new_id)), key, 5, fragments)
    report = issue_report(store, fresh, user="u", key=key, html_too=False)
    assert report.report.run_id is None and report.report.notes


def test_a_probability_without_json_form_takes_the_document_path(
    combined: Register, monkeypatch: pytest.MonkeyPatch
):
    store, key = combined.store, combined.world.world.secret(REGISTER)
    entity = store.entity(int(store.entity_bins()["id"][0].as_py()))
    real = type(store).result_rows

    def nan_rows(self, entity_id, *, runs=1):
        found = real(self, entity_id, runs=runs)
        return [(run, [{**r, "probability": math.nan} for r in rows]) for run, rows in found]

    monkeypatch.setattr(type(store), "result_rows", nan_rows)
    with pytest.raises(_report_compose.NotComposable):
        compose_body(store, entity, register=key.name, key_id=key.key_id, history=5)
    with pytest.raises(SerdeError, match="finite"):  # the document path says why
        _build_body(store, entity, key=key, history=5)


def test_fragments_stay_bounded(combined: Register, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(_report_compose, "_MAX_FRAGMENTS", 5)
    fragments = Fragments()
    for i in range(20):
        assert fragments.text(f"t{i}") == f'"t{i}"'.encode()
        assert len(fragments._parts) <= 5
