"""``nce_model_lab.sample_ingest``: each sample accepted whole or refused whole, with a code.

The samples are built here the way a body builds them (depersonalised with the agency's
library, sealed to the lab with ``sample_protocol.envelope``); hostile ones are made by
changing one thing before sealing. The helpers (``new_round``, ``make_sample``) are also
used by ``test_status.py`` and ``test_cli_sample.py``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from agency_runtime.depersonalise import depersonalise, source_depersonalisation_plan
from nce_model_lab.errors import LabError, SampleRefused
from nce_model_lab.labdir import LabDir
from nce_model_lab.sample_checks import FLOAT_IDENTIFIER_SHARE, check_sample
from nce_model_lab.sample_ingest import ingest_samples
from nce_model_lab.sample_request import create_sample_request
from nce_model_lab.training_table import build_training_table
from sample_protocol.audit import verify_log
from sample_protocol.catalogue import get_source, index_ids
from sample_protocol.envelope import seal
from sample_protocol.identifier_columns import identifier_mask
from sample_protocol.keys import PublicKey, SecretKey, generate_keypair
from sample_protocol.records import (
    SampleManifest,
    SampleRequest,
    SourceRequest,
    is_random_id,
    new_random_ids,
    new_record_id,
    sha256_bytes,
)
from tests.agency_runtime.round_fixtures import (
    DEFAULT_SENT_ON,
    LAB,
    World,
    build_round_world,
    outcomes_table,
)

SOURCES = ("TAX", "STATS", "COURT")
N_ENTITIES = 3000
SIZE = 300


# -- helpers shared with the other lab tests ---------------------------------------------


@dataclasses.dataclass
class Round:
    """A world, a lab directory with one sent request, and the tax body's draw."""

    world: World
    lab: Path
    outbox: Path
    request: SampleRequest
    mapping: dict[str, str]  # bin -> rid

    @property
    def lab_key(self) -> SecretKey:
        return self.world.secret(LAB)


def new_world(root: Path, sources: tuple[str, ...] = SOURCES) -> World:
    return build_round_world(root, n_entities=N_ENTITIES, seed=7, sources=sources)


def new_round(
    tmp_path: Path,
    *,
    world: World | None = None,
    requested: tuple[str, ...] | None = None,
    size: int = SIZE,
    sent_on: dt.date = DEFAULT_SENT_ON,
) -> Round:
    """A lab directory under ``tmp_path`` that sent one request (the world is shared)."""
    world = world or new_world(tmp_path / "world")
    lab = tmp_path / "lab"
    request, _ = create_sample_request(
        lab_key=world.secret(LAB),
        trust=world.trust_root,
        lab_dir=lab,
        out=tmp_path / "outbox",
        sources=requested or world.sources,
        sample_size=size,
        sent_on=sent_on,
        as_of=dt.date(2024, 1, 1),
    )
    bins = world.economy.sources["TAX"]["bin"].to_pylist()
    drawn = np.random.default_rng(11).choice(len(bins), size=size, replace=False)
    rids = new_random_ids(size)
    mapping = {bins[i]: rid for i, rid in zip(drawn, rids, strict=True)}
    return Round(world, lab, tmp_path / "inbox", request, mapping)


def sample_table(rnd: Round, source: str, *, outcomes: bool = True) -> tuple[pa.Table, object]:
    """The depersonalised sample of ``source`` for the round's draw, and its report."""
    table = rnd.world.economy.sources[source]
    keep = pc.is_in(table["bin"], value_set=pa.array(list(rnd.mapping)))
    table = table.filter(keep)
    rid = pa.array([rnd.mapping[b] for b in table["bin"].to_pylist()], pa.string())
    fields = list(rnd.request.source(source).fields)
    sample = table.select(fields).add_column(0, "rid", rid)
    if source == "TAX" and outcomes:
        oc = outcomes_table(rnd.world.economy)
        oc = oc.filter(pc.is_in(oc["bin"], value_set=table["bin"]))
        order = pc.index_in(table["bin"], value_set=oc["bin"])
        for index in index_ids():
            sample = sample.append_column(f"outcome_{index}", oc[f"outcome_{index}"].take(order))
    direct, quasi, amounts = source_depersonalisation_plan(get_source(source), fields)
    out, report = depersonalise(
        sample,
        key="rid",
        direct_identifiers=direct,
        quasi_identifiers=quasi,
        amounts=amounts,
        k=rnd.request.k_anonymity,
        rng_seed=3,
    )
    return out, report


