"""Step 1 of a sample round: the lab's signed request for depersonalised samples.

:func:`create_sample_request` builds a :class:`~sample_protocol.records.SampleRequest`
(paras 20-21, 25-27): which sources and fields, how many entities, the observation date
and the outcome horizon, the k of k-anonymity, and the due date, 10 business days after
it is sent on the Kazakhstan calendar. Only model fields are ever asked for
(:meth:`~sample_protocol.catalogue.SourceSpec.model_fields`): a direct identifier is
refused even when named explicitly. The recipients are the non-revoked bodies of the
trust root that own a requested source; the tax body is always one of them (it draws
the random list and brings the outcomes), so TAX is always requested.

The request is written as canonical JSON with a minisign signature by the lab key, to
``LAB/requests/<request_id>.json`` and to ``OUT/<request_id>.json`` (each with its
``.minisig``), recorded in the lab registry and in the lab's audit log.

Example::

    request, path = create_sample_request(
        lab_key=load_secret_key("nce-lab.key"), trust=trusted, lab_dir="lab", out="outbox",
        sources=["TAX", "STATS"], sample_size=5000, sent_on=dt.date(2025, 3, 3),
    )
    request.due_date  # date(2025, 3, 18): Monday 10 March is off (8 March fell on a Saturday)
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from sample_protocol.calendar import BusinessCalendar, deadline
from sample_protocol.catalogue import Catalogue, SourceSpec
from sample_protocol.errors import ProtocolError
from sample_protocol.keys import SecretKey
from sample_protocol.records import SampleRequest, SourceRequest, new_record_id, write_record
from sample_protocol.signing import default_trusted_comment, sign_file
from sample_protocol.trust import Role, TrustRoot

from .errors import LabError
from .labdir import LabDir, LabRegistry, RequestEntry

__all__ = [
    "ANSWER_BUSINESS_DAYS",
    "BODY_ROLES",
    "DEFAULT_SAMPLE_SIZE",
    "create_sample_request",
    "default_sources",
    "read_fields_file",
    "request_fields",
]

#: Business days a body has to answer a sample request (para 27).
ANSWER_BUSINESS_DAYS = 10
#: Default number of entities drawn by the tax body.
DEFAULT_SAMPLE_SIZE = 5_000
#: Roles that own sources and answer sample requests.
BODY_ROLES = frozenset({Role.BODY, Role.TAX_BODY})
_TAX = "TAX"


def default_sources(catalogue: Catalogue | None = None) -> tuple[str, ...]:
    """Every source the rules require (the catalogue's non-optional ones), in order."""
    cat = catalogue or Catalogue.default()
    return tuple(s.code for s in cat.sources if not s.optional)


def read_fields_file(path: str | os.PathLike[str]) -> dict[str, tuple[str, ...]]:
    """Read ``{"SOURCE": ["field", ...], ...}`` from a JSON file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabError(f"fields file {path}: not found", code="fields_file_missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabError(
            f'fields file {path}: expected JSON like {{"TAX": ["staff_count"]}}, '
            f"could not read it ({exc})",
            code="fields_file_invalid",
        ) from None
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(x, str) for x in v)
        for k, v in raw.items()
    ):
        raise LabError(
            f"fields file {path}: expected an object mapping source codes to lists of field "
            f'names, like {{"TAX": ["staff_count"]}}',
            code="fields_file_invalid",
        )
    return {code: tuple(names) for code, names in raw.items()}


def request_fields(
    sources: Iterable[str] | None = None,
    fields: Mapping[str, Iterable[str]] | None = None,
    catalogue: Catalogue | None = None,
) -> tuple[SourceRequest, ...]:
    """The per-source field lists of a request, TAX first, then catalogue order.

    ``sources`` defaults to :func:`default_sources` (or, when only ``fields`` is given,
    to the sources it names); TAX is always added. A source not in ``fields`` gets all
    its model fields. Unknown sources or fields and direct identifiers raise
    :class:`LabError` (``unknown_source``, ``unknown_field``, ``direct_identifier_requested``).

    >>> [s.source for s in request_fields(["STATS"])]
    ['TAX', 'STATS']
    """
    cat = catalogue or Catalogue.default()
    chosen = dict(fields or {})
    if sources is not None:
        codes = list(dict.fromkeys(sources))
    elif chosen:
        codes = list(chosen)
    else:
        codes = list(default_sources(cat))
    for code in codes:
        _source(cat, code)
    stray = [code for code in chosen if code not in codes]
    if stray:
        raise LabError(
            f"fields given for source(s) {', '.join(stray)} that are not requested "
            f"(requested: {', '.join(codes)})",
            code="fields_not_requested",
        )
    if _TAX not in codes:
        codes.insert(0, _TAX)
    order = {code: i for i, code in enumerate(cat.source_codes())}
    codes.sort(key=lambda c: (c != _TAX, order[c]))
    out = []
    for code in codes:
        spec = _source(cat, code)
        model = [f.name for f in spec.model_fields()]
        if code not in chosen:
            out.append(SourceRequest(code, tuple(model)))
            continue
        names = tuple(dict.fromkeys(chosen[code]))
        if not names:
            raise LabError(
                f"source {code}: expected at least one field, found none", code="no_fields"
            )
        for name in names:
            try:
                field = spec.field(name)
            except ProtocolError as exc:
                raise LabError(str(exc), code="unknown_field") from None
            if field.direct_identifier:
                raise LabError(
                    f"source {code} field {name!r} is a direct identifier: it never leaves "
                    f"its owner and cannot be requested (model fields: {', '.join(model)})",
                    code="direct_identifier_requested",
                )
        out.append(SourceRequest(code, names))
    return tuple(out)


def _source(cat: Catalogue, code: str) -> SourceSpec:
    try:
        return cat.source(code)
    except ProtocolError as exc:
        raise LabError(str(exc), code="unknown_source") from None


def _recipients(trust: TrustRoot, codes: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Body name -> the requested sources it owns; tax body first, then by name."""
    wanted = list(codes)
    expected: dict[str, tuple[str, ...]] = {}
    for party in trust.parties:
        if party.revoked or party.role not in BODY_ROLES:
            continue
        owned = tuple(c for c in wanted if c in party.sources)
        if owned or party.role is Role.TAX_BODY:
            expected[party.name] = owned
    owners = {c for owned in expected.values() for c in owned}
    orphans = [c for c in wanted if c not in owners]
    if orphans:
        raise LabError(
            f"trust root version {trust.version}: no non-revoked body owns source(s) "
            f"{', '.join(orphans)}; expected an owner for every requested source (add the "
            "body to the trust root, or request fewer sources)",
            code="source_without_owner",
        )
    tax = [p.name for p in trust.parties if p.role is Role.TAX_BODY and not p.revoked]
    if not tax:
        raise LabError(
            f"trust root version {trust.version}: no non-revoked tax body; it draws the "
            "random list, so every request goes to it",
            code="no_tax_body",
        )
    return dict(sorted(expected.items(), key=lambda kv: (kv[0] not in tax, kv[0])))


def _minus_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    for d in (day.day, 30, 29, 28):
        try:
            return dt.date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")  # pragma: no cover


def _check_int(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise LabError(
            f"{name}: expected an integer from {low} to {high:,}, found {value!r}",
            code="bad_option",
        )


def create_sample_request(
    *,
    lab_key: SecretKey,
    trust: TrustRoot,
    lab_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    sources: Iterable[str] | None = None,
    fields: Mapping[str, Iterable[str]] | None = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    as_of: dt.date | None = None,
    sent_on: dt.date | None = None,
    horizon_months: int = 12,
    k_anonymity: int = 5,
    notes: str = "",
    catalogue: Catalogue | None = None,
    calendar: BusinessCalendar | None = None,
    now: dt.datetime | None = None,
) -> tuple[SampleRequest, Path]:
    """Build, sign and write a sample request; return it and the path written to ``out``.

    ``lab_key`` must be the current key of a LAB party of ``trust`` (else
    :class:`~sample_protocol.errors.TrustError`). ``sent_on`` defaults to today,
    ``as_of`` to ``horizon_months`` before ``sent_on`` (so that the outcomes are known).
    Without ``out`` the request is written to the lab directory only (the path returned).
    """
    lab = trust.require_signer(lab_key.key_id, roles={Role.LAB})
    _check_int("sample size", sample_size, 1, 10_000_000)
    _check_int("horizon (months)", horizon_months, 1, 120)
    _check_int("k (k-anonymity)", k_anonymity, 2, 1_000)
    created = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    sent = sent_on or dt.date.today()
    observed = as_of or _minus_months(sent, horizon_months)
    if observed > sent:
        raise LabError(
            f"as-of date {observed}: expected a date on or before the sending date {sent} "
            "(features describe entities on that date, outcomes follow it)",
            code="bad_option",
        )
    horizon_end = _minus_months(observed, -horizon_months)
    if horizon_end > sent:
        raise LabError(
            f"as-of date {observed}: expected at least {horizon_months} months before the "
            f"sending date {sent}, so that every outcome of the horizon (to {horizon_end}) "
            "is already known; found a horizon still open",
            code="horizon_open",
        )
    items = request_fields(sources, fields, catalogue)
    expected = _recipients(trust, (s.source for s in items))
    due = deadline(sent, ANSWER_BUSINESS_DAYS, calendar)
    request = SampleRequest(
        request_id=new_record_id("req", now=created),
        lab=lab.name,
        created_at=created,
        sent_on=sent,
        due_date=due,
        sample_size=sample_size,
        as_of=observed,
        sources=items,
        recipients=tuple(expected),
        horizon_months=horizon_months,
        k_anonymity=k_anonymity,
        notes=notes,
    )
    request.validate()

    labdir = LabDir(lab_dir).ensure()
    comment = (
        default_trusted_comment(lab_key, file_name=f"{request.request_id}.json")
        + f"\trequest_id:{request.request_id}"
    )
    lab_copy = labdir.request_path(request.request_id)
    targets = [lab_copy]
    if out is not None:
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        targets.append(out_dir / f"{request.request_id}.json")
    for path in targets:
        write_record(request, path)
        sign_file(path, lab_key, trusted_comment=comment)

    entry = RequestEntry(
        request_id=request.request_id,
        created_at=created,
        sent_on=sent,
        due_date=due,
        sample_size=sample_size,
        sources=tuple(s.source for s in items),
        recipients=request.recipients,
        expected=expected,
        file=labdir.relative(lab_copy),
    )

    def change(reg: LabRegistry) -> LabRegistry:
        return LabRegistry(
            version=reg.version,
            requests={**reg.requests, request.request_id: entry},
            samples=reg.samples,
            releases=reg.releases,
        )

    labdir.update_registry(change)
    labdir.audit(lab.name).append(
        "sample_requested",
        request.request_id,
        details={
            "sources": ",".join(entry.sources),
            "recipients": ",".join(request.recipients),
            "sample_size": sample_size,
            "sent_on": sent.isoformat(),
            "due_date": due.isoformat(),
        },
    )
    return request, targets[-1]
