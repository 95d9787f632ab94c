"""Tests of agency_runtime/prepare_sample.py: a body's depersonalised sample for the lab."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from agency_runtime.depersonalise import DepersonalisationRefused
from agency_runtime.errors import RuntimeInputError, RuntimeRefused
from agency_runtime.issue_list import issue_lists, read_mapping
from agency_runtime.prepare_sample import PreparedSample, prepare_sample
from agency_runtime.sample_round import (
    AUDIT_FILE,
    LIST_KIND,
    OUTCOME_PREFIX,
    RID_COLUMN,
    SAMPLE_KIND,
    list_file_name,
    sample_file_name,
)
from sample_protocol.audit import AuditLog
from sample_protocol.envelope import open_file, seal
from sample_protocol.errors import EnvelopeError, ProtocolError, TrustError
from sample_protocol.identifier_columns import identifier_mask
from sample_protocol.identifiers import is_valid_bin
from sample_protocol.records import RandomIdList, SampleManifest, new_random_ids, sha256_bytes
from sample_protocol.synthetic import INDEX_IDS

from .round_fixtures import LAB, TAX_BODY, World, build_round_world

SOURCES = ("TAX", "STATS", "COURT")


@dataclasses.dataclass
class Round:
    request: Path
    lists: Path
    request_id: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_round_world(
        tmp_path_factory.mktemp("world"), n_entities=3000, seed=7, sources=SOURCES
    )


def _new_round(world: World, out: Path, **kwargs: object) -> Round:
    request = world.write_request(**{"sample_size": 300, **kwargs})  # type: ignore[arg-type]
    issued = issue_lists(
        request, trust=world.trust_root, key=world.secret(TAX_BODY),
        register=world.extract("TAX"), state_dir=world.state(TAX_BODY), out_dir=out,
    )  # fmt: skip
    return Round(request=request, lists=out, request_id=issued.request_id)


@pytest.fixture(scope="module")
def round_(world: World, tmp_path_factory: pytest.TempPathFactory) -> Round:
    return _new_round(world, tmp_path_factory.mktemp("lists"))


def _prepare(
    world: World, rnd: Round, body: str, source: str, out: Path, **kwargs: object
) -> PreparedSample:
    args: dict[str, object] = {
        "list_path": rnd.lists / list_file_name(body),
        "source": source,
        "extract": world.extract(source),
        "trust": world.trust_root,
        "key": world.secret(body),
        "state_dir": world.state(body),
        "out_dir": out,
        "rng_seed": 3,
    }
    args.update(kwargs)
    return prepare_sample(rnd.request, **args)  # type: ignore[arg-type]


def _open_sample(world: World, path: Path) -> tuple[pa.Table, SampleManifest, str]:
    opened = open_file(
        path, None, recipient=world.secret(LAB), senders=world.trust_root.trusted_keys(),
        expected_kind=SAMPLE_KIND,
    )  # fmt: skip
    manifest = SampleManifest.from_json(opened.meta["manifest"])
    table = pq.read_table(pa.BufferReader(opened.payload))
    assert sha256_bytes(opened.payload) == manifest.sha256
    return table, manifest, opened.sender


def _list(world: World, rnd: Round, body: str) -> RandomIdList:
    opened = open_file(
        rnd.lists / list_file_name(body), None, recipient=world.secret(body),
        senders=world.trust_root.trusted_keys(),
    )  # fmt: skip
    return RandomIdList.from_json(opened.payload)


def _last_audit(world: World, body: str) -> tuple[str, str, dict[str, str]]:
    log = AuditLog(world.state(body) / AUDIT_FILE, actor=body)
    log.verify()
    entry = list(log.entries())[-1]
    return entry.action, entry.outcome, entry.details


def _nothing_written(out: Path) -> bool:
    return not out.exists() or not any(out.iterdir())


# -- happy paths --------------------------------------------------------------------------


def test_stats_sample_sealed_to_the_lab(world: World, round_: Round, tmp_path: Path) -> None:
    prepared = _prepare(world, round_, "stats-body", "STATS", tmp_path)
    assert prepared.file == tmp_path / sample_file_name(round_.request_id, "STATS")
    table, manifest, sender = _open_sample(world, prepared.file)
    assert sender == "stats-body" and manifest == prepared.manifest
    assert manifest.body == "stats-body" and manifest.request_id == round_.request_id
    assert manifest.list_id == _list(world, round_, "stats-body").list_id
    assert tuple(table.column_names) == manifest.columns and table.column_names[0] == RID_COLUMN
    assert "bin" not in table.column_names
    assert table.num_rows == manifest.row_count == prepared.rows == 300
    assert prepared.absent == 0 and prepared.listed == 300 and prepared.extract_rows == 3000
    rids = set(table.column(RID_COLUMN).to_pylist())
    assert rids == set(_list(world, round_, "stats-body").random_ids)
    assert manifest.report.passed and manifest.report.k_achieved >= 5
    for column in table.column_names[1:]:
        assert not identifier_mask(table.column(column)).any()
    action, outcome, details = _last_audit(world, "stats-body")
    assert (action, outcome) == ("sample_prepared", "ok")
    assert details["sample_id"] == manifest.sample_id and details["absent"] == "0"


def test_listed_entities_absent_from_the_extract_have_no_row(
    world: World, round_: Round, tmp_path: Path
) -> None:
    prepared = _prepare(world, round_, "court-body", "COURT", tmp_path)
    table, manifest, _ = _open_sample(world, prepared.file)
    listed = _list(world, round_, "court-body")
    court_bins = set(pq.read_table(world.extract("COURT")).column("bin").to_pylist())
    on_list = court_bins & set(listed.identifiers)
    assert 0 < len(on_list) < len(court_bins)  # the extract holds unlisted entities too
    assert prepared.absent == 300 - len(on_list) and prepared.rows == len(on_list)
    expected = {listed.mapping()[b] for b in on_list}
    assert set(table.column(RID_COLUMN).to_pylist()) == expected
    assert manifest.row_count == len(on_list)


def test_tax_sample_carries_the_outcomes(world: World, round_: Round, tmp_path: Path) -> None:
    prepared = _prepare(world, round_, TAX_BODY, "TAX", tmp_path, outcomes=world.outcomes)
    table, manifest, _ = _open_sample(world, prepared.file)
    assert prepared.outcomes
    wanted = [f"{OUTCOME_PREFIX}{i}" for i in INDEX_IDS]
    assert all(c in manifest.columns for c in wanted)
    mapping = read_mapping(world.state(TAX_BODY), round_.request_id)
    bin_of = dict(
        zip(mapping.column("rid").to_pylist(), mapping.column("bin").to_pylist(), strict=True)
    )
    truth = pq.read_table(world.outcomes).to_pylist()
    by_bin = {row["bin"]: row for row in truth}
    for row in table.select([RID_COLUMN, *wanted]).to_pylist():
        expected = by_bin[bin_of[row[RID_COLUMN]]]
        assert all(row[c] == expected[c] for c in wanted)
    assert table.schema.field(wanted[0]).type == pa.bool_()


def test_k_can_be_raised_not_lowered(world: World, round_: Round, tmp_path: Path) -> None:
    prepared = _prepare(world, round_, "stats-body", "STATS", tmp_path / "a", k=8)
    assert prepared.manifest.report.k_target == 8 and prepared.manifest.report.k_achieved >= 8
    with pytest.raises(RuntimeInputError) as err:
        _prepare(world, round_, "stats-body", "STATS", tmp_path / "b", k=3)
    assert err.value.code == "bad_k" and "5" in str(err.value)
    assert _nothing_written(tmp_path / "b")


def test_csv_extract_gives_the_same_rows(world: World, round_: Round, tmp_path: Path) -> None:
    import pyarrow.csv as pacsv

    pacsv.write_csv(pq.read_table(world.extract("STATS")), tmp_path / "STATS.csv")
    prepared = _prepare(world, round_, "stats-body", "STATS", tmp_path / "out",
                        extract=tmp_path / "STATS.csv")  # fmt: skip
    assert prepared.rows == 300 and prepared.extract_rows == 3000


# -- refusals: the list -------------------------------------------------------------------


def test_list_opened_by_the_wrong_body(world: World, round_: Round, tmp_path: Path) -> None:
    with pytest.raises(EnvelopeError) as err:
        _prepare(world, round_, "stats-body", "STATS", tmp_path,
                 list_path=round_.lists / list_file_name("court-body"))  # fmt: skip
    assert err.value.code == "envelope_wrong_recipient" and err.value.exit_code == 3
    assert _nothing_written(tmp_path)
    action, outcome, details = _last_audit(world, "stats-body")
    assert (action, outcome) == ("sample_prepared", "refused")
    assert details["code"] == "envelope_wrong_recipient"


def test_list_not_from_the_tax_body(world: World, round_: Round, tmp_path: Path) -> None:
    genuine = _list(world, round_, "court-body")
    forged = dataclasses.replace(genuine, issued_by="stats-body")
    blob = seal(
        forged.canonical_bytes(), sender=world.secret("stats-body"),
        recipient=world.public("court-body"), kind=LIST_KIND,
    )  # fmt: skip
    (tmp_path / "forged.ridlist").write_bytes(blob)
    with pytest.raises(TrustError) as err:
        _prepare(world, round_, "court-body", "COURT", tmp_path / "out",
                 list_path=tmp_path / "forged.ridlist")  # fmt: skip
    assert err.value.code == "trust_wrong_role" and "stats-body" in str(err.value)
    assert _nothing_written(tmp_path / "out")


def test_tampered_list(world: World, round_: Round, tmp_path: Path) -> None:
    blob = bytearray((round_.lists / list_file_name("court-body")).read_bytes())
    blob[-10] ^= 0x01
    (tmp_path / "t.ridlist").write_bytes(bytes(blob))
    with pytest.raises(EnvelopeError) as err:
        _prepare(world, round_, "court-body", "COURT", tmp_path / "out",
                 list_path=tmp_path / "t.ridlist")  # fmt: skip
    assert err.value.code == "envelope_tampered"
    assert _nothing_written(tmp_path / "out")


def test_list_of_another_request(world: World, round_: Round, tmp_path: Path) -> None:
    other = _new_round(world, tmp_path / "lists")
    with pytest.raises(RuntimeRefused) as err:
        _prepare(world, round_, "stats-body", "STATS", tmp_path / "out",
                 list_path=other.lists / list_file_name("stats-body"))  # fmt: skip
    assert err.value.code == "list_mismatch" and other.request_id in str(err.value)
    assert _nothing_written(tmp_path / "out")


def test_list_with_fresh_ids_not_the_mapping_still_must_be_signed(
    world: World, round_: Round, tmp_path: Path
) -> None:
    """A list sealed by an outsider's key (not in the trust root) is refused."""
    from sample_protocol.keys import generate_keypair

    genuine = _list(world, round_, "stats-body")
    fake = dataclasses.replace(genuine, random_ids=new_random_ids(len(genuine.random_ids)))
    blob = seal(fake.canonical_bytes(), sender=generate_keypair(TAX_BODY),
                recipient=world.public("stats-body"), kind=LIST_KIND)  # fmt: skip
    (tmp_path / "x.ridlist").write_bytes(blob)
    with pytest.raises(EnvelopeError) as err:
        _prepare(world, round_, "stats-body", "STATS", tmp_path / "out",
                 list_path=tmp_path / "x.ridlist")  # fmt: skip
    assert err.value.code == "envelope_unknown_sender"