def make_sample(
    rnd: Round,
    source: str,
    *,
    transform: Callable[[pa.Table], pa.Table] | None = None,
    body: str | None = None,
    sender: SecretKey | None = None,
    recipient: PublicKey | None = None,
    manifest_changes: dict[str, object] | None = None,
    outcomes: bool = True,
    name: str | None = None,
) -> Path:
    """Seal a sample of ``source`` to the lab, as its owner would; options make it hostile."""
    table, report = sample_table(rnd, source, outcomes=outcomes)
    if transform is not None:
        table = transform(table)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    payload = buf.getvalue()
    owner = body or rnd.world.body_of[source]
    manifest = SampleManifest(
        sample_id=new_record_id("smp"),
        request_id=rnd.request.request_id,
        list_id=new_record_id("list"),
        source=source,
        body=owner,
        created_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
        row_count=table.num_rows,
        columns=tuple(table.column_names),
        file=f"{rnd.request.request_id}.{source}.parquet",
        sha256=sha256_bytes(payload),
        report=report,
    )
    if manifest_changes:
        manifest = dataclasses.replace(manifest, **manifest_changes)
    blob = seal(
        payload,
        sender=sender or rnd.world.secret(owner),
        recipient=recipient or rnd.world.public(LAB),
        kind="sample",
        meta={"manifest": manifest.to_json()},
    )
    rnd.outbox.mkdir(parents=True, exist_ok=True)
    path = rnd.outbox / (name or f"{rnd.request.request_id}.{source}.sample")
    i = 1
    while path.exists():
        path = path.with_name(f"{path.stem}-{i}.sample")
        i += 1
    path.write_bytes(blob)
    return path


def assert_no_identifiers(table: pa.Table, bin_of: dict[str, str]) -> None:
    """No text or integer value is a valid IIN/BIN; a float column is not one made of
    them (amounts read as a BIN now and then); no row holds its own entity's BIN."""
    rids = table["rid"].to_pylist()
    own = np.array([float(bin_of[r]) for r in rids])
    for name in table.column_names:
        column = table[name]
        mask = identifier_mask(column)
        if pa.types.is_floating(column.type):
            values = column.to_numpy(zero_copy_only=False).astype(np.float64)
            assert mask.sum() <= FLOAT_IDENTIFIER_SHARE * np.isfinite(values).sum(), name
            assert not np.any(values == own), name
        else:
            assert not mask.any(), name
        if pa.types.is_string(column.type) and name != "rid":
            assert not set(column.to_pylist()) & set(bin_of.values()), name


def ingest(rnd: Round, *files: Path, trust=None):
    return ingest_samples(
        files, lab_key=rnd.lab_key, trust=trust or rnd.world.trust_root, lab_dir=rnd.lab
    )


def refused_code(rnd: Round, path: Path, trust=None) -> str:
    result = ingest(rnd, path, trust=trust)
    [outcome] = result.outcomes
    assert not outcome.accepted, outcome
    return outcome.code


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return new_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def rnd(tmp_path, world):
    return new_round(tmp_path, world=world)


def _lab_files(lab: Path) -> list[str]:
    files = (lab / "rounds").rglob("*")
    return sorted(p.relative_to(lab).as_posix() for p in files if p.is_file())


# -- happy path -------------------------------------------------------------------------


