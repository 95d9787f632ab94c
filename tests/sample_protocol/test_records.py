from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sample_protocol.errors import SerdeError, ValidationError
from sample_protocol.records import (
    BATCH_COLUMNS,
    RANDOM_ID_PREFIX,
    REGISTER_AUDIENCE,
    BatchManifest,
    CategoryCutoffs,
    DepersonalisationReport,
    ModelEntry,
    RandomIdList,
    ReleaseManifest,
    SampleManifest,
    SampleRequest,
    SourceRequest,
    is_random_id,
    new_random_id,
    new_random_ids,
    new_record_id,
    read_record,
    safe_join,
    sha256_bytes,
    sha256_file,
    write_record,
)

UTC = dt.UTC
ALMATY = dt.timezone(dt.timedelta(hours=5))
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=ALMATY)
SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_C = "c" * 64
SHA_D = "d" * 64
EXAMPLES = settings(max_examples=50, deadline=None)

# -- strategies: valid values ---------------------------------------------------------

ids = st.from_regex(r"[a-z]{3}-20[0-9]{6}-[a-z2-7]{16}", fullmatch=True)
names = st.text(alphabet=string.ascii_letters + string.digits + "_", min_size=1, max_size=12)
sources = st.sampled_from(["TAX", "PERMITS", "LEGAL_ENTITY", "STATS", "COURT", "UTILITIES"])
indexes = st.sampled_from(
    ["conscientiousness", "financial_stability", "payment_discipline", "business_reputation"]
)
aware = st.datetimes(
    min_value=dt.datetime(2000, 1, 1),
    max_value=dt.datetime(2090, 1, 1),
    timezones=st.sampled_from([UTC, ALMATY, dt.timezone(dt.timedelta(hours=6))]),
)
dates = st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2090, 1, 1))
shas = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)
relpaths = st.from_regex(
    r"[a-z0-9_][a-z0-9_.-]{0,10}(/[a-z0-9_][a-z0-9_.-]{0,10}){0,2}", fullmatch=True
)
bins = st.from_regex(r"[0-9]{12}", fullmatch=True)
random_ids = st.from_regex(r"rid_[a-z2-7]{24}", fullmatch=True).filter(is_random_id)


def unique_tuple(elements, min_size=1, max_size=5):
    return st.lists(elements, min_size=min_size, max_size=max_size, unique=True).map(tuple)


source_requests = st.builds(SourceRequest, source=sources, fields=unique_tuple(names))


@st.composite
def sample_requests(draw):
    sent_on = draw(dates)
    return SampleRequest(
        request_id=draw(ids),
        lab=draw(names),
        created_at=draw(aware),
        sent_on=sent_on,
        due_date=sent_on + dt.timedelta(days=draw(st.integers(1, 30))),
        sample_size=draw(st.integers(1, 10**6)),
        as_of=sent_on - dt.timedelta(days=draw(st.integers(0, 2000))),
        sources=tuple(
            draw(st.lists(source_requests, min_size=1, max_size=4, unique_by=lambda s: s.source))
        ),
        recipients=draw(unique_tuple(names)),
        horizon_months=draw(st.integers(1, 120)),
        k_anonymity=draw(st.integers(2, 50)),
        notes=draw(st.text(max_size=30)),
    )


@st.composite
def random_id_lists(draw):
    idents = draw(unique_tuple(bins, max_size=20))
    rids = draw(unique_tuple(random_ids, min_size=len(idents), max_size=len(idents)))
    return RandomIdList(
        list_id=draw(ids),
        request_id=draw(ids),
        issued_by=draw(names),
        recipient=draw(names),
        issued_at=draw(aware),
        identifiers=idents,
        random_ids=rids,
    )


counts = st.dictionaries(names, st.integers(0, 1000), max_size=4)


@st.composite
def reports(draw, passed=None):
    passed = draw(st.booleans()) if passed is None else passed
    k_target = draw(st.integers(2, 20))
    rows_in = draw(st.integers(1, 10**6))
    rows_out = draw(st.integers(1, rows_in))
    scan = draw(st.dictionaries(names, st.integers(0, 5), max_size=4))
    if passed:
        scan = {k: 0 for k in scan} or {"bin_iin": 0}
    return DepersonalisationReport(
        k_target=k_target,
        k_achieved=draw(st.integers(k_target, 100)) if passed else draw(st.integers(0, 100)),
        rows_in=rows_in,
        rows_out=rows_out,
        removed_columns=draw(unique_tuple(st.sampled_from(["name", "phone", "email"]), 0, 3)),
        generalised=draw(st.dictionaries(names, st.sampled_from(["oked→section"]), max_size=3)),
        suppressed_cells=draw(counts),
        top_bottom_coded=draw(counts),
        dates_coarsened=draw(unique_tuple(names, 0, 3)),
        identifier_scan=scan,
        shuffled=True if passed else draw(st.booleans()),
        passed=passed,
    )