# -- refusals: the body, the source, the request -------------------------------------------


def test_source_not_owned(world: World, round_: Round, tmp_path: Path) -> None:
    with pytest.raises(TrustError) as err:
        _prepare(world, round_, "stats-body", "COURT", tmp_path,
                 list_path=round_.lists / list_file_name("stats-body"))  # fmt: skip
    assert err.value.code == "trust_wrong_source" and "COURT" in str(err.value)
    assert _nothing_written(tmp_path)


def test_source_not_requested(world: World, tmp_path: Path) -> None:
    base = world.make_request(sample_size=50, fields=["TAX", "STATS"])
    request = dataclasses.replace(base, recipients=(*base.recipients, "court-body"))
    path = world.write_request(request)
    issue_lists(path, trust=world.trust_root, key=world.secret(TAX_BODY),
                register=world.extract("TAX"), state_dir=world.state(TAX_BODY),
                out_dir=tmp_path / "lists")  # fmt: skip
    rnd = Round(request=path, lists=tmp_path / "lists", request_id=request.request_id)
    with pytest.raises(RuntimeRefused) as err:
        _prepare(world, rnd, "court-body", "COURT", tmp_path / "out")
    assert err.value.code == "source_not_requested"
    assert _nothing_written(tmp_path / "out")


def test_body_not_a_recipient(world: World, tmp_path: Path) -> None:
    rnd = _new_round(world, tmp_path / "lists", sample_size=50, fields=["TAX", "STATS"])
    with pytest.raises(RuntimeRefused) as err:
        _prepare(world, rnd, "court-body", "COURT", tmp_path / "out",
                 list_path=rnd.lists / list_file_name("stats-body"))  # fmt: skip
    assert err.value.code == "not_a_recipient"