def test_all_samples_accepted_and_joined(rnd):
    files = [make_sample(rnd, s) for s in SOURCES]
    result = ingest(rnd, *files)
    assert [o.code for o in result.outcomes] == ["accepted"] * 3
    assert {o.source: o.body for o in result.outcomes} == rnd.world.body_of
    [cov] = result.coverage
    assert cov.rids == SIZE and cov.missing == ()
    rows = {s.source: s.rows for s in cov.sources}
    assert rows["TAX"] == SIZE and rows["STATS"] == SIZE
    court = rnd.world.economy.sources["COURT"]["bin"].to_pylist()
    assert rows["COURT"] == len(set(court) & set(rnd.mapping))
    shares = {s.source: s.share for s in cov.sources}
    assert shares["COURT"] == pytest.approx(rows["COURT"] / SIZE, abs=1e-6)
    assert cov.complete_rows == rows["COURT"]
    assert cov.outcomes == tuple(f"outcome_{i}" for i in index_ids())

    lab = LabDir(rnd.lab)
    training = pq.read_table(lab.training_path(rnd.request.request_id))
    assert training.num_rows == SIZE
    assert training["rid"].to_pylist() == sorted(rnd.mapping.values())
    assert all(is_random_id(r) for r in training["rid"].to_pylist())
    assert "TAX__staff_count" in training.column_names
    assert "STATS__kato" in training.column_names
    assert "outcome_payment_discipline" in training.column_names
    assert not any(c.endswith("taxpayer_name") or c == "bin" for c in training.column_names)
    assert_no_identifiers(training, {r: b for b, r in rnd.mapping.items()})
    # The outcomes are the truth of the drawn entities.
    truth = outcomes_table(rnd.world.economy)
    column = "outcome_financial_stability"
    by_bin = dict(zip(truth["bin"].to_pylist(), truth[column].to_pylist(), strict=True))
    got = dict(zip(training["rid"].to_pylist(), training[column].to_pylist(), strict=True))
    assert got == {rid: by_bin[b] for b, rid in rnd.mapping.items()}

    registry = lab.read_registry()
    assert set(registry.samples_of(rnd.request.request_id)) == set(SOURCES)
    assert (lab.sample_path(rnd.request.request_id, "TAX")).stat().st_mode & 0o077 == 0
    coverage = json.loads(lab.coverage_path(rnd.request.request_id).read_text())
    assert coverage["rids"] == SIZE
    actions = [json.loads(line)["action"] for line in lab.audit_path.read_text().splitlines()]
    assert actions.count("sample_accepted") == 3 and "training_table_joined" in actions
    assert verify_log(lab.audit_path).entries == len(actions)


def test_samples_in_separate_batches_rejoin(rnd):
    first = ingest(rnd, make_sample(rnd, "STATS"))
    assert first.coverage[0].missing == ("TAX", "COURT")
    assert first.coverage[0].outcomes == ()
    second = ingest(rnd, make_sample(rnd, "TAX"))
    cov = second.coverage[0]
    assert cov.missing == ("COURT",) and cov.rids == SIZE and cov.complete_rows == SIZE


# -- refusals ---------------------------------------------------------------------------


def test_unknown_body_is_refused(rnd):
    stranger = generate_keypair("stats-body")  # same name, key not in the trust root
    path = make_sample(rnd, "STATS", sender=stranger)
    assert refused_code(rnd, path) == "envelope_unknown_sender"


def test_body_signing_for_a_source_it_does_not_own_is_refused(rnd):
    path = make_sample(rnd, "TAX", body="stats-body")
    assert refused_code(rnd, path) == "trust_wrong_source"


def test_lab_or_register_key_cannot_sign_a_sample(rnd):
    path = make_sample(rnd, "STATS", sender=rnd.world.secret("register"), body="register")
    assert refused_code(rnd, path) == "trust_wrong_role"


def test_rotated_out_key_is_refused(rnd):
    old = rnd.world.secret("stats-body")
    trust = rnd.world.trust_root.rotate("stats-body", generate_keypair("stats-body").public)
    path = make_sample(rnd, "STATS", sender=old)
    assert refused_code(rnd, path, trust=trust) == "trust_key_rotated"


def test_revoked_body_is_refused(rnd):
    trust = rnd.world.trust_root.revoke("stats-body", "key lost")
    path = make_sample(rnd, "STATS")
    assert refused_code(rnd, path, trust=trust) == "trust_revoked"


def test_manifest_naming_another_body_is_refused(rnd):
    path = make_sample(rnd, "STATS", manifest_changes={"body": "court-body"})
    assert refused_code(rnd, path) == "sample_manifest_mismatch"


def test_sealed_to_another_recipient_is_refused(rnd):
    path = make_sample(rnd, "STATS", recipient=rnd.world.public("register"))
    result = ingest(rnd, path)
    assert result.outcomes[0].code == "envelope_wrong_recipient"
    assert "register" in result.outcomes[0].message or "sealed to key" in result.outcomes[0].message


