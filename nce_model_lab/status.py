"""Step 5 of a sample round: where every request stands, and when the next refit is due.

:func:`lab_status` reads the lab registry (no keys needed) and says, per request, which
bodies have answered (every requested source they own was accepted), which are still
pending, and which are overdue: past the due date, 10 business days after sending on the
Kazakhstan calendar (para 27), with how many business days late. A body that answered
after the due date is ``answered`` with ``late`` set.

The algorithms are refined at least once a year (para 25): the next refit is due a year
after the last release; until a release exists, a year after the last completed round
(the day its last sample was accepted).

Example::

    >>> import tempfile
    >>> lab_status(tempfile.mkdtemp(), today=dt.date(2026, 3, 2)).next_refit_due is None
    True
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

from sample_protocol.calendar import BusinessCalendar, default_calendar
from sample_protocol.serde import Record

from .labdir import LabDir, LabRegistry, RequestEntry

__all__ = [
    "BODY_STATES",
    "REQUEST_STATES",
    "BodyStatus",
    "LabStatus",
    "RequestStatus",
    "lab_status",
    "one_year_after",
]

#: States of a body in a request.
BODY_STATES = ("answered", "pending", "overdue")
#: States of a request: every body answered, some pending, some overdue.
REQUEST_STATES = ("complete", "open", "overdue")


@dataclass(frozen=True, slots=True)
class BodyStatus(Record):
    """One recipient body of a request.

    ``business_days_late``: for an overdue body, business days from the due date to
    today; for a late answer, to the day it was complete. ``answered_on``: the day its
    last expected sample was accepted.
    """

    body: str
    sources: tuple[str, ...]
    received: tuple[str, ...]
    state: str
    answered_on: dt.date | None
    late: bool
    business_days_late: int


@dataclass(frozen=True, slots=True)
class RequestStatus(Record):
    """One request: its dates, its bodies, and whether the round is complete.

    ``business_days_left``: business days from today to the due date (negative once
    past it).
    """

    request_id: str
    sent_on: dt.date
    due_date: dt.date
    sample_size: int
    state: str
    business_days_left: int
    bodies: tuple[BodyStatus, ...]
    answered: tuple[str, ...]
    pending: tuple[str, ...]
    overdue: tuple[str, ...]
    completed_on: dt.date | None
    training_file: str | None


@dataclass(frozen=True, slots=True)
class LabStatus(Record):
    """Every request, the last release and completed round, and the next refit date."""

    today: dt.date
    requests: tuple[RequestStatus, ...]
    last_release: dt.date | None
    last_completed_round: dt.date | None
    next_refit_due: dt.date | None
    refit_basis: str
    refit_overdue: bool


def one_year_after(day: dt.date) -> dt.date:
    """The same day a year later (29 February becomes 28 February).

    >>> one_year_after(dt.date(2024, 2, 29))
    datetime.date(2025, 2, 28)
    """
    try:
        return day.replace(year=day.year + 1)
    except ValueError:
        return day.replace(year=day.year + 1, day=28)


def _request_status(
    labdir: LabDir,
    registry: LabRegistry,
    entry: RequestEntry,
    today: dt.date,
    calendar: BusinessCalendar,
) -> RequestStatus:
    samples = registry.samples_of(entry.request_id)
    bodies = []
    for body in entry.recipients:
        sources = entry.expected.get(body, ())
        received = tuple(s for s in sources if s in samples)
        done = len(received) == len(sources)
        answered_on = (
            max(samples[s].received_at.date() for s in sources) if done and sources else None
        )
        if done:
            state = "answered"
            end = answered_on
        elif today > entry.due_date:
            state, end = "overdue", today
        else:
            state, end = "pending", None
        late = end is not None and end > entry.due_date
        days_late = calendar.business_days_between(entry.due_date, end) if late and end else 0
        bodies.append(
            BodyStatus(
                body=body,
                sources=sources,
                received=received,
                state=state,
                answered_on=answered_on,
                late=late,
                business_days_late=days_late,
            )
        )
    answered = tuple(b.body for b in bodies if b.state == "answered")
    pending = tuple(b.body for b in bodies if b.state == "pending")
    overdue = tuple(b.body for b in bodies if b.state == "overdue")
    complete = len(answered) == len(bodies)
    dates = [b.answered_on for b in bodies if b.answered_on is not None]
    training = labdir.training_path(entry.request_id)
    return RequestStatus(
        request_id=entry.request_id,
        sent_on=entry.sent_on,
        due_date=entry.due_date,
        sample_size=entry.sample_size,
        state="complete" if complete else ("overdue" if overdue else "open"),
        business_days_left=calendar.business_days_between(today, entry.due_date),
        bodies=tuple(bodies),
        answered=answered,
        pending=pending,
        overdue=overdue,
        completed_on=max(dates) if complete and dates else None,
        training_file=labdir.relative(training) if training.is_file() else None,
    )


def lab_status(
    lab_dir: str | os.PathLike[str],
    *,
    today: dt.date | None = None,
    calendar: BusinessCalendar | None = None,
) -> LabStatus:
    """The status of every request in ``lab_dir`` (oldest first) as of ``today``."""
    labdir = LabDir(lab_dir)
    registry = labdir.read_registry()
    day = today or dt.date.today()
    cal = calendar or default_calendar()
    entries = sorted(registry.requests.values(), key=lambda e: (e.sent_on, e.created_at))
    requests = tuple(_request_status(labdir, registry, e, day, cal) for e in entries)
    releases = [r.created_on for r in registry.releases.values()]
    rounds = [r.completed_on for r in requests if r.completed_on is not None]
    last_release = max(releases) if releases else None
    last_round = max(rounds) if rounds else None
    if last_release is not None:
        due: dt.date | None = one_year_after(last_release)
        basis = f"a year after the last release ({last_release})"
    elif last_round is not None:
        due = one_year_after(last_round)
        basis = f"no release yet: a year after the last completed round ({last_round})"
    else:
        due = None
        basis = "no release and no completed round yet"
    return LabStatus(
        today=day,
        requests=requests,
        last_release=last_release,
        last_completed_round=last_round,
        next_refit_due=due,
        refit_basis=basis,
        refit_overdue=due is not None and day > due,
    )