def test_request_not_from_the_lab(world: World, round_: Round, tmp_path: Path) -> None:
    request = world.write_request(sample_size=300, signer=TAX_BODY)
    rnd = dataclasses.replace(round_, request=request)
    with pytest.raises(TrustError) as err:
        _prepare(world, rnd, "stats-body", "STATS", tmp_path)
    assert err.value.code == "trust_wrong_role"
    assert _nothing_written(tmp_path)


def test_outcomes_only_on_the_tax_sample(world: World, round_: Round, tmp_path: Path) -> None:
    with pytest.raises(RuntimeInputError) as err:
        _prepare(world, round_, "stats-body", "STATS", tmp_path, outcomes=world.outcomes)
    assert err.value.code == "outcomes_not_allowed"
    assert _nothing_written(tmp_path)


def test_outcomes_missing_for_sampled_entities(world: World, round_: Round, tmp_path: Path) -> None:
    listed = set(_list(world, round_, TAX_BODY).identifiers)
    table = pq.read_table(world.outcomes)
    keep = pc.invert(pc.is_in(table.column("bin"), value_set=pa.array(sorted(listed)[:3])))
    pq.write_table(table.filter(keep), tmp_path / "outcomes.parquet")
    with pytest.raises(RuntimeInputError) as err:
        _prepare(world, round_, TAX_BODY, "TAX", tmp_path / "out",
                 outcomes=tmp_path / "outcomes.parquet")  # fmt: skip
    assert err.value.code == "outcome_missing" and "3 entities" in str(err.value)
    assert _nothing_written(tmp_path / "out")


