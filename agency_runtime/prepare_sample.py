"""A body prepares its depersonalised test sample for the lab (Resolution 372, paras 20-21).

:func:`prepare_sample` runs every check first and writes one file at the end, or nothing:

1. the lab's request verifies (:func:`~agency_runtime.sample_round.verify_request`), this
   body is one of its recipients, owns the source in the trust root, and the source was
   asked for;
2. the random-ID list opens with this body's key, was signed by the TAX_BODY, is addressed
   to this body and belongs to this request;
3. the body's own extract is read and checked against the source's contract
   (:func:`~agency_runtime.extract.read_extract`): only the listed entities and the
   requested fields are kept; a listed entity absent from the extract simply has no row;
4. the BIN/IIN is replaced by the random ID (column ``rid``); the tax body's TAX sample
   also gets the ``outcome_<index>`` columns from ``outcomes``;
5. :func:`~agency_runtime.depersonalise.depersonalise` drops direct identifiers, coarsens
   dates, top/bottom-codes amounts, generalises quasi-identifiers to k-anonymity (k from
   the request, or higher), shuffles, and scans the values, failing closed;
6. the Parquet sample is signed and sealed to the lab:
   ``OUT/<request_id>.<SOURCE>.sample``, with ``meta={"manifest": <SampleManifest JSON>}``
   (the manifest carries the sha256 of the Parquet payload and the depersonalisation
   report).

Success and refusal are both logged in ``STATE/audit.log``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sample_protocol import _atomic
from sample_protocol.catalogue import FieldSpec, SourceSpec, get_source, index_ids
from sample_protocol.envelope import open_file, seal
from sample_protocol.errors import CatalogueError, SerdeError, ValidationError
from sample_protocol.keys import SecretKey
from sample_protocol.records import (
    RandomIdList,
    SampleManifest,
    SampleRequest,
    new_record_id,
    sha256_bytes,
)
from sample_protocol.trust import Party, Role, TrustRoot

from .depersonalise import depersonalise, source_depersonalisation_plan
from .errors import RuntimeInputError, RuntimeRefused
from .extract import read_extract, read_keyed_file
from .sample_round import (
    LIST_KIND,
    OUTCOME_PREFIX,
    RID_COLUMN,
    SAMPLE_KIND,
    audit_scope,
    sample_file_name,
    verify_request,
)

__all__ = [
    "PreparedSample",
    "open_list",
    "outcome_fields",
    "prepare_sample",
    "read_outcomes",
]


@dataclass(frozen=True, slots=True)
class PreparedSample:
    """What :func:`prepare_sample` wrote (or, for a refusal, nothing)."""

    file: Path
    manifest: SampleManifest
    listed: int
    absent: int
    extract_rows: int
    outcomes: bool

    @property
    def rows(self) -> int:
        return self.manifest.row_count

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary (the manifest in full)."""
        return {
            "file": str(self.file),
            "request_id": self.manifest.request_id,
            "list_id": self.manifest.list_id,
            "sample_id": self.manifest.sample_id,
            "source": self.manifest.source,
            "body": self.manifest.body,
            "rows": self.rows,
            "listed": self.listed,
            "absent": self.absent,
            "extract_rows": self.extract_rows,
            "outcomes": self.outcomes,
            "k_target": self.manifest.report.k_target,
            "k_achieved": self.manifest.report.k_achieved,
            "columns": list(self.manifest.columns),
            "sha256": self.manifest.sha256,
            "manifest": self.manifest.to_dict(),
        }


def outcome_fields() -> tuple[FieldSpec, ...]:
    """The outcome columns of the TAX sample: ``outcome_<index>`` (bool, not nullable)."""
    return tuple(
        FieldSpec(
            name=f"{OUTCOME_PREFIX}{index}",
            dtype="bool",
            nullable=False,
            description=f"Outcome of index {index!r} within the horizon after as_of.",
        )
        for index in index_ids()
    )


def read_outcomes(path: str | os.PathLike[str], *, keep: set[str]) -> pa.Table:
    """The tax body's outcomes file (``bin`` + one bool column per index), checked.

    Only the rows of ``keep`` come back; every one of them must have its outcomes
    (``outcome_missing`` otherwise).
    """
    ext = read_keyed_file(path, outcome_fields(), source="outcomes", keep=keep)
    found = set(ext.table.column("bin").to_pylist())
    missing = len(keep - found)
    if missing:
        raise RuntimeInputError(
            f"outcomes {path}: {missing} entities of the sample have no row; expected an "
            "outcome row (key column 'bin') for every entity of the register",
            code="outcome_missing",
        )
    return ext.table


