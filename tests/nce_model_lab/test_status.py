"""``nce_model_lab.status``: answered / pending / overdue bodies, and the next refit date."""

from __future__ import annotations

import datetime as dt

import pytest

from nce_model_lab.errors import LabError
from nce_model_lab.labdir import LabDir
from nce_model_lab.sample_ingest import ingest_samples
from nce_model_lab.status import lab_status, one_year_after
from sample_protocol.calendar import default_calendar
from tests.nce_model_lab.test_sample_ingest import make_sample, new_round, new_world

SENT = dt.date(2025, 3, 3)  # a Monday
DUE = dt.date(2025, 3, 18)  # 10 business days later (Monday 10 March is off)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return new_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def rnd(tmp_path, world):
    return new_round(tmp_path, world=world, sent_on=SENT)


def receive(rnd, source, day):
    when = dt.datetime.combine(day, dt.time(9), tzinfo=dt.UTC)
    result = ingest_samples(
        [make_sample(rnd, source)],
        lab_key=rnd.lab_key,
        trust=rnd.world.trust_root,
        lab_dir=rnd.lab,
        now=when,
    )
    assert result.outcomes[0].accepted, result.outcomes[0].message


def test_before_the_due_date_everyone_is_pending(rnd):
    st = lab_status(rnd.lab, today=dt.date(2025, 3, 10))
    [req] = st.requests
    assert req.request_id == rnd.request.request_id
    assert req.due_date == DUE and req.state == "open"
    assert req.pending == ("tax-body", "court-body", "stats-body")
    assert req.answered == () and req.overdue == ()
    assert req.business_days_left == 6  # 11-14 and 17-18 March
    assert st.next_refit_due is None and "no release" in st.refit_basis


def test_the_due_date_itself_is_not_overdue(rnd):
    [req] = lab_status(rnd.lab, today=DUE).requests
    assert req.overdue == () and req.business_days_left == 0


def test_answered_late_and_overdue_in_business_days(rnd):
    receive(rnd, "TAX", dt.date(2025, 3, 5))
    receive(rnd, "STATS", dt.date(2025, 3, 20))
    today = dt.date(2025, 3, 27)
    [req] = lab_status(rnd.lab, today=today).requests
    bodies = {b.body: b for b in req.bodies}
    assert req.state == "overdue"
    assert req.answered == ("tax-body", "stats-body") and req.overdue == ("court-body",)
    tax, stats, court = bodies["tax-body"], bodies["stats-body"], bodies["court-body"]
    assert tax.state == "answered" and not tax.late and tax.answered_on == dt.date(2025, 3, 5)
    assert stats.state == "answered" and stats.late and stats.business_days_late == 2
    assert court.state == "overdue" and court.received == ()
    calendar = default_calendar()
    assert court.business_days_late == calendar.business_days_between(DUE, today)
    # Nauryz (21-25 March 2025): 9 calendar days past due are only 4 business days.
    assert court.business_days_late == 4
    assert req.business_days_left == -4
    assert req.training_file is not None


def test_refit_due_a_year_after_the_last_completed_round(rnd):
    for source, day in (("TAX", 5), ("STATS", 6), ("COURT", 12)):
        receive(rnd, source, dt.date(2025, 3, day))
    st = lab_status(rnd.lab, today=dt.date(2025, 4, 1))
    [req] = st.requests
    assert req.state == "complete" and req.completed_on == dt.date(2025, 3, 12)
    assert st.last_completed_round == dt.date(2025, 3, 12)
    assert st.next_refit_due == dt.date(2026, 3, 12) and not st.refit_overdue
    assert lab_status(rnd.lab, today=dt.date(2026, 3, 13)).refit_overdue


def test_refit_due_a_year_after_the_last_release(rnd):
    for source in ("TAX", "STATS", "COURT"):
        receive(rnd, source, dt.date(2025, 3, 5))
    LabDir(rnd.lab).record_release("rel-2025-1", dt.date(2025, 6, 1))
    LabDir(rnd.lab).record_release("rel-2024-1", dt.date(2024, 6, 1))
    st = lab_status(rnd.lab, today=dt.date(2025, 7, 1))
    assert st.last_release == dt.date(2025, 6, 1)
    assert st.next_refit_due == dt.date(2026, 6, 1)
    assert "release" in st.refit_basis


def test_empty_lab_directory(tmp_path):
    st = lab_status(tmp_path / "nothing-here", today=dt.date(2025, 1, 1))
    assert st.requests == () and st.next_refit_due is None and not st.refit_overdue


def test_corrupt_registry_is_an_error_not_a_reset(tmp_path):
    lab = LabDir(tmp_path)
    lab.registry_path.write_text("{not json")
    with pytest.raises(LabError) as err:
        lab_status(tmp_path)
    assert err.value.code == "lab_registry_corrupt" and "registry.json" in str(err.value)


def test_one_year_after_leap_day():
    assert one_year_after(dt.date(2024, 2, 29)) == dt.date(2025, 2, 28)
    assert one_year_after(dt.date(2025, 3, 12)) == dt.date(2026, 3, 12)