# -- refusals: the extract -------------------------------------------------------------------


def test_extract_missing_a_column(world: World, round_: Round, tmp_path: Path) -> None:
    table = pq.read_table(world.extract("STATS")).drop_columns(["krp_code"])
    pq.write_table(table, tmp_path / "STATS.parquet")
    with pytest.raises(RuntimeInputError) as err:
        _prepare(world, round_, "stats-body", "STATS", tmp_path / "out",
                 extract=tmp_path / "STATS.parquet")  # fmt: skip
    assert err.value.code == "missing_column" and "'krp_code'" in str(err.value)
    assert str(tmp_path / "STATS.parquet") in str(err.value)
    assert _nothing_written(tmp_path / "out")
    _, outcome, details = _last_audit(world, "stats-body")
    assert outcome == "error" and details["code"] == "missing_column"


def test_extract_wrong_type(world: World, round_: Round, tmp_path: Path) -> None:
    table = pq.read_table(world.extract("COURT"))
    i = table.column_names.index("civil_cases_3y")
    text = pa.array([str(v) for v in table.column(i).to_pylist()])
    pq.write_table(table.set_column(i, "civil_cases_3y", text), tmp_path / "COURT.parquet")
    with pytest.raises(RuntimeInputError) as err:
        _prepare(world, round_, "court-body", "COURT", tmp_path / "out",
                 extract=tmp_path / "COURT.parquet")  # fmt: skip
    assert err.value.code == "wrong_type" and "'civil_cases_3y'" in str(err.value)
    assert _nothing_written(tmp_path / "out")


