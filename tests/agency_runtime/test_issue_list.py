"""Tests of agency_runtime/issue_list.py (and the request checks of sample_round.py)."""

from __future__ import annotations

import json
import random
import stat
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agency_runtime.errors import RuntimeInputError, RuntimeRefused
from agency_runtime.issue_list import IssuedLists, allocate, draw_sample, issue_lists, read_mapping
from agency_runtime.sample_round import (
    AUDIT_FILE,
    LIST_KIND,
    list_file_name,
    mapping_path,
    verify_request,
)
from sample_protocol.audit import AuditLog
from sample_protocol.envelope import open_file
from sample_protocol.errors import EnvelopeError, SignatureError, TrustError
from sample_protocol.identifier_columns import identifier_mask
from sample_protocol.records import RandomIdList, is_random_id
from sample_protocol.signing import signature_path

from .round_fixtures import LAB, TAX_BODY, World, build_round_world

SOURCES = ("TAX", "STATS", "COURT")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_round_world(
        tmp_path_factory.mktemp("world"), n_entities=3000, seed=7, sources=SOURCES
    )


def _issue(world: World, request: Path, out: Path, **kwargs: object) -> IssuedLists:
    return issue_lists(
        request,
        trust=world.trust_root,
        key=world.secret(TAX_BODY),
        register=world.extract("TAX"),
        state_dir=world.state(TAX_BODY),
        out_dir=out,
        **kwargs,  # type: ignore[arg-type]
    )


def _open(world: World, path: Path, party: str) -> RandomIdList:
    opened = open_file(
        path, None, recipient=world.secret(party), senders=world.trust_root.trusted_keys(),
        expected_kind=LIST_KIND,
    )  # fmt: skip
    assert opened.sender == TAX_BODY
    return RandomIdList.from_json(opened.payload)


def _audit(world: World) -> list[tuple[str, str, str, dict[str, str]]]:
    log = AuditLog(world.state(TAX_BODY) / AUDIT_FILE, actor=TAX_BODY)
    log.verify()
    return [(e.action, e.subject, e.outcome, e.details) for e in log.entries()]


# -- happy path -------------------------------------------------------------------------


def test_issue_lists_happy_path(world: World, tmp_path: Path) -> None:
    request = world.write_request(sample_size=300)
    issued = _issue(world, request, tmp_path / "out")
    req_id = issued.request_id
    assert issued.entities == 300 and issued.register_rows == 3000
    assert set(issued.recipients) == {TAX_BODY, "stats-body", "court-body"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        list_file_name(name) for name in issued.recipients
    )
    # the mapping stays in the state dir, 0600, and matches every list
    path = mapping_path(world.state(TAX_BODY), req_id)
    assert path == issued.mapping and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    mapping = read_mapping(world.state(TAX_BODY), req_id)
    assert mapping.column_names == ["bin", "rid"]
    assert mapping.schema.metadata[b"list_id"].decode() == issued.list_id
    pairs = dict(
        zip(mapping.column("bin").to_pylist(), mapping.column("rid").to_pylist(), strict=True)
    )
    register = set(pq.read_table(world.extract("TAX")).column("bin").to_pylist())
    assert len(pairs) == 300 and set(pairs) <= register
    for name in issued.recipients:
        record = _open(world, tmp_path / "out" / list_file_name(name), name)
        assert record.recipient == name and record.request_id == req_id
        assert record.list_id == issued.list_id and record.mapping() == pairs
    # random ids: well formed, distinct, never an identifier
    rids = list(pairs.values())
    assert len(set(rids)) == 300 and all(is_random_id(r) for r in rids)
    assert not identifier_mask(pa.array(rids)).any()
    assert not set(rids) & register
    entries = _audit(world)
    assert entries[-1][:3] == ("random_id_list_issued", req_id, "ok")
    assert entries[-1][3]["entities"] == "300" and entries[-1][3]["list_id"] == issued.list_id


