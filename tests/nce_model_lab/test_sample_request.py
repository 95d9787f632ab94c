"""``nce_model_lab.sample_request``: the signed request, its due date and its recipients."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nce_model_lab.errors import LabError
from nce_model_lab.labdir import LabDir
from nce_model_lab.sample_request import (
    create_sample_request,
    default_sources,
    read_fields_file,
    request_fields,
)
from sample_protocol.calendar import BusinessCalendar, default_calendar
from sample_protocol.catalogue import Catalogue, get_source
from sample_protocol.errors import TrustError
from sample_protocol.records import SampleRequest, read_record
from sample_protocol.signing import signature_path, verify_file
from sample_protocol.trust import Role
from tests.agency_runtime.round_fixtures import LAB, TAX_BODY, build_round_world

SOURCES = ("TAX", "STATS", "COURT")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_round_world(tmp_path_factory.mktemp("world"), n_entities=500, sources=SOURCES)


def make(world, tmp_path, **kwargs):
    kwargs.setdefault("sent_on", dt.date(2025, 3, 3))
    kwargs.setdefault("sources", list(SOURCES))
    return create_sample_request(
        lab_key=world.secret(LAB),
        trust=world.trust_root,
        lab_dir=tmp_path / "lab",
        out=tmp_path / "out",
        **kwargs,
    )


def test_request_is_signed_written_twice_and_recorded(world, tmp_path):
    request, path = make(world, tmp_path, sample_size=1000)
    assert path == tmp_path / "out" / f"{request.request_id}.json"
    lab_copy = LabDir(tmp_path / "lab").request_path(request.request_id)
    for file in (path, lab_copy):
        assert file.read_bytes() == request.canonical_bytes()
        verified = verify_file(file, world.trust_root.trusted_keys(Role.LAB))
        assert verified.signer == LAB
        assert verified.fields["request_id"] == request.request_id
        assert read_record(SampleRequest, file) == request
    assert signature_path(path).is_file()
    assert request.lab == LAB and request.sample_size == 1000
    registry = LabDir(tmp_path / "lab").read_registry()
    entry = registry.requests[request.request_id]
    assert entry.due_date == request.due_date
    assert entry.expected == {
        "tax-body": ("TAX",),
        "stats-body": ("STATS",),
        "court-body": ("COURT",),
    }
    log = (tmp_path / "lab" / "audit.log").read_text().splitlines()
    assert json.loads(log[-1])["action"] == "sample_requested"


def test_recipients_own_the_sources_tax_body_first(world, tmp_path):
    request, _ = make(world, tmp_path, sources=["COURT", "STATS"])
    assert request.recipients == (TAX_BODY, "court-body", "stats-body")
    assert [s.source for s in request.sources] == ["TAX", "STATS", "COURT"]


def test_tax_is_always_requested(world, tmp_path):
    request, _ = make(world, tmp_path, sources=["STATS"])
    assert [s.source for s in request.sources] == ["TAX", "STATS"]
    assert request.recipients == (TAX_BODY, "stats-body")


def test_only_model_fields_are_requested_by_default():
    for item in request_fields(default_sources()):
        spec = get_source(item.source)
        assert item.fields == tuple(f.name for f in spec.model_fields())
        assert not {f.name for f in spec.direct_identifiers()} & set(item.fields)


def test_default_sources_are_the_13_required_ones():
    codes = default_sources()
    assert len(codes) == 13 and "CUSTOMS" not in codes
    assert codes == tuple(s.code for s in Catalogue.default().sources if not s.optional)


def test_direct_identifier_is_refused_even_when_named(world, tmp_path):
    with pytest.raises(LabError) as err:
        make(world, tmp_path, fields={"TAX": ["taxpayer_name", "staff_count"]})
    assert err.value.code == "direct_identifier_requested"
    assert "taxpayer_name" in str(err.value) and err.value.exit_code == 2


def test_fields_file_limits_the_fields(world, tmp_path):
    spec = tmp_path / "fields.json"
    spec.write_text(json.dumps({"TAX": ["staff_count", "tax_debt_kzt"], "STATS": ["kato"]}))
    request, _ = make(world, tmp_path, sources=["TAX", "STATS"], fields=read_fields_file(spec))
    assert request.source("TAX").fields == ("staff_count", "tax_debt_kzt")
    assert request.source("STATS").fields == ("kato",)


@pytest.mark.parametrize(
    ("kwargs", "code", "needle"),
    [
        ({"sample_size": 0}, "bad_option", "sample size"),
        ({"horizon_months": 0}, "bad_option", "horizon"),
        ({"k_anonymity": 1}, "bad_option", "k-anonymity"),
        ({"as_of": dt.date(2025, 4, 1)}, "bad_option", "2025-04-01"),
        ({"as_of": dt.date(2024, 6, 1)}, "horizon_open", "horizon still open"),
        ({"sources": ["NOPE"]}, "unknown_source", "NOPE"),
        ({"fields": {"TAX": ["no_such_field"]}}, "unknown_field", "no_such_field"),
        (
            {"sources": ["STATS"], "fields": {"COURT": ["civil_cases_3y"]}},
            "fields_not_requested",
            "COURT",
        ),
        ({"sources": ["VEHICLES"]}, "source_without_owner", "VEHICLES"),
    ],
)
def test_bad_options_are_refused_clearly(world, tmp_path, kwargs, code, needle):
    with pytest.raises(LabError) as err:
        make(world, tmp_path, **kwargs)
    assert err.value.code == code and err.value.exit_code == 2
    assert needle in str(err.value)
    assert not (tmp_path / "out").exists()


def test_revoked_body_is_no_recipient(world, tmp_path):
    trust = world.trust_root.revoke("court-body", "left the federation")
    with pytest.raises(LabError) as err:
        create_sample_request(
            lab_key=world.secret(LAB), trust=trust, lab_dir=tmp_path, sources=["COURT"]
        )
    assert err.value.code == "source_without_owner"
    request, _ = create_sample_request(
        lab_key=world.secret(LAB), trust=trust, lab_dir=tmp_path, sources=["STATS"]
    )
    assert "court-body" not in request.recipients


def test_only_the_lab_key_may_sign(world, tmp_path):
    with pytest.raises(TrustError) as err:
        create_sample_request(
            lab_key=world.secret(TAX_BODY), trust=world.trust_root, lab_dir=tmp_path
        )
    assert err.value.code == "trust_wrong_role"


def test_bad_fields_file(tmp_path):
    bad = tmp_path / "f.json"
    bad.write_text('{"TAX": "staff_count"}')
    with pytest.raises(LabError) as err:
        read_fields_file(bad)
    assert err.value.code == "fields_file_invalid" and str(bad) in str(err.value)
    with pytest.raises(LabError) as err:
        read_fields_file(tmp_path / "missing.json")
    assert err.value.code == "fields_file_missing"


@pytest.mark.parametrize(
    ("sent_on", "due"),
    [
        (dt.date(2025, 3, 3), dt.date(2025, 3, 18)),  # Monday 10 March off (8 March, a Saturday)
        (dt.date(2025, 3, 19), dt.date(2025, 4, 7)),  # Nauryz, 21-25 March
        (dt.date(2026, 12, 15), dt.date(2026, 12, 30)),
    ],
)
def test_due_date_is_10_business_days_on_the_kazakhstan_calendar(world, tmp_path, sent_on, due):
    request, _ = make(world, tmp_path, sent_on=sent_on)
    assert request.due_date == due
    assert default_calendar().business_days_between(sent_on, due) == 10


def test_default_as_of_is_a_horizon_before_sending(world, tmp_path):
    request, _ = make(world, tmp_path, sent_on=dt.date(2025, 3, 31), horizon_months=1)
    assert request.as_of == dt.date(2025, 2, 28)


def test_calendar_overrides_move_the_due_date(world, tmp_path):
    extra = tmp_path / "calendar.json"
    extra.write_text(json.dumps({"extra_holidays": ["2025-03-17"]}))
    request, _ = make(world, tmp_path, calendar=BusinessCalendar.from_file(extra))
    assert request.due_date == dt.date(2025, 3, 19)


@settings(max_examples=20, deadline=None)
@given(sent_on=st.dates(min_value=dt.date(2024, 1, 1), max_value=dt.date(2027, 12, 1)))
def test_due_date_property(world, sent_on):
    request, _ = create_sample_request(
        lab_key=world.secret(LAB),
        trust=world.trust_root,
        lab_dir=world.root / "property-lab",
        sources=["STATS"],
        sent_on=sent_on,
    )
    calendar = default_calendar()
    assert calendar.business_days_between(sent_on, request.due_date) == 10
    assert calendar.is_business_day(request.due_date)