@st.composite
def sample_manifests(draw):
    report = draw(reports(passed=True))
    columns = draw(unique_tuple(st.sampled_from(["random_id", "oked", "kato", "assets"]), 1, 4))
    return SampleManifest(
        sample_id=draw(ids),
        request_id=draw(ids),
        list_id=draw(ids),
        source=draw(sources),
        body=draw(names),
        created_at=draw(aware),
        row_count=report.rows_out,
        columns=columns,
        file=draw(relpaths),
        sha256=draw(shas),
        report=report,
    )


@st.composite
def cutoffs(draw, index=indexes):
    medium = draw(st.floats(0.01, 0.5))
    high = draw(st.floats(medium + 0.01, 0.99))
    return CategoryCutoffs(index=draw(index), medium_from=medium, high_from=high)


@st.composite
def model_entries(draw, source=None, index=indexes):
    n = draw(st.integers(1, 4))
    return ModelEntry(
        name=draw(ids),
        source=draw(source if source is not None else st.none() | sources),
        index=draw(index),
        file=draw(relpaths) + ".onnx",
        sha256=draw(shas),
        input_names=draw(unique_tuple(names, n, n)),
        input_types=tuple(draw(st.sampled_from(["float32", "int64", "string"])) for _ in range(n)),
        output_names=draw(unique_tuple(names, 1, 2)),
        opset={"": draw(st.integers(9, 22)), "ai.onnx.ml": 3},
    )


@st.composite
def release_manifests(draw):
    audience = draw(st.sampled_from(["TAX", REGISTER_AUDIENCE]))
    model_source = st.just("TAX") if audience == "TAX" else st.none()
    chosen = draw(st.lists(indexes, min_size=1, max_size=4, unique=True))
    models = tuple(
        dataclasses.replace(
            draw(model_entries(model_source, st.just(ix))), name=f"model-{i}", file=f"m{i}.onnx"
        )
        for i, ix in enumerate(chosen)
    )
    files = {m.file: m.sha256 for m in models} | {"parity.parquet": draw(shas)}
    card = draw(st.none() | st.just("card.md"))
    if card:
        files[card] = draw(shas)
    created = draw(aware)
    return ReleaseManifest(
        release_id=draw(ids),
        sequence=draw(st.integers(1, 10**6)),
        audience=audience,
        created_at=created,
        expires_at=created + dt.timedelta(days=draw(st.integers(1, 400))),
        lab=draw(names),
        models=models,
        cutoffs=tuple(draw(cutoffs(st.just(ix))) for ix in chosen),
        files=files,
        parity_fixture="parity.parquet",
        model_card=card,
        training=draw(st.dictionaries(names, st.text(max_size=10), max_size=4)),
        quality_overrides=draw(unique_tuple(names, 0, 2)),
    )


batch_manifests = st.builds(
    BatchManifest,
    batch_id=ids,
    body=names,
    source=sources,
    release_id=ids,
    as_of=dates,
    created_at=aware,
    row_count=st.integers(0, 10**7),
    file=relpaths,
    sha256=shas,
    columns=st.permutations(BATCH_COLUMNS).map(tuple),
    sealed=st.booleans(),
)

ALL_RECORDS = st.one_of(
    source_requests,
    sample_requests(),
    random_id_lists(),
    reports(),
    sample_manifests(),
    model_entries(),
    cutoffs(),
    release_manifests(),
    batch_manifests,
)


@EXAMPLES
@given(ALL_RECORDS)
def test_every_record_round_trips(record):
    record.validate()
    cls = type(record)
    text = record.to_json()
    back = cls.from_json(text)
    assert back == record
    assert back.canonical_bytes() == record.canonical_bytes()
    assert cls.from_json(back.canonical_bytes()).canonical_bytes() == text.encode()


@settings(max_examples=20, deadline=None)
@given(st.one_of(sample_requests(), release_manifests(), sample_manifests()))
def test_write_and_read_record_round_trip(tmp_path_factory, record):
    path = tmp_path_factory.mktemp("rec") / "record.json"
    write_record(record, path)
    assert path.read_bytes() == record.canonical_bytes()
    assert read_record(type(record), path) == record


# -- fixed valid examples and their failing variants -----------------------------------


