"""Records of the sample flow: request (1), random-ID list (2), sample manifest (3).

Every record is a frozen dataclass; :meth:`validate` checks its invariants and raises
:class:`~sample_protocol.errors.ValidationError` (code ``invalid_record``, or
``unsafe_path`` / ``invalid_random_id``) whose message starts with the dotted field path,
e.g. ``SampleRequest.due_date: expected a date after sent_on 2026-03-02, found ...``.
Decoding (``from_json``, :func:`~sample_protocol.records_base.read_record`) validates;
so does :func:`~sample_protocol.records_base.write_record`. Constructing does not.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from .records_base import (
    CODE_RANDOM_ID,
    check_aware,
    check_min,
    check_name,
    check_relpath,
    check_sha256,
    check_source,
    check_token,
    check_types,
    check_unique,
    fail,
    is_random_id,
)
from .serde import Record

__all__ = [
    "DepersonalisationReport",
    "RandomIdList",
    "SampleManifest",
    "SampleRequest",
    "SourceRequest",
]

_IDENTIFIER_RE = re.compile(r"[0-9]{12}")


@dataclass(frozen=True, slots=True)
class SourceRequest(Record):
    """The fields asked of one source: ``SourceRequest("TAX", ("tax_debt", "staff_count"))``."""

    source: str
    fields: tuple[str, ...]

    def validate(self) -> None:
        self._check(self.kind())

    def _check(self, where: str) -> None:
        check_types(self, where)
        check_source(f"{where}.source", self.source)
        if not self.fields:
            fail(f"{where}.fields", "at least one field", "none")
        for i, name in enumerate(self.fields):
            check_name(f"{where}.fields[{i}]", name)
        check_unique(f"{where}.fields", self.fields)


@dataclass(frozen=True, slots=True)
class SampleRequest(Record):
    """The lab's signed request for depersonalised test samples (paras 20-21, 25-27).

    ``due_date`` is computed by the caller from ``sent_on`` with the Kazakhstan business
    calendar (10 business days). ``as_of`` is the observation date: features describe
    the entities on that date, outcomes are looked for within ``horizon_months`` after it.
    """

    request_id: str
    lab: str
    created_at: dt.datetime
    sent_on: dt.date
    due_date: dt.date
    sample_size: int
    as_of: dt.date
    sources: tuple[SourceRequest, ...]
    recipients: tuple[str, ...]
    horizon_months: int = 12
    k_anonymity: int = 5
    notes: str = ""

    def validate(self) -> None:
        where = self.kind()
        check_types(self, where)
        check_token(f"{where}.request_id", self.request_id)
        check_name(f"{where}.lab", self.lab)
        if self.due_date <= self.sent_on:
            fail(f"{where}.due_date", f"a date after sent_on {self.sent_on}", self.due_date)
        if self.as_of > self.sent_on:
            fail(f"{where}.as_of", f"a date on or before sent_on {self.sent_on}", self.as_of)
        check_min(f"{where}.sample_size", self.sample_size, 1)
        if not 1 <= self.horizon_months <= 120:
            fail(f"{where}.horizon_months", "1 to 120 months", self.horizon_months)
        check_min(f"{where}.k_anonymity", self.k_anonymity, 2)
        if not self.sources:
            fail(f"{where}.sources", "at least one source", "none")
        for i, source in enumerate(self.sources):
            source._check(f"{where}.sources[{i}]")
        check_unique(f"{where}.sources", (s.source for s in self.sources))
        if not self.recipients:
            fail(f"{where}.recipients", "at least one recipient body", "none")
        for i, name in enumerate(self.recipients):
            check_name(f"{where}.recipients[{i}]", name)
        check_unique(f"{where}.recipients", self.recipients)

    def source(self, code: str) -> SourceRequest:
        """The request for source ``code`` (``KeyError`` when it was not asked for)."""
        for source in self.sources:
            if source.source == code:
                return source
        raise KeyError(code)


@dataclass(frozen=True, slots=True)
class RandomIdList(Record):
    """The BIN/IIN → random-ID mapping that the tax body sends to one recipient body.

    ``identifiers[i]`` is given ``random_ids[i]``. The tax body draws the random IDs
    fresh for each request (:func:`~sample_protocol.records_base.new_random_ids`) and
    sends the *same* mapping to every recipient of that request, so that the lab can
    join their samples; only the tax body keeps it afterwards.
    """

    list_id: str
    request_id: str
    issued_by: str
    recipient: str
    issued_at: dt.datetime
    identifiers: tuple[str, ...]
    random_ids: tuple[str, ...]

    def validate(self) -> None:
        where = self.kind()
        check_types(self, where)
        check_token(f"{where}.list_id", self.list_id)
        check_token(f"{where}.request_id", self.request_id)
        check_name(f"{where}.issued_by", self.issued_by)
        check_name(f"{where}.recipient", self.recipient)
        if not self.identifiers:
            fail(f"{where}.identifiers", "at least one identifier", "none")
        if len(self.random_ids) != len(self.identifiers):
            fail(
                f"{where}.random_ids",
                f"one random ID per identifier ({len(self.identifiers)})",
                f"{len(self.random_ids)} random IDs",
            )
        for i, ident in enumerate(self.identifiers):
            if not _IDENTIFIER_RE.fullmatch(ident):
                shown = f"{len(ident)} characters" if len(ident) != 12 else "a non-digit"
                fail(f"{where}.identifiers[{i}]", "a 12-digit BIN/IIN", shown)
        for i, rid in enumerate(self.random_ids):
            if not is_random_id(rid):
                fail(
                    f"{where}.random_ids[{i}]",
                    "a random ID like 'rid_' + 24 base32 characters",
                    rid,
                    code=CODE_RANDOM_ID,
                )
        check_unique(f"{where}.identifiers", self.identifiers, personal=True)
        check_unique(f"{where}.random_ids", self.random_ids)

    def mapping(self) -> dict[str, str]:
        """``{identifier: random_id}``."""
        return dict(zip(self.identifiers, self.random_ids, strict=True))


@dataclass(frozen=True, slots=True)
class DepersonalisationReport(Record):
    """What the depersonalisation checks did to a sample and whether it passed.

    A passing report has ``k_achieved >= k_target``, at least one row, shuffled rows and
    an identifier scan that ran (``identifier_scan`` not empty) and found nothing.
    """

    k_target: int
    k_achieved: int
    rows_in: int
    rows_out: int
    removed_columns: tuple[str, ...]
    generalised: dict[str, str]
    suppressed_cells: dict[str, int]
    top_bottom_coded: dict[str, int]
    dates_coarsened: tuple[str, ...]
    identifier_scan: dict[str, int]
    shuffled: bool
    passed: bool

    def validate(self) -> None:
        self._check(self.kind())

    def _check(self, where: str) -> None:
        check_types(self, where)
        check_min(f"{where}.k_target", self.k_target, 2)
        check_min(f"{where}.k_achieved", self.k_achieved, 0)
        check_min(f"{where}.rows_in", self.rows_in, 0)
        check_min(f"{where}.rows_out", self.rows_out, 0)
        if self.rows_out > self.rows_in:
            fail(f"{where}.rows_out", f"at most rows_in ({self.rows_in})", self.rows_out)
        for name in ("removed_columns", "dates_coarsened"):
            columns: tuple[str, ...] = getattr(self, name)
            for i, column in enumerate(columns):
                check_name(f"{where}.{name}[{i}]", column)
            check_unique(f"{where}.{name}", columns)
        for column, what in self.generalised.items():
            check_name(f"{where}.generalised", column)
            if not what.strip():
                fail(f"{where}.generalised.{column}", "a description of what was done", what)
        for name in ("suppressed_cells", "top_bottom_coded", "identifier_scan"):
            counts: dict[str, int] = getattr(self, name)
            for key, count in counts.items():
                check_name(f"{where}.{name}", key)
                check_min(f"{where}.{name}.{key}", count, 0)
        if self.passed:
            self._check_passed(where)

    def _check_passed(self, where: str) -> None:
        if self.k_achieved < self.k_target:
            fail(
                f"{where}.k_achieved",
                f"at least k_target ({self.k_target}) in a passing report",
                self.k_achieved,
            )
        if self.rows_out < 1:
            fail(f"{where}.rows_out", "at least one row in a passing report", self.rows_out)
        if not self.shuffled:
            fail(f"{where}.shuffled", "true in a passing report", self.shuffled)
        if not self.identifier_scan:
            fail(f"{where}.identifier_scan", "the scan's results in a passing report", "none")
        for pattern, hits in self.identifier_scan.items():
            if hits:
                fail(f"{where}.identifier_scan.{pattern}", "0 hits in a passing report", hits)


@dataclass(frozen=True, slots=True)
class SampleManifest(Record):
    """The manifest of one body's depersonalised sample (Parquet keyed by random ID).

    Only a sample whose report passed may be described by a manifest: a failing report
    makes the manifest invalid, so it can be neither written nor read.
    """

    sample_id: str
    request_id: str
    list_id: str
    source: str
    body: str
    created_at: dt.datetime
    row_count: int
    columns: tuple[str, ...]
    file: str
    sha256: str
    report: DepersonalisationReport

    def validate(self) -> None:
        where = self.kind()
        check_types(self, where)
        check_token(f"{where}.sample_id", self.sample_id)
        check_token(f"{where}.request_id", self.request_id)
        check_token(f"{where}.list_id", self.list_id)
        check_source(f"{where}.source", self.source)
        check_name(f"{where}.body", self.body)
        check_aware(f"{where}.created_at", self.created_at)
        check_min(f"{where}.row_count", self.row_count, 0)
        if not self.columns:
            fail(f"{where}.columns", "at least one column", "none")
        for i, column in enumerate(self.columns):
            check_name(f"{where}.columns[{i}]", column)
        check_unique(f"{where}.columns", self.columns)
        check_relpath(f"{where}.file", self.file)
        check_sha256(f"{where}.sha256", self.sha256)
        self.report._check(f"{where}.report")
        if not self.report.passed:
            fail(f"{where}.report.passed", "true (only a passing sample may leave)", False)
        if self.row_count != self.report.rows_out:
            fail(
                f"{where}.row_count",
                f"the report's rows_out ({self.report.rows_out})",
                self.row_count,
            )
        removed = set(self.report.removed_columns)
        for i, column in enumerate(self.columns):
            if column in removed:
                fail(f"{where}.columns[{i}]", "no column that the report says was removed", column)