def test_random_ids_are_fresh_for_every_request(world: World, tmp_path: Path) -> None:
    first = _issue(world, world.write_request(sample_size=2900), tmp_path / "a")
    second = _issue(world, world.write_request(sample_size=2900), tmp_path / "b")
    m1 = read_mapping(world.state(TAX_BODY), first.request_id).to_pylist()
    m2 = read_mapping(world.state(TAX_BODY), second.request_id).to_pylist()
    by_bin = {row["bin"]: row["rid"] for row in m1}
    common = [row for row in m2 if row["bin"] in by_bin]
    assert len(common) > 2000  # large samples overlap a lot ...
    assert not any(by_bin[row["bin"]] == row["rid"] for row in common)  # ... never the same rid
    assert not {r["rid"] for r in m1} & {r["rid"] for r in m2}
    assert first.list_id != second.list_id


def test_stratified_draw_is_proportional(world: World, tmp_path: Path) -> None:
    request = world.write_request(sample_size=600)
    issued = _issue(world, request, tmp_path / "out", stratify="tax_regime")
    register = pq.read_table(world.extract("TAX"), columns=["tax_regime"]).column(0).to_pylist()
    counts = {v: register.count(v) for v in set(register)}
    assert sum(issued.strata.values()) == 600
    for regime, drawn in issued.strata.items():
        assert abs(drawn - 600 * counts[regime] / 3000) < 1  # largest-remainder allocation
    mapping = read_mapping(world.state(TAX_BODY), issued.request_id)
    assert "stratum" in mapping.column_names


def test_issued_once_unless_forced(world: World, tmp_path: Path) -> None:
    request = world.write_request(sample_size=50)
    first = _issue(world, request, tmp_path / "a")
    with pytest.raises(RuntimeRefused) as err:
        _issue(world, request, tmp_path / "b")
    assert err.value.code == "already_issued" and first.request_id in str(err.value)
    assert not (tmp_path / "b").exists()
    again = _issue(world, request, tmp_path / "b", force=True)
    assert again.replaced and again.list_id != first.list_id
    mapping = read_mapping(world.state(TAX_BODY), first.request_id)
    assert mapping.schema.metadata[b"list_id"].decode() == again.list_id
    outcomes = [e[2] for e in _audit(world) if e[1] == first.request_id]
    assert outcomes == ["ok", "refused", "ok"]


# -- refusals -----------------------------------------------------------------------------


def _assert_nothing_written(world: World, out: Path, request_id: str | None = None) -> None:
    assert not out.exists() or not any(out.iterdir())
    if request_id:
        assert not mapping_path(world.state(TAX_BODY), request_id).exists()


def test_request_signed_by_a_non_lab_key_is_refused(world: World, tmp_path: Path) -> None:
    request = world.write_request(sample_size=10, signer="stats-body")
    with pytest.raises(TrustError) as err:
        _issue(world, request, tmp_path / "out")
    assert err.value.code == "trust_wrong_role" and "stats-body" in str(err.value)
    assert err.value.exit_code == 3
    _assert_nothing_written(world, tmp_path / "out")
    assert _audit(world)[-1][2:] and _audit(world)[-1][2] == "refused"
    assert _audit(world)[-1][3]["code"] == "trust_wrong_role"


def test_request_signed_by_an_unknown_key_is_refused(world: World, tmp_path: Path) -> None:
    from sample_protocol.keys import generate_keypair
    from sample_protocol.signing import sign_file

    request = world.write_request(sample_size=10)
    sign_file(request, generate_keypair(LAB))  # same name, key not in the trust root
    with pytest.raises(SignatureError) as err:
        verify_request(request, world.trust_root)
    assert err.value.code == "signature_unknown_key"


def test_tampered_request_is_refused(world: World, tmp_path: Path) -> None:
    request = world.write_request(sample_size=10)
    doc = json.loads(request.read_bytes())
    doc["sample_size"] = 2000
    request.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")))
    with pytest.raises(SignatureError) as err:
        _issue(world, request, tmp_path / "out")
    assert err.value.code == "signature_mismatch"
    _assert_nothing_written(world, tmp_path / "out", doc["request_id"])


def test_unsigned_request_is_refused(world: World, tmp_path: Path) -> None:
    request = world.write_request(sample_size=10)
    signature_path(request).unlink()
    with pytest.raises(SignatureError) as err:
        _issue(world, request, tmp_path / "out")
    assert err.value.code == "signature_missing" and str(request) in str(err.value)