def open_list(
    list_path: str | os.PathLike[str],
    *,
    request: SampleRequest,
    trust: TrustRoot,
    key: SecretKey,
) -> tuple[RandomIdList, Party]:
    """Open and check a random-ID list: from the TAX_BODY, to this body, for ``request``.

    Raises :class:`~sample_protocol.errors.EnvelopeError` (wrong recipient, tampered,
    unknown sender), :class:`~sample_protocol.errors.TrustError` (sender not the tax
    body, revoked) or :class:`RuntimeRefused` (``list_mismatch``).
    """
    path = Path(list_path)
    if not path.is_file():
        raise RuntimeInputError(f"list {path}: file not found", code="missing_list")
    everyone = {p.key.key_id: p.key for p in trust.parties}
    opened = open_file(path, None, recipient=key, senders=everyone, expected_kind=LIST_KIND)
    sender = trust.require_signer(opened.sender_key_id, roles={Role.TAX_BODY})
    try:
        record = RandomIdList.from_json(opened.payload, where=f"list {path}")
    except SerdeError:
        raise
    except ValidationError as exc:
        raise RuntimeInputError(f"list {path}: {exc}", code=exc.code) from None
    problems = []
    if record.request_id != request.request_id:
        problems.append(f"request_id {record.request_id!r} (expected {request.request_id!r})")
    if record.recipient != key.name:
        problems.append(f"recipient {record.recipient!r} (expected {key.name!r})")
    if record.issued_by != sender.name:
        problems.append(f"issued_by {record.issued_by!r} but signed by {sender.name!r}")
    if problems:
        raise RuntimeRefused(
            f"list {path}: does not belong to this round: " + "; ".join(problems),
            code="list_mismatch",
        )
    return record, sender


def _requested_fields(request: SampleRequest, spec: SourceSpec) -> tuple[str, ...]:
    try:
        fields = request.source(spec.code).fields
    except KeyError:
        asked = ", ".join(s.source for s in request.sources)
        raise RuntimeRefused(
            f"request {request.request_id}: source {spec.code!r} was not asked for "
            f"(asked: {asked})",
            code="source_not_requested",
        ) from None
    for name in fields:
        try:
            spec.field(name)
        except CatalogueError:
            raise RuntimeRefused(
                f"request {request.request_id}: asks {spec.code} for field {name!r}, which "
                f"the catalogue does not know; known fields: {', '.join(spec.field_names())}",
                code="unknown_field",
            ) from None
    return fields


def _positions(keys: pa.Array | pa.ChunkedArray, values: list[str]) -> pa.Array:
    return pc.index_in(keys, value_set=pa.array(values, type=pa.string()))


