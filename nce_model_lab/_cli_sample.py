"""``nce-lab sample request``, ``nce-lab sample ingest`` and ``nce-lab status``.

Thin commands over :mod:`~nce_model_lab.sample_request`,
:mod:`~nce_model_lab.sample_ingest` and :mod:`~nce_model_lab.status`; mount them with
``register(app)``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from sample_protocol.cli_support import EXIT_REFUSED, App, echo_error, emit_json
from sample_protocol.keys import load_public_key, load_secret_key
from sample_protocol.signing import signature_path
from sample_protocol.trust import TrustRoot, load_trust_root

from .errors import LabError
from .labdir import LabDir
from .sample_ingest import IngestResult, ingest_samples
from .sample_request import (
    ANSWER_BUSINESS_DAYS,
    DEFAULT_SAMPLE_SIZE,
    create_sample_request,
    read_fields_file,
)
from .status import LabStatus, lab_status
from .training_table import Coverage

__all__ = ["register", "sample_ingest", "sample_request", "status"]

KeyOpt = Annotated[Path, typer.Option("--key", help="The lab's secret key (NCE-LAB.key).")]
TrustOpt = Annotated[
    Path, typer.Option("--trust", help="The signed trust root (trust.json + .minisig).")
]
RootPubOpt = Annotated[
    Path, typer.Option("--root-pub", help="The pinned public key of the NCE root key.")
]
LabDirOpt = Annotated[
    Path, typer.Option("--lab-dir", help="The lab directory (requests, samples, audit log).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise LabError(
            f"{option}: expected a date YYYY-MM-DD, found {value!r}", code="bad_option"
        ) from None


def _codes(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    codes = [p.strip().upper() for v in values for p in v.split(",")]
    return [c for c in codes if c] or None


def _trust(trust: Path, root_pub: Path, lab_dir: Path) -> TrustRoot:
    LabDir(lab_dir).ensure()
    return load_trust_root(trust, root_public=load_public_key(root_pub), state_dir=lab_dir)


def sample_request(
    key: KeyOpt,
    trust: TrustOpt,
    root_pub: RootPubOpt,
    lab_dir: LabDirOpt,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Outbox directory: <request_id>.json + .minisig.")
    ],
    sources: Annotated[
        list[str] | None,
        typer.Option(
            "--sources",
            "-s",
            metavar="CODES",
            help="Sources to request (repeat, or separate with commas); TAX is always "
            "added. Default: every source the rules require.",
        ),
    ] = None,
    fields_file: Annotated[
        Path | None,
        typer.Option(
            "--fields-file",
            help='JSON {"SOURCE": ["field", ...]}: ask only these fields of these sources '
            "(others: all model fields). Direct identifiers are never requested.",
        ),
    ] = None,
    size: Annotated[
        int, typer.Option("--size", "-n", help="Entities the tax body draws.")
    ] = DEFAULT_SAMPLE_SIZE,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="Observation date YYYY-MM-DD (default: HORIZON months before sending)."
        ),
    ] = None,
    sent_on: Annotated[
        str | None, typer.Option("--sent-on", help="Sending date YYYY-MM-DD (default: today).")
    ] = None,
    horizon: Annotated[
        int, typer.Option("--horizon", help="Outcome horizon after the as-of date, in months.")
    ] = 12,
    k: Annotated[int, typer.Option("--k", help="k of k-anonymity the bodies must reach.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Write a signed sample request for the state bodies (step 1 of a sample round).

    The due date is 10 business days after sending, on the Kazakhstan calendar; the
    recipients are the trust root's bodies that own a requested source (always the tax
    body). The request also goes to LAB/requests/ for `sample ingest` and `status`.
    """
    fields = read_fields_file(fields_file) if fields_file is not None else None
    lab_key = load_secret_key(key)
    root = _trust(trust, root_pub, lab_dir)
    request, path = create_sample_request(
        lab_key=lab_key,
        trust=root,
        lab_dir=lab_dir,
        out=out,
        sources=_codes(sources),
        fields=fields,
        sample_size=size,
        as_of=_date(as_of, "--as-of"),
        sent_on=_date(sent_on, "--sent-on"),
        horizon_months=horizon,
        k_anonymity=k,
    )
    if as_json:
        emit_json(
            {
                "request": request,
                "file": str(path),
                "signature": str(signature_path(path)),
                "lab_copy": str(LabDir(lab_dir).request_path(request.request_id)),
            }
        )
        return
    typer.echo(
        f"wrote sample request {request.request_id}: {request.sample_size:,} entities, "
        f"{len(request.sources)} sources, {len(request.recipients)} recipients"
    )
    typer.echo(
        f"  sent on {request.sent_on}, due {request.due_date} "
        f"({ANSWER_BUSINESS_DAYS} business days, Kazakhstan calendar); as of {request.as_of}, "
        f"horizon {request.horizon_months} months, k={request.k_anonymity}"
    )
    typer.echo(f"  {path}  (+ .minisig): send it to {', '.join(request.recipients)}")