def test_missing_request_is_bad_input(world: World, tmp_path: Path) -> None:
    with pytest.raises(RuntimeInputError) as err:
        _issue(world, tmp_path / "nope.json", tmp_path / "out")
    assert err.value.code == "missing_request" and err.value.exit_code == 2


def test_register_smaller_than_the_sample(world: World, tmp_path: Path) -> None:
    request = world.write_request(sample_size=3001)
    with pytest.raises(RuntimeRefused) as err:
        _issue(world, request, tmp_path / "out")
    assert err.value.code == "register_too_small"
    assert "3,001" in str(err.value) and "3,000" in str(err.value)
    _assert_nothing_written(world, tmp_path / "out")


def test_only_the_tax_body_issues_lists(world: World, tmp_path: Path) -> None:
    request = world.write_request(sample_size=10)
    with pytest.raises(TrustError) as err:
        issue_lists(
            request, trust=world.trust_root, key=world.secret("stats-body"),
            register=world.extract("TAX"), state_dir=world.state("stats-body"),
            out_dir=tmp_path / "out",
        )  # fmt: skip
    assert err.value.code == "trust_wrong_role"
    _assert_nothing_written(world, tmp_path / "out")


def test_bad_register_extract_writes_nothing(world: World, tmp_path: Path) -> None:
    table = pq.read_table(world.extract("TAX"))
    bins = table.column("bin").to_pylist()
    bins[99] = bins[99][:11] + str((int(bins[99][11]) + 1) % 10)
    bad = table.set_column(0, "bin", pa.array(bins))
    pq.write_table(bad, tmp_path / "TAX.parquet")
    request = world.write_request(sample_size=10)
    with pytest.raises(RuntimeInputError) as err:
        issue_lists(
            request, trust=world.trust_root, key=world.secret(TAX_BODY),
            register=tmp_path / "TAX.parquet", state_dir=world.state(TAX_BODY),
            out_dir=tmp_path / "out",
        )  # fmt: skip
    assert err.value.code == "invalid_identifier" and "row 100" in str(err.value)
    _assert_nothing_written(world, tmp_path / "out")
    assert _audit(world)[-1][2] == "error"


def test_bad_stratify_field(world: World, tmp_path: Path) -> None:
    request = world.write_request(sample_size=10)
    for name in ("no_such_field", "taxes_paid_kzt", "taxpayer_name"):
        with pytest.raises(RuntimeInputError) as err:
            _issue(world, request, tmp_path / "out", stratify=name)
        assert err.value.code == "bad_stratify" and name in str(err.value)
    _assert_nothing_written(world, tmp_path / "out")


def test_a_list_cannot_be_opened_by_another_body(world: World, tmp_path: Path) -> None:
    issued = _issue(world, world.write_request(sample_size=10), tmp_path / "out")
    with pytest.raises(EnvelopeError) as err:
        _open(world, tmp_path / "out" / list_file_name("stats-body"), "court-body")
    assert err.value.code == "envelope_wrong_recipient"
    assert issued.entities == 10


# -- drawing ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(min_value=0, max_value=500), min_size=1, max_size=12),
    share=st.floats(min_value=0, max_value=1),
)
def test_allocate_properties(counts: list[int], share: float) -> None:
    total = sum(counts)
    size = int(total * share)
    quotas = allocate(counts, size, random.Random(1))
    assert sum(quotas) == size
    assert all(0 <= q <= c for q, c in zip(quotas, counts, strict=True))
    if total:
        assert all(abs(q - size * c / total) < 1 for q, c in zip(quotas, counts, strict=True))


def test_draw_sample_is_distinct_and_refuses_oversized() -> None:
    picked = draw_sample(100, 100)
    assert sorted(picked.tolist()) == list(range(100))
    strata = ["a"] * 80 + ["b"] * 20
    picked = draw_sample(100, 10, strata=strata)
    assert len(set(picked.tolist())) == 10 and sum(strata[i] == "b" for i in picked) == 2
    with pytest.raises(RuntimeRefused) as err:
        draw_sample(5, 6)
    assert err.value.code == "register_too_small"
    with pytest.raises(RuntimeInputError):
        allocate([1, 2], 4)