def prepare_sample(
    request_path: str | os.PathLike[str],
    *,
    list_path: str | os.PathLike[str],
    source: str,
    extract: str | os.PathLike[str],
    trust: TrustRoot,
    key: SecretKey,
    state_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    outcomes: str | os.PathLike[str] | None = None,
    k: int | None = None,
    progress: Callable[[str], None] | None = None,
    rng_seed: int | None = None,
) -> PreparedSample:
    """Prepare, check, sign and seal this body's sample of ``source``; or refuse.

    ``k`` may raise the request's k-anonymity target, never lower it. ``rng_seed`` fixes
    the row shuffle (tests only). Nothing is written if any check fails; refusals raise
    :class:`RuntimeRefused` (or a subclass, or a signature / trust / envelope error:
    exit 3) and bad input :class:`RuntimeInputError` (exit 2).
    """
    say = progress or (lambda _m: None)
    code = source.strip().upper()
    details: dict[str, object] = {"source": code}
    with audit_scope(state_dir, key.name, "sample_prepared", str(request_path), details) as scope:
        verified = verify_request(request_path, trust)
        request = verified.request
        scope.subject = request.request_id
        say(f"request {request.request_id}: signed by {verified.signer.name}, verified")
        spec = get_source(code)  # an unknown code is a typo (exit 2), not a refusal
        body = trust.require_signer(key.key_id, roles={Role.BODY, Role.TAX_BODY}, source=code)
        if body.name not in request.recipients:
            raise RuntimeRefused(
                f"request {request.request_id}: body {body.name!r} is not among its "
                f"recipients ({', '.join(request.recipients)})",
                code="not_a_recipient",
            )
        fields = _requested_fields(request, spec)
        target_k = request.k_anonymity
        if k is not None:
            if isinstance(k, bool) or not isinstance(k, int) or k < target_k:
                raise RuntimeInputError(
                    f"--k {k}: may only raise the request's k-anonymity target "
                    f"({target_k}); expected an integer >= {target_k}",
                    code="bad_k",
                )
            target_k = k
        if outcomes is None and code == "TAX" and body.role is Role.TAX_BODY:
            raise RuntimeInputError(
                "--outcomes: the tax body's TAX sample carries the training targets; expected "
                "the outcomes file (bin + outcome_<index> columns), found none (the lab "
                "would refuse the sample without them)",
                code="outcomes_missing",
            )
        if outcomes is not None and (code != "TAX" or body.role is not Role.TAX_BODY):
            raise RuntimeInputError(
                f"--outcomes: only the tax body's TAX sample carries outcomes; this is "
                f"{body.name!r}'s {code} sample",
                code="outcomes_not_allowed",
            )
        lab = trust.party(request.lab)
        trust.require_signer(lab.key.key_id, roles={Role.LAB})

        id_list, sender = open_list(list_path, request=request, trust=trust, key=key)
        scope.details["list_id"] = id_list.list_id
        listed = len(id_list.identifiers)
        say(f"list {id_list.list_id}: {listed:,} entities, from {sender.name}")

        ext = read_extract(extract, spec, fields=fields, keep=set(id_list.identifiers))
        table = ext.table
        absent = listed - table.num_rows
        say(
            f"extract {ext.path}: {ext.rows_read:,} rows checked, {table.num_rows:,} listed "
            f"entities found, {absent:,} listed entities absent"
        )
        pos = _positions(table.column("bin"), list(id_list.identifiers))
        rid = pc.take(pa.array(id_list.random_ids, type=pa.string()), pos)
        sample = table.drop_columns(["bin"]).add_column(0, RID_COLUMN, rid)
        if outcomes is not None:
            bins = table.column("bin").to_pylist()
            oc = read_outcomes(outcomes, keep=set(bins))
            order = _positions(table.column("bin"), oc.column("bin").to_pylist())
            for f in outcome_fields():
                sample = sample.append_column(f.name, pc.take(oc.column(f.name), order))
            say(f"outcomes {outcomes}: {len(outcome_fields())} outcome columns joined")

        direct, quasi, amounts = source_depersonalisation_plan(spec, columns=fields)
        out, report = depersonalise(
            sample,
            key=RID_COLUMN,
            direct_identifiers=direct,
            quasi_identifiers=quasi,
            amounts=amounts,
            k=target_k,
            rng_seed=rng_seed,
        )
        say(
            f"depersonalised: {report.rows_out:,} rows, k {report.k_achieved} "
            f"(target {report.k_target}), {len(report.removed_columns)} columns removed"
        )

        sink = pa.BufferOutputStream()
        pq.write_table(out, sink)
        payload = sink.getvalue().to_pybytes()
        manifest = SampleManifest(
            sample_id=new_record_id("smp"),
            request_id=request.request_id,
            list_id=id_list.list_id,
            source=code,
            body=body.name,
            created_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
            row_count=out.num_rows,
            columns=tuple(out.column_names),
            file=f"{request.request_id}.{code}.parquet",
            sha256=sha256_bytes(payload),
            report=report,
        )
        manifest.validate()
        blob = seal(
            payload,
            sender=key,
            recipient=lab.key,
            kind=SAMPLE_KIND,
            meta={"manifest": manifest.canonical_bytes().decode("utf-8")},
        )
        dest = _atomic.write_bytes(Path(out_dir) / sample_file_name(request.request_id, code), blob)
        say(f"wrote {dest} (sealed to {lab.name})")
        result = PreparedSample(
            file=dest,
            manifest=manifest,
            listed=listed,
            absent=absent,
            extract_rows=ext.rows_read,
            outcomes=outcomes is not None,
        )
        scope.log.append(
            scope.action,
            request.request_id,
            "ok",
            {
                **scope.details,
                "sample_id": manifest.sample_id,
                "rows": manifest.row_count,
                "listed": listed,
                "absent": absent,
                "k_target": report.k_target,
                "k_achieved": report.k_achieved,
                "sha256": manifest.sha256,
                "outcomes": result.outcomes,
                "file": dest.name,
            },
        )
    return result