def test_tampered_envelope_is_refused(rnd):
    path = make_sample(rnd, "STATS")
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    assert refused_code(rnd, path) == "envelope_tampered"


def test_replayed_file_is_refused(rnd):
    path = make_sample(rnd, "STATS")
    assert ingest(rnd, path).outcomes[0].accepted
    result = ingest(rnd, path)
    assert result.outcomes[0].code == "sample_replayed"
    assert result.coverage == ()


def test_same_file_twice_in_one_batch_is_accepted_once(rnd):
    path = make_sample(rnd, "STATS")
    result = ingest(rnd, path, path)
    assert [o.code for o in result.outcomes] == ["accepted", "sample_replayed"]


def test_second_sample_of_a_source_is_refused(rnd):
    assert ingest(rnd, make_sample(rnd, "STATS")).outcomes[0].accepted
    again = make_sample(rnd, "STATS")  # a fresh sample id and envelope: not a replay
    assert refused_code(rnd, again) == "sample_source_already_received"


def test_sample_for_an_unknown_request_is_refused(rnd):
    other = new_record_id("req")
    path = make_sample(rnd, "STATS", manifest_changes={"request_id": other})
    result = ingest(rnd, path)
    outcome = result.outcomes[0]
    assert outcome.code == "sample_unknown_request"
    assert other in outcome.message and outcome.request_id == other


def test_sample_of_a_source_not_requested_is_refused(tmp_path, world):
    rnd = new_round(tmp_path, world=world, requested=("TAX", "STATS"))
    rnd.request = dataclasses.replace(
        rnd.request, sources=(*rnd.request.sources, _court_request())
    )  # build the COURT sample as if it had been asked for
    path = make_sample(rnd, "COURT")
    assert refused_code(rnd, path) == "sample_source_not_requested"


def _court_request() -> SourceRequest:
    return SourceRequest("COURT", tuple(f.name for f in get_source("COURT").model_fields()))


def test_weaker_k_than_requested_is_refused(rnd):
    _, report = sample_table(rnd, "STATS")
    weaker = dataclasses.replace(report, k_target=2)  # the request asked for k=5
    path = make_sample(rnd, "STATS", manifest_changes={"report": weaker})
    result = ingest(rnd, path)
    assert result.outcomes[0].code == "sample_k_too_low"
    assert "k=2" in result.outcomes[0].message and "k=5" in result.outcomes[0].message


def test_extra_column_is_refused(rnd):
    def extra(table):
        return table.append_column("note", pa.array(["x"] * table.num_rows))

    result = ingest(rnd, make_sample(rnd, "STATS", transform=extra))
    assert result.outcomes[0].code == "sample_extra_columns"
    assert "'note'" in result.outcomes[0].message or "note" in result.outcomes[0].message


def test_missing_column_is_refused(rnd):
    result = ingest(rnd, make_sample(rnd, "STATS", transform=lambda t: t.drop_columns(["oked"])))
    assert result.outcomes[0].code == "sample_missing_columns"
    assert "oked" in result.outcomes[0].message


def test_tax_sample_without_outcomes_is_refused(rnd):
    result = ingest(rnd, make_sample(rnd, "TAX", outcomes=False))
    assert result.outcomes[0].code == "sample_missing_columns"
    assert "outcome_" in result.outcomes[0].message


def test_outcome_columns_only_in_the_tax_sample(rnd):
    def add_outcome(table):
        return table.append_column("outcome_payment_discipline", pa.array([False] * table.num_rows))

    result = ingest(rnd, make_sample(rnd, "STATS", transform=add_outcome))
    assert result.outcomes[0].code == "sample_extra_columns"


def test_wrong_type_is_refused(rnd):
    def as_text(table):
        i = table.column_names.index("audits_3y")
        return table.set_column(i, "audits_3y", pc.cast(table["audits_3y"], pa.string()))

    result = ingest(rnd, make_sample(rnd, "TAX", transform=as_text))
    assert result.outcomes[0].code == "sample_wrong_type"
    assert "audits_3y" in result.outcomes[0].message and "int64" in result.outcomes[0].message


def test_value_out_of_range_is_refused(rnd):
    def negative(table):
        i = table.column_names.index("audits_3y")
        values = table["audits_3y"].to_pylist()
        values[5] = -1
        return table.set_column(i, "audits_3y", pa.array(values, pa.int64()))

    result = ingest(rnd, make_sample(rnd, "TAX", transform=negative))
    assert result.outcomes[0].code == "sample_out_of_range"
    assert "row 5" in result.outcomes[0].message