def a_request(**changes):
    base = SampleRequest(
        request_id="req-20260302-abcdefghijklmnop",
        lab="nce-lab",
        created_at=T0,
        sent_on=dt.date(2026, 3, 2),
        due_date=dt.date(2026, 3, 16),
        sample_size=1000,
        as_of=dt.date(2024, 12, 31),
        sources=(
            SourceRequest("TAX", ("tax_debt", "staff_count")),
            SourceRequest("STATS", ("oked",)),
        ),
        recipients=("tax-body", "stats-bureau"),
    )
    return dataclasses.replace(base, **changes)


def a_list(**changes):
    base = RandomIdList(
        list_id="lst-20260303-abcdefghijklmnop",
        request_id="req-20260302-abcdefghijklmnop",
        issued_by="tax-body",
        recipient="stats-bureau",
        issued_at=T0,
        identifiers=("990140000135", "880215300456"),
        random_ids=("rid_" + "a" * 24, "rid_" + "b" * 24),
    )
    return dataclasses.replace(base, **changes)


def a_report(**changes):
    base = DepersonalisationReport(
        k_target=5,
        k_achieved=7,
        rows_in=1000,
        rows_out=990,
        removed_columns=("name", "phone"),
        generalised={"oked": "class to section"},
        suppressed_cells={"kato": 3},
        top_bottom_coded={"assets": 12},
        dates_coarsened=("registered_on",),
        identifier_scan={"bin_iin": 0, "phone": 0},
        shuffled=True,
        passed=True,
    )
    return dataclasses.replace(base, **changes)


def a_sample(**changes):
    base = SampleManifest(
        sample_id="smp-20260310-abcdefghijklmnop",
        request_id="req-20260302-abcdefghijklmnop",
        list_id="lst-20260303-abcdefghijklmnop",
        source="STATS",
        body="stats-bureau",
        created_at=T0,
        row_count=990,
        columns=("random_id", "oked", "kato"),
        file="stats_sample.parquet",
        sha256=SHA_A,
        report=a_report(),
    )
    return dataclasses.replace(base, **changes)


def a_model(**changes):
    base = ModelEntry(
        name="tax-payment-discipline",
        source="TAX",
        index="payment_discipline",
        file="models/tax_payment_discipline.onnx",
        sha256=SHA_A,
        input_names=("input",),
        input_types=("float32",),
        output_names=("probabilities",),
        opset={"": 17, "ai.onnx.ml": 3},
    )
    return dataclasses.replace(base, **changes)


def a_release(**changes):
    base = ReleaseManifest(
        release_id="rel-20260401-abcdefghijklmnop",
        sequence=3,
        audience="TAX",
        created_at=T0,
        expires_at=T0 + dt.timedelta(days=365),
        lab="nce-lab",
        models=(a_model(),),
        cutoffs=(CategoryCutoffs("payment_discipline", 0.2, 0.5),),
        files={
            "models/tax_payment_discipline.onnx": SHA_A,
            "parity.parquet": SHA_B,
            "MODEL_CARD.md": SHA_C,
        },
        parity_fixture="parity.parquet",
        model_card="MODEL_CARD.md",
        training={"seed": "42", "sklearn": "1.9.1"},
    )
    return dataclasses.replace(base, **changes)


def a_batch(**changes):
    base = BatchManifest(
        batch_id="bat-20260501-abcdefghijklmnop",
        body="tax-body",
        source="TAX",
        release_id="rel-20260401-abcdefghijklmnop",
        as_of=dt.date(2026, 4, 30),
        created_at=T0,
        row_count=10,
        file="batch.parquet",
        sha256=SHA_D,
        columns=BATCH_COLUMNS,
    )
    return dataclasses.replace(base, **changes)