def test_extract_bad_identifier(world: World, round_: Round, tmp_path: Path) -> None:
    table = pq.read_table(world.extract("STATS"))
    bins = table.column("bin").to_pylist()
    bins[1234] = "12345"
    pq.write_table(table.set_column(0, "bin", pa.array(bins)), tmp_path / "STATS.parquet")
    with pytest.raises(RuntimeInputError) as err:
        _prepare(world, round_, "stats-body", "STATS", tmp_path / "out",
                 extract=tmp_path / "STATS.parquet")  # fmt: skip
    assert err.value.code == "invalid_identifier"
    assert "'bin' row 1235" in str(err.value)
    assert _nothing_written(tmp_path / "out")


def test_leaked_identifier_in_a_free_text_field_is_refused(world: World, tmp_path: Path) -> None:
    """A BIN typed into a field that is not a direct identifier: the value scan catches it."""
    rnd = _new_round(world, tmp_path / "lists", sample_size=200,
                     fields={"TAX": ["tax_office_code", "staff_count"]})  # fmt: skip
    table = pq.read_table(world.extract("TAX"))
    leaked = next(b for b in table.column("bin").to_pylist() if is_valid_bin(b))
    i = table.column_names.index("tax_office_code")
    notes = pa.array([f"BIN {leaked}"] * table.num_rows)
    pq.write_table(table.set_column(i, "tax_office_code", notes), tmp_path / "TAX.parquet")
    with pytest.raises(DepersonalisationRefused) as err:
        _prepare(world, rnd, TAX_BODY, "TAX", tmp_path / "out", extract=tmp_path / "TAX.parquet",
                 outcomes=world.outcomes)  # fmt: skip
    assert err.value.code == "leak_iin_bin" and err.value.exit_code == 3
    assert "'tax_office_code'" in str(err.value) and leaked not in str(err.value)
    assert _nothing_written(tmp_path / "out")
    _, outcome, details = _last_audit(world, TAX_BODY)
    assert outcome == "refused" and details["code"] == "leak_iin_bin"
    assert leaked not in json.dumps(details)


def test_tax_sample_without_outcomes_is_bad_input(world: World, tmp_path: Path) -> None:
    """The lab would refuse a TAX sample without targets: say so at the body (exit 2)."""
    rnd = _new_round(world, tmp_path / "lists", sample_size=200)
    with pytest.raises(RuntimeInputError) as err:
        _prepare(world, rnd, TAX_BODY, "TAX", tmp_path / "out")
    assert err.value.code == "outcomes_missing" and err.value.exit_code == 2
    assert _nothing_written(tmp_path / "out")


def test_unknown_source_code_is_bad_input_not_a_refusal(world: World, tmp_path: Path) -> None:
    rnd = _new_round(world, tmp_path / "lists", sample_size=200)
    with pytest.raises(ProtocolError) as err:
        _prepare(world, rnd, TAX_BODY, "STAT", tmp_path / "out")
    assert err.value.exit_code == 2
    assert "STAT" in str(err.value)