def test_unknown_category_is_refused(rnd):
    def odd(table):
        i = table.column_names.index("tax_regime")
        values = table["tax_regime"].to_pylist()
        values[2] = "offshore"
        return table.set_column(i, "tax_regime", pa.array(values, pa.string()))

    result = ingest(rnd, make_sample(rnd, "TAX", transform=odd))
    assert result.outcomes[0].code == "sample_out_of_range"
    assert "tax_regime" in result.outcomes[0].message


def test_null_in_a_required_field_is_refused(rnd):
    def hole(table):
        i = table.column_names.index("staff_count")
        values = table["staff_count"].to_pylist()
        values[7] = None
        return table.set_column(i, "staff_count", pa.array(values, pa.int64()))

    result = ingest(rnd, make_sample(rnd, "TAX", transform=hole))
    assert result.outcomes[0].code == "sample_null_values"
    assert "row 7" in result.outcomes[0].message


def _valid_bin(rnd: Round) -> str:
    return rnd.world.economy.sources["TAX"]["bin"][0].as_py()


def test_leaked_identifier_in_a_text_column_is_refused(rnd):
    leaked = _valid_bin(rnd)

    def leak(table):
        i = table.column_names.index("kato")
        values = table["kato"].to_pylist()
        values[3] = f"see {leaked}"
        return table.set_column(i, "kato", pa.array(values, pa.string()))

    result = ingest(rnd, make_sample(rnd, "STATS", transform=leak))
    outcome = result.outcomes[0]
    assert outcome.code == "sample_identifier_leak"
    assert "'kato'" in outcome.message and "row 3" in outcome.message
    assert leaked not in outcome.message
    assert leaked not in LabDir(rnd.lab).audit_path.read_text()


def test_column_of_identifiers_stored_as_floats_is_refused(rnd):
    bins = rnd.world.economy.sources["TAX"]["bin"].to_pylist()

    def leak(table):
        i = table.column_names.index("taxes_paid_kzt")
        values = [float(b) for b in bins[: table.num_rows]]
        return table.set_column(i, "taxes_paid_kzt", pa.array(values, pa.float64()))

    result = ingest(rnd, make_sample(rnd, "TAX", transform=leak))
    assert result.outcomes[0].code == "sample_identifier_leak"
    assert "taxes_paid_kzt" in result.outcomes[0].message


def test_one_amount_that_reads_as_a_bin_is_not_a_leak(rnd):
    """Integral amounts read as a valid BIN now and then; the bodies' scan agrees."""

    def one(table):
        i = table.column_names.index("taxes_paid_kzt")
        values = table["taxes_paid_kzt"].to_pylist()
        values[4] = float(_valid_bin(rnd))
        return table.set_column(i, "taxes_paid_kzt", pa.array(values, pa.float64()))

    assert ingest(rnd, make_sample(rnd, "TAX", transform=one)).outcomes[0].accepted


def test_duplicate_random_ids_are_refused(rnd):
    def dup(table):
        rids = table["rid"].to_pylist()
        rids[1] = rids[0]
        return table.set_column(0, "rid", pa.array(rids, pa.string()))

    result = ingest(rnd, make_sample(rnd, "STATS", transform=dup))
    assert result.outcomes[0].code == "sample_duplicate_rid"
    assert "row 1" in result.outcomes[0].message


@pytest.mark.parametrize("bad", ["bin", "short", "null"])
def test_rid_not_a_random_id_is_refused(rnd, bad):
    value = {"bin": _valid_bin(rnd), "short": "rid_abc", "null": None}[bad]

    def swap(table):
        rids = table["rid"].to_pylist()
        rids[2] = value
        return table.set_column(0, "rid", pa.array(rids, pa.string()))

    result = ingest(rnd, make_sample(rnd, "STATS", transform=swap))
    assert result.outcomes[0].code == "sample_bad_rid"
    assert "row 2" in result.outcomes[0].message


def test_manifest_not_matching_the_payload_is_refused(rnd):
    path = make_sample(rnd, "STATS", manifest_changes={"sha256": "0" * 64})
    assert refused_code(rnd, path) == "sample_manifest_mismatch"