FACTORIES = {
    "request": a_request,
    "list": a_list,
    "report": a_report,
    "sample": a_sample,
    "model": a_model,
    "cutoffs": lambda **c: dataclasses.replace(
        CategoryCutoffs("payment_discipline", 0.2, 0.5), **c
    ),
    "source": lambda **c: dataclasses.replace(SourceRequest("TAX", ("tax_debt",)), **c),
    "release": a_release,
    "batch": a_batch,
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_examples_are_valid(name):
    record = FACTORIES[name]()
    record.validate()
    assert type(record).from_json(record.to_json()) == record


INVALID = "invalid_record"
UNSAFE = "unsafe_path"
BAD_RID = "invalid_random_id"
RID = "rid_" + "c" * 24
OTHER_MODEL = dataclasses.replace(a_model(), name="tax-fin", index="financial_stability")

FAILING = [
    # SourceRequest
    ("source", {"source": "tax"}, INVALID, "SourceRequest.source"),
    ("source", {"fields": ()}, INVALID, "SourceRequest.fields"),
    ("source", {"fields": ("a", "a")}, INVALID, "SourceRequest.fields"),
    ("source", {"fields": (" a",)}, INVALID, "SourceRequest.fields[0]"),
    ("source", {"fields": ["a"]}, INVALID, "SourceRequest.fields"),
    # SampleRequest
    ("request", {"request_id": "../etc"}, INVALID, "SampleRequest.request_id"),
    ("request", {"lab": ""}, INVALID, "SampleRequest.lab"),
    ("request", {"created_at": dt.datetime(2026, 3, 2)}, INVALID, "SampleRequest.created_at"),
    ("request", {"sent_on": T0}, INVALID, "SampleRequest.sent_on"),
    ("request", {"due_date": dt.date(2026, 3, 2)}, INVALID, "SampleRequest.due_date"),
    ("request", {"as_of": dt.date(2026, 3, 3)}, INVALID, "SampleRequest.as_of"),
    ("request", {"sample_size": 0}, INVALID, "SampleRequest.sample_size"),
    ("request", {"sample_size": True}, INVALID, "SampleRequest.sample_size"),
    ("request", {"horizon_months": 0}, INVALID, "SampleRequest.horizon_months"),
    ("request", {"k_anonymity": 1}, INVALID, "SampleRequest.k_anonymity"),
    ("request", {"sources": ()}, INVALID, "SampleRequest.sources"),
    (
        "request",
        {"sources": (SourceRequest("TAX", ("a",)), SourceRequest("TAX", ("b",)))},
        INVALID,
        "SampleRequest.sources",
    ),
    (
        "request",
        {"sources": (SourceRequest("TAX", ()),)},
        INVALID,
        "SampleRequest.sources[0].fields",
    ),
    ("request", {"recipients": ()}, INVALID, "SampleRequest.recipients"),
    ("request", {"recipients": ("a", "a")}, INVALID, "SampleRequest.recipients"),
    ("request", {"notes": None}, INVALID, "SampleRequest.notes"),
    # RandomIdList
    ("list", {"list_id": "a/b"}, INVALID, "RandomIdList.list_id"),
    ("list", {"issued_by": "tax\n"}, INVALID, "RandomIdList.issued_by"),
    ("list", {"recipient": ""}, INVALID, "RandomIdList.recipient"),
    ("list", {"issued_at": dt.datetime(2026, 3, 2)}, INVALID, "RandomIdList.issued_at"),
    ("list", {"identifiers": (), "random_ids": ()}, INVALID, "RandomIdList.identifiers"),
    ("list", {"random_ids": (RID,)}, INVALID, "RandomIdList.random_ids"),
    ("list", {"identifiers": ("99014000013", "880215300456")}, INVALID, "identifiers[0]"),
    ("list", {"identifiers": ("990140000135",) * 2}, INVALID, "RandomIdList.identifiers"),
    ("list", {"random_ids": (RID, RID)}, INVALID, "RandomIdList.random_ids"),
    ("list", {"random_ids": (RID, "990140000135")}, BAD_RID, "RandomIdList.random_ids[1]"),
    ("list", {"random_ids": (RID, "rid_" + "A" * 24)}, BAD_RID, "RandomIdList.random_ids[1]"),
    # DepersonalisationReport
    ("report", {"k_target": 1}, INVALID, "DepersonalisationReport.k_target"),
    ("report", {"k_achieved": -1}, INVALID, "DepersonalisationReport.k_achieved"),
    ("report", {"k_achieved": 4}, INVALID, "DepersonalisationReport.k_achieved"),
    ("report", {"rows_in": -1, "rows_out": 0}, INVALID, "DepersonalisationReport.rows_in"),
    ("report", {"rows_out": 1001}, INVALID, "DepersonalisationReport.rows_out"),
    ("report", {"rows_out": 0}, INVALID, "DepersonalisationReport.rows_out"),
    ("report", {"removed_columns": ("a", "a")}, INVALID, "DepersonalisationReport.removed_columns"),
    ("report", {"dates_coarsened": ("",)}, INVALID, "DepersonalisationReport.dates_coarsened[0]"),
    ("report", {"generalised": {"oked": " "}}, INVALID, "DepersonalisationReport.generalised.oked"),
    ("report", {"suppressed_cells": {"kato": -1}}, INVALID, "suppressed_cells.kato"),
    ("report", {"top_bottom_coded": {"x": 1.5}}, INVALID, "top_bottom_coded.x"),
    ("report", {"shuffled": False}, INVALID, "DepersonalisationReport.shuffled"),
    ("report", {"identifier_scan": {}}, INVALID, "DepersonalisationReport.identifier_scan"),
    ("report", {"identifier_scan": {"phone": 2}}, INVALID, "identifier_scan.phone"),
    # SampleManifest
    ("sample", {"sample_id": ""}, INVALID, "SampleManifest.sample_id"),
    ("sample", {"request_id": "req..1"}, INVALID, "SampleManifest.request_id"),
    ("sample", {"list_id": " x"}, INVALID, "SampleManifest.list_id"),
    ("sample", {"source": "Stats"}, INVALID, "SampleManifest.source"),
    ("sample", {"body": ""}, INVALID, "SampleManifest.body"),
    ("sample", {"created_at": dt.date(2026, 3, 2)}, INVALID, "SampleManifest.created_at"),
    ("sample", {"row_count": 989}, INVALID, "SampleManifest.row_count"),
    ("sample", {"columns": ()}, INVALID, "SampleManifest.columns"),
    ("sample", {"columns": ("oked", "oked")}, INVALID, "SampleManifest.columns"),
    ("sample", {"columns": ("random_id", "phone")}, INVALID, "SampleManifest.columns[1]"),
    ("sample", {"file": "../stats.parquet"}, UNSAFE, "SampleManifest.file"),
    ("sample", {"sha256": "A" * 64}, INVALID, "SampleManifest.sha256"),
    ("sample", {"report": a_report(k_achieved=2)}, INVALID, "SampleManifest.report.k_achieved"),
    (
        "sample",
        {"report": a_report(passed=False, shuffled=False)},
        INVALID,
        "SampleManifest.report.passed",
    ),
    # ModelEntry
    ("model", {"name": "a b"}, INVALID, "ModelEntry.name"),
    ("model", {"source": "tax"}, INVALID, "ModelEntry.source"),
    ("model", {"index": "Payment"}, INVALID, "ModelEntry.index"),
    ("model", {"file": "/models/x.onnx"}, UNSAFE, "ModelEntry.file"),
    ("model", {"file": "model.pkl"}, INVALID, "ModelEntry.file"),
    ("model", {"sha256": "abc"}, INVALID, "ModelEntry.sha256"),
    ("model", {"input_names": (), "input_types": ()}, INVALID, "ModelEntry.input_names"),
    ("model", {"output_names": ("p", "p")}, INVALID, "ModelEntry.output_names"),
    ("model", {"input_types": ("float32", "int64")}, INVALID, "ModelEntry.input_types"),
    ("model", {"input_types": ("object",)}, INVALID, "ModelEntry.input_types[0]"),
    ("model", {"opset": {}}, INVALID, "ModelEntry.opset"),
    ("model", {"opset": {"": 0}}, INVALID, "ModelEntry.opset."),
    ("model", {"opset": {"evil/domain": 1}}, INVALID, "ModelEntry.opset"),
    # CategoryCutoffs
    ("cutoffs", {"index": ""}, INVALID, "CategoryCutoffs.index"),
    ("cutoffs", {"medium_from": 0.0}, INVALID, "CategoryCutoffs.medium_from"),
    ("cutoffs", {"medium_from": 0.6}, INVALID, "CategoryCutoffs.high_from"),
    ("cutoffs", {"high_from": 1.0}, INVALID, "CategoryCutoffs.high_from"),
    ("cutoffs", {"high_from": float("nan")}, INVALID, "CategoryCutoffs.high_from"),
    # ReleaseManifest
    ("release", {"release_id": ".."}, INVALID, "ReleaseManifest.release_id"),
    ("release", {"sequence": 0}, INVALID, "ReleaseManifest.sequence"),
    ("release", {"audience": "register"}, INVALID, "ReleaseManifest.audience"),
    ("release", {"expires_at": T0}, INVALID, "ReleaseManifest.expires_at"),
    ("release", {"lab": ""}, INVALID, "ReleaseManifest.lab"),
    ("release", {"models": ()}, INVALID, "ReleaseManifest.models"),
    ("release", {"models": (a_model(file="other.onnx"),)}, INVALID, "models[0].file"),
    ("release", {"models": (a_model(sha256=SHA_D),)}, INVALID, "models[0].sha256"),
    ("release", {"models": (a_model(source="STATS"),)}, INVALID, "models[0].source"),
    ("release", {"models": (a_model(source=None),)}, INVALID, "models[0].source"),
    ("release", {"models": (a_model(), a_model())}, INVALID, "ReleaseManifest.models"),
    ("release", {"models": (a_model(), OTHER_MODEL)}, INVALID, "ReleaseManifest.cutoffs"),
    ("release", {"cutoffs": ()}, INVALID, "ReleaseManifest.cutoffs"),
    (
        "release",
        {"cutoffs": (CategoryCutoffs("payment_discipline", 0.2, 0.5),) * 2},
        INVALID,
        "ReleaseManifest.cutoffs",
    ),
    (
        "release",
        {"cutoffs": (CategoryCutoffs("payment_discipline", 0.5, 0.2),)},
        INVALID,
        "ReleaseManifest.cutoffs[0].high_from",
    ),
    ("release", {"parity_fixture": "missing.parquet"}, INVALID, "ReleaseManifest.parity_fixture"),
    ("release", {"model_card": "missing.md"}, INVALID, "ReleaseManifest.model_card"),
    ("release", {"training": {"": "x"}}, INVALID, "ReleaseManifest.training"),
    ("release", {"quality_overrides": ("auc", "auc")}, INVALID, "quality_overrides"),
    # BatchManifest
    ("batch", {"batch_id": "bat 1"}, INVALID, "BatchManifest.batch_id"),
    ("batch", {"body": "\t"}, INVALID, "BatchManifest.body"),
    ("batch", {"source": ""}, INVALID, "BatchManifest.source"),
    ("batch", {"release_id": "/rel"}, INVALID, "BatchManifest.release_id"),
    ("batch", {"as_of": T0}, INVALID, "BatchManifest.as_of"),
    ("batch", {"created_at": dt.datetime(2026, 1, 1)}, INVALID, "BatchManifest.created_at"),
    ("batch", {"row_count": -1}, INVALID, "BatchManifest.row_count"),
    ("batch", {"file": "C:/batch.parquet"}, UNSAFE, "BatchManifest.file"),
    ("batch", {"sha256": SHA_D[:-1]}, INVALID, "BatchManifest.sha256"),
    ("batch", {"columns": (*BATCH_COLUMNS, "iin")}, INVALID, "BatchManifest.columns"),
    ("batch", {"columns": BATCH_COLUMNS[:-1]}, INVALID, "BatchManifest.columns"),
    ("batch", {"columns": (*BATCH_COLUMNS, "bin")}, INVALID, "BatchManifest.columns"),
    ("batch", {"sealed": "yes"}, INVALID, "BatchManifest.sealed"),
]


@pytest.mark.parametrize(
    ("factory", "changes", "code", "field"),
    FAILING,
    ids=[f"{f}-{'-'.join(c)}-{i}" for i, (f, c, _, _) in enumerate(FAILING)],
)
def test_every_rule_has_a_failing_example(factory, changes, code, field):
    record = FACTORIES[factory](**changes)
    with pytest.raises(ValidationError) as info:
        record.validate()
    assert info.value.code == code
    assert field in str(info.value)
    assert re.search(r"expected .+, found ", str(info.value))


def test_failing_reports_may_be_valid_but_not_in_a_sample():
    failing = a_report(passed=False, k_achieved=1, shuffled=False, identifier_scan={"bin_iin": 3})
    failing.validate()
    assert DepersonalisationReport.from_json(failing.to_json()) == failing


def test_register_release_takes_combiners():
    combiner = a_model(source=None, name="combiner-payment", file="combiner.onnx")
    rel = a_release(
        audience=REGISTER_AUDIENCE,
        models=(combiner,),
        files={"combiner.onnx": SHA_A, "parity.parquet": SHA_B},
        model_card=None,
    )
    rel.validate()
    assert rel.cutoffs_for("payment_discipline").high_from == 0.5
    with pytest.raises(KeyError):
        rel.cutoffs_for("business_reputation")


def test_release_expiry():
    rel = a_release()
    assert not rel.is_expired(T0)
    assert rel.is_expired(rel.expires_at)


@pytest.mark.parametrize(
    ("probability", "category"),
    [(0.0, "low"), (0.19, "low"), (0.2, "medium"), (0.49, "medium"), (0.5, "high"), (1.0, "high")],
)
def test_category_from_cutoffs(probability, category):
    assert CategoryCutoffs("payment_discipline", 0.2, 0.5).category(probability) == category


def test_request_source_lookup():
    assert a_request().source("STATS").fields == ("oked",)
    with pytest.raises(KeyError):
        a_request().source("COURT")


def test_random_id_list_mapping():
    assert a_list().mapping() == {
        "990140000135": "rid_" + "a" * 24,
        "880215300456": "rid_" + "b" * 24,
    }


# -- path traversal ---------------------------------------------------------------------

BAD_PATHS = [
    "../escape.onnx",
    "models/../../escape.onnx",
    "/etc/passwd.onnx",
    "models\\x.onnx",
    "./x.onnx",
    ".hidden.onnx",
    "models//x.onnx",
    "models/",
    "C:/x.onnx",
    "~/x.onnx",
    "-rf.onnx",
    "x.onnx\x00",
    "",
]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_release_refuses_path_traversal_in_every_path_field(path):
    files = {path: SHA_A, "parity.parquet": SHA_B, "MODEL_CARD.md": SHA_C}
    attempts = {
        "model file": dict(models=(a_model(file=path),), files=files),
        "files key": dict(files=files),
        "parity fixture": dict(parity_fixture=path, files=files),
        "model card": dict(model_card=path, files=files),
    }
    for what, changes in attempts.items():
        with pytest.raises(ValidationError) as info:
            a_release(**changes).validate()
        assert info.value.code == "unsafe_path", what
        assert "expected a relative path" in str(info.value)


@pytest.mark.parametrize("path", ["../x.parquet", "/tmp/x.parquet"])
def test_traversal_refused_when_read_from_a_file(tmp_path, path):
    text = a_batch().to_json().replace('"batch.parquet"', json_str(path))
    target = tmp_path / "batch.json"
    target.write_text(text)
    with pytest.raises(ValidationError) as info:
        read_record(BatchManifest, target)
    assert info.value.code == "unsafe_path"
    assert str(target) in str(info.value)
    assert "BatchManifest.file" in str(info.value)


def json_str(s):
    return json.dumps(s)


def test_manifest_cannot_list_itself():
    files = {**a_release().files, "manifest.json": SHA_D}
    with pytest.raises(ValidationError, match=r"ReleaseManifest\.files: .*manifest.json") as info:
        a_release(files=files).validate()
    assert info.value.code == "invalid_record"


def test_safe_join(tmp_path):
    (tmp_path / "models").mkdir()
    assert safe_join(tmp_path, "models/a.onnx") == tmp_path.resolve() / "models" / "a.onnx"
    for bad in ("../a", "/etc/passwd", "a/../../b"):
        with pytest.raises(ValidationError) as info:
            safe_join(tmp_path, bad)
        assert info.value.code == "unsafe_path"


def test_safe_join_refuses_a_symlink_out_of_the_directory(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    os.symlink(outside, bundle / "models")
    with pytest.raises(ValidationError, match="outside the directory") as info:
        safe_join(bundle, "models/a.onnx")
    assert info.value.code == "unsafe_path"


# -- random and record IDs ----------------------------------------------------------------


def test_random_ids_are_unique_and_well_formed():
    ids_ = new_random_ids(5000)
    assert len(ids_) == len(set(ids_)) == 5000
    assert all(is_random_id(i) and i.startswith(RANDOM_ID_PREFIX) for i in ids_)
    assert all(not re.search(r"[0-9]{12}", i) for i in ids_)
    assert new_random_ids(0) == ()
    assert is_random_id(new_random_id())
    assert new_random_id() != new_random_id()


def test_random_ids_carry_at_least_96_bits():
    rid = new_random_id()
    assert len(rid) - len(RANDOM_ID_PREFIX) == 24  # 24 base32 characters = 120 bits
    assert re.fullmatch(r"rid_[a-z2-7]{24}", rid)


@pytest.mark.parametrize(
    "value",
    [
        "990140000135",  # a valid BIN
        "880215300456",
        "rid_990140000135990140000135",
        "rid_" + "234567234567" + "a" * 12,  # a BIN-like run of digits inside
        "rid_" + "a" * 23,
        "rid_" + "a" * 25,
        "RID_" + "a" * 24,
        "rid_" + "A" * 24,
        "rid_" + "a" * 23 + "1",  # base32 has no 0, 1, 8, 9
        "x" + "rid_" + "a" * 24,
        "",
        None,
        990140000135,
    ],
)
def test_is_random_id_rejects(value):
    assert not is_random_id(value)


@EXAMPLES
@given(st.from_regex(r"[0-9]{12}", fullmatch=True))
def test_no_twelve_digit_string_is_a_random_id(value):
    assert not is_random_id(value)
    assert not is_random_id(RANDOM_ID_PREFIX + value + "a" * 12)


@pytest.mark.parametrize("n", [-1, True, 2.0, "3"])
def test_new_random_ids_refuses_a_bad_count(n):
    with pytest.raises(ValidationError) as info:
        new_random_ids(n)
    assert info.value.code == "invalid_value"
    assert "new_random_ids" in str(info.value)


def test_new_record_id():
    rid = new_record_id("req", now=dt.datetime(2026, 3, 2, 23, 30, tzinfo=ALMATY))
    assert re.fullmatch(r"req-20260302-[a-z2-7]{16}", rid)
    late = new_record_id("rel", now=dt.datetime(2026, 3, 3, 2, 0, tzinfo=ALMATY))
    assert late.startswith("rel-20260302-")  # the UTC date
    assert new_record_id("bat") != new_record_id("bat")
    assert re.fullmatch(r"bat-\d{8}-[a-z2-7]{16}", new_record_id("bat"))


@pytest.mark.parametrize("prefix", ["", "Req", "1req", "re q", "a" * 17, "req-"])
def test_new_record_id_refuses_a_bad_prefix(prefix):
    with pytest.raises(ValidationError, match="prefix") as info:
        new_record_id(prefix)
    assert info.value.code == "invalid_value"


def test_new_record_id_refuses_a_naive_time():
    with pytest.raises(ValidationError, match="timezone-aware"):
        new_record_id("req", now=dt.datetime(2026, 1, 1))


# -- hashes and files ---------------------------------------------------------------------


def test_sha256_helpers(tmp_path):
    assert sha256_bytes(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    data = os.urandom(3 * 1024 * 1024 + 7)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest() == sha256_bytes(data)
    with pytest.raises(FileNotFoundError) as info:
        sha256_file(tmp_path / "missing.bin")
    assert "missing.bin" in str(info.value)


def test_write_record_writes_canonical_bytes_atomically(tmp_path):
    path = tmp_path / "sub" / "request.json"
    write_record(a_request(), path)
    assert path.read_bytes() == a_request().canonical_bytes()
    assert not path.read_bytes().endswith(b"\n")
    write_record(a_request(sample_size=5), path)
    assert read_record(SampleRequest, path).sample_size == 5
    assert sorted(p.name for p in path.parent.iterdir()) == ["request.json"]


def test_write_record_refuses_an_invalid_record_and_writes_nothing(tmp_path):
    path = tmp_path / "request.json"
    with pytest.raises(ValidationError, match=r"SampleRequest\.sample_size"):
        write_record(a_request(sample_size=0), path)
    assert list(tmp_path.iterdir()) == []


def test_read_record_missing_file_names_it(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(SerdeError) as info:
        read_record(SampleRequest, path)
    assert info.value.code == "record_unreadable"
    assert str(path) in str(info.value)
    assert "SampleRequest" in str(info.value)


def test_read_record_directory_is_unreadable(tmp_path):
    with pytest.raises(SerdeError) as info:
        read_record(SampleRequest, tmp_path)
    assert info.value.code == "record_unreadable"


def test_read_record_bad_json_names_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{oops")
    with pytest.raises(SerdeError) as info:
        read_record(SampleRequest, path)
    assert info.value.code == "bad_record"
    assert str(path) in str(info.value) and "not valid JSON" in str(info.value)


def test_read_record_wrong_kind_names_file_and_both_kinds(tmp_path):
    path = tmp_path / "batch.json"
    write_record(a_batch(), path)
    with pytest.raises(SerdeError) as info:
        read_record(ReleaseManifest, path)
    message = str(info.value)
    assert str(path) in message and "ReleaseManifest" in message and "'BatchManifest'" in message


def test_read_record_wrong_field_type_names_file_and_field(tmp_path):
    path = tmp_path / "request.json"
    path.write_text(a_request().to_json().replace('"sample_size":1000', '"sample_size":"many"'))
    with pytest.raises(SerdeError) as info:
        read_record(SampleRequest, path)
    assert f"{path}: SampleRequest.sample_size: expected an integer" in str(info.value)


def test_read_record_invalid_record_keeps_its_code_and_names_the_file(tmp_path):
    path = tmp_path / "request.json"
    path.write_text(a_request().to_json().replace('"sample_size":1000', '"sample_size":0'))
    with pytest.raises(ValidationError) as info:
        read_record(SampleRequest, path)
    assert not isinstance(info.value, SerdeError)
    assert info.value.code == "invalid_record"
    assert str(path) in str(info.value) and "SampleRequest.sample_size" in str(info.value)


def test_records_are_frozen_and_slotted():
    rec = a_batch()
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.row_count = 3  # type: ignore[misc]
    assert not hasattr(rec, "__dict__")
    assert hash(a_request()) == hash(a_request())