def _print_coverage(cov: Coverage) -> None:
    typer.echo(
        f"training table {cov.training_file}: {cov.rids:,} rows "
        f"({cov.sample_size:,} requested), {len(cov.outcomes)} outcome columns"
    )
    for s in cov.sources:
        typer.echo(f"  {s.source:<16} {s.rows:>9,} rows  {s.share:7.1%}  from {s.body}")
    typer.echo(f"  entities with all {len(cov.sources)} received sources: {cov.complete_rows:,}")
    if cov.missing:
        typer.echo(f"  not received yet: {', '.join(cov.missing)}")


def _print_ingest(result: IngestResult) -> None:
    for o in result.outcomes:
        if o.accepted:
            typer.echo(f"accepted  {o.file}: {o.source} from {o.body}, {o.rows:,} rows")
        else:
            typer.echo(f"REFUSED   {o.file} [{o.code}]")
            echo_error("nce-lab", o.message, o.code)
    for cov in result.coverage:
        _print_coverage(cov)


def sample_ingest(
    files: Annotated[
        list[Path], typer.Argument(help="Sample envelopes (<request>.<SOURCE>.sample).")
    ],
    key: KeyOpt,
    trust: TrustOpt,
    root_pub: RootPubOpt,
    lab_dir: LabDirOpt,
    as_json: JsonOpt = False,
) -> None:
    """Open, check and store the bodies' samples; re-join the training table (step 4).

    Each file is accepted whole or refused whole (nothing of it stored) with a specific
    code, and recorded in LAB/audit.log. Exit 3 if any file was refused.
    """
    lab_key = load_secret_key(key)
    root = _trust(trust, root_pub, lab_dir)
    result = ingest_samples(files, lab_key=lab_key, trust=root, lab_dir=lab_dir)
    if as_json:
        emit_json(
            {
                **result.to_dict(),
                "accepted_count": len(result.accepted),
                "refused_count": len(result.refused),
            }
        )
    else:
        _print_ingest(result)
    if result.refused:
        raise typer.Exit(EXIT_REFUSED)


def _print_status(st: LabStatus) -> None:
    typer.echo(f"lab status on {st.today}: {len(st.requests)} request(s)")
    for r in st.requests:
        left = (
            f"{r.business_days_left} business days left"
            if r.business_days_left >= 0
            else f"{-r.business_days_left} business days past due"
        )
        typer.echo(
            f"{r.request_id}  sent {r.sent_on}  due {r.due_date}  {r.state.upper()}"
            + ("" if r.state == "complete" else f" ({left})")
        )
        typer.echo(
            f"  answered {len(r.answered)}, pending {len(r.pending)}, overdue {len(r.overdue)}"
        )
        for b in r.bodies:
            note = ""
            if b.state == "answered":
                note = f" on {b.answered_on}" + (
                    f", {b.business_days_late} business days late" if b.late else ""
                )
            elif b.state == "overdue":
                note = f" by {b.business_days_late} business days"
            got = f"{len(b.received)}/{len(b.sources)} sources"
            typer.echo(f"    {b.body:<24} {b.state:<9} {got}{note}")
        if r.training_file:
            typer.echo(f"  training table: {r.training_file}")
    refit = st.next_refit_due.isoformat() if st.next_refit_due else "not scheduled"
    flag = " (OVERDUE)" if st.refit_overdue else ""
    typer.echo(f"next refit due: {refit}{flag}: {st.refit_basis}")


def status(
    lab_dir: LabDirOpt,
    today: Annotated[
        str | None, typer.Option("--today", help="Take this date YYYY-MM-DD as today.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show each sample request's bodies (answered, pending, overdue) and the next refit."""
    result = lab_status(lab_dir, today=_date(today, "--today"))
    if as_json:
        emit_json(result)
        return
    _print_status(result)


def register(app: App) -> None:
    """Mount ``sample request``, ``sample ingest`` and ``status`` on ``app``."""
    sample = App(prog=app.prog, help="Request depersonalised samples and ingest the answers.")
    sample.command("request")(sample_request)
    sample.command("ingest")(sample_ingest)
    app.add_typer(sample, name="sample")
    app.command("status")(status)