def test_more_rows_than_requested_are_refused(rnd):
    small = dataclasses.replace(rnd.request, sample_size=10)
    table, report = sample_table(rnd, "STATS")
    manifest = SampleManifest(
        sample_id=new_record_id("smp"),
        request_id=small.request_id,
        list_id=new_record_id("list"),
        source="STATS",
        body="stats-body",
        created_at=dt.datetime.now(dt.UTC),
        row_count=table.num_rows,
        columns=tuple(table.column_names),
        file="x.parquet",
        sha256="0" * 64,
        report=report,
    )
    with pytest.raises(SampleRefused) as err:
        check_sample(table, manifest, small)
    assert err.value.code == "sample_too_many_rows" and err.value.exit_code == 3


def test_refused_file_stores_nothing_and_is_audited(rnd):
    before = LabDir(rnd.lab).read_registry()
    result = ingest(rnd, make_sample(rnd, "STATS", transform=lambda t: t.drop_columns(["oked"])))
    assert not result.outcomes[0].accepted
    assert not (rnd.lab / "rounds").exists()
    assert LabDir(rnd.lab).read_registry() == before
    last = json.loads(LabDir(rnd.lab).audit_path.read_text().splitlines()[-1])
    assert last["action"] == "sample_refused" and last["outcome"] == "refused"
    assert last["details"]["code"] == "sample_missing_columns"
    assert last["details"]["source"] == "STATS"


def test_batch_reports_each_file_and_keeps_the_good_ones(rnd):
    good = make_sample(rnd, "TAX")
    bad = make_sample(rnd, "STATS", recipient=rnd.world.public("register"))
    missing = rnd.outbox / "nope.sample"
    result = ingest(rnd, good, bad, missing)
    assert [o.code for o in result.outcomes] == [
        "accepted",
        "envelope_wrong_recipient",
        "sample_unreadable",
    ]
    assert len(result.refused) == 2 and len(result.accepted) == 1
    assert result.coverage[0].sources[0].source == "TAX"
    assert _lab_files(rnd.lab) == sorted(
        f"rounds/{rnd.request.request_id}/{name}"
        for name in (
            "coverage.json",
            "samples/TAX.manifest.json",
            "samples/TAX.parquet",
            "training.parquet",
        )
    )


def test_changed_stored_sample_is_not_joined(rnd):
    ingest(rnd, make_sample(rnd, "STATS"))
    stored = LabDir(rnd.lab).sample_path(rnd.request.request_id, "STATS")
    stored.write_bytes(stored.read_bytes() + b"x")
    with pytest.raises(LabError) as err:
        build_training_table(rnd.lab, rnd.request.request_id)
    assert err.value.code == "lab_sample_changed" and str(stored) in str(err.value)


def test_an_all_null_column_is_accepted_and_joined(rnd):
    """A field no listed entity has arrives as Arrow type null; the join must still work."""

    def blank(table):
        from sample_protocol.catalogue import get_source

        spec = get_source("STATS")
        name = next(
            n for n in table.column_names if n in spec.field_names() and spec.field(n).nullable
        )
        i = table.column_names.index(name)
        return table.set_column(i, name, pa.nulls(table.num_rows))

    files = [make_sample(rnd, "STATS", transform=blank), make_sample(rnd, "TAX")]
    result = ingest(rnd, *files)
    assert [o.code for o in result.outcomes] == ["accepted", "accepted"]
    training = pq.read_table(LabDir(rnd.lab).training_path(rnd.request.request_id))
    assert training.num_rows == SIZE


def test_an_unexpected_parser_failure_refuses_that_file_only(rnd, monkeypatch):
    import nce_model_lab.sample_ingest as ingest_module

    real_stage = ingest_module._stage
    bad = make_sample(rnd, "STATS")
    good = make_sample(rnd, "TAX")

    def stage(path, **kwargs):
        if path == bad:
            raise RecursionError("crafted nesting")
        return real_stage(path, **kwargs)

    monkeypatch.setattr(ingest_module, "_stage", stage)
    result = ingest(rnd, bad, good)
    assert [o.code for o in result.outcomes] == ["sample_malformed", "accepted"]
    log = (rnd.lab / "audit.log").read_text()
    assert "sample_malformed" in log
