"""``agency-runtime issue-list`` and ``prepare-sample``: thin commands over the library.

Progress lines go to standard error; the summary goes to standard output (as JSON with
``--json``). Exit codes: 0 done, 2 bad input, 3 refused (see ``cli_support``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from sample_protocol.cli_support import App, emit_json

from .issue_list import issue_lists
from .prepare_sample import prepare_sample
from .sample_round import load_party

__all__ = ["issue_list_command", "prepare_sample_command", "register"]

Request = Annotated[
    Path, typer.Argument(help="The lab's REQUEST.json (REQUEST.json.minisig beside it).")
]
Trust = Annotated[Path, typer.Option("--trust", help="The signed trust root (trust.json).")]
RootPub = Annotated[
    Path, typer.Option("--root-pub", help="The pinned root public key (nce-root.pub).")
]
State = Annotated[
    Path, typer.Option("--state", help="This body's state directory (audit log, mappings).")
]
Out = Annotated[Path, typer.Option("--out", help="Directory to write into.")]
Json = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")]


def _progress(quiet: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if not quiet:
            typer.echo(f"agency-runtime: {message}", err=True)

    return say


def issue_list_command(
    request: Request,
    trust: Trust,
    root_pub: RootPub,
    key: Annotated[Path, typer.Option("--key", help="The tax body's secret key (tax-body.key).")],
    register_file: Annotated[
        Path,
        typer.Option("--register", help="The register extract (TAX source, .parquet or .csv)."),
    ],
    state: State,
    out: Out,
    stratify: Annotated[
        str | None,
        typer.Option("--stratify", help="Draw in proportion to this categorical TAX field."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Issue again for a request already issued (a new draw)."),
    ] = False,
    json_output: Json = False,
    quiet: Quiet = False,
) -> None:
    """Draw the random list of a sample request and seal one copy per recipient body.

    The BIN/IIN -> random ID mapping stays in STATE/mappings/<request_id>.parquet (0600).
    """
    say = _progress(quiet)
    secret, root = load_party(key, trust, root_pub, state)
    issued = issue_lists(
        request,
        trust=root,
        key=secret,
        register=register_file,
        state_dir=state,
        out_dir=out,
        stratify=stratify,
        force=force,
        progress=say,
    )
    if json_output:
        emit_json(issued.to_dict())
        return
    typer.echo(
        f"issued list {issued.list_id} for request {issued.request_id}: "
        f"{issued.entities:,} entities drawn from {issued.register_rows:,}, "
        f"{len(issued.files)} sealed lists in {out}"
        + (" (replaced the earlier list)" if issued.replaced else "")
    )
    for name, count in sorted(issued.strata.items()):
        typer.echo(f"  stratum {issued.stratify}={name}: {count:,}")
    typer.echo(f"mapping kept in {issued.mapping}")


def prepare_sample_command(
    request: Request,
    list_file: Annotated[
        Path,
        typer.Option("--list", help="The tax body's sealed list for this body (<body>.ridlist)."),
    ],
    source: Annotated[str, typer.Option("--source", help="The source code, e.g. STATS.")],
    extract: Annotated[
        Path,
        typer.Option("--extract", help="This body's extract of the source (.parquet or .csv)."),
    ],
    trust: Trust,
    root_pub: RootPub,
    key: Annotated[Path, typer.Option("--key", help="This body's secret key (BODY.key).")],
    state: State,
    out: Out,
    outcomes: Annotated[
        Path | None,
        typer.Option("--outcomes", help="Tax body, TAX sample: bin + outcome_<index> columns."),
    ] = None,
    k: Annotated[
        int | None,
        typer.Option("--k", help="k-anonymity target; may only raise the request's."),
    ] = None,
    json_output: Json = False,
    quiet: Quiet = False,
) -> None:
    """Prepare this body's depersonalised sample of one source, sealed to the lab.

    Writes OUT/<request_id>.<SOURCE>.sample, or nothing if any check fails.
    """
    say = _progress(quiet)
    secret, root = load_party(key, trust, root_pub, state)
    prepared = prepare_sample(
        request,
        list_path=list_file,
        source=source,
        extract=extract,
        trust=root,
        key=secret,
        state_dir=state,
        out_dir=out,
        outcomes=outcomes,
        k=k,
        progress=say,
    )
    if json_output:
        emit_json(prepared.to_dict())
        return
    m = prepared.manifest
    typer.echo(
        f"prepared sample {m.sample_id} ({m.source}) for request {m.request_id}: "
        f"{prepared.rows:,} rows of {prepared.listed:,} listed entities "
        f"({prepared.absent:,} not in the extract), k {m.report.k_achieved} "
        f"(target {m.report.k_target})"
    )
    typer.echo(f"sealed to the lab: {prepared.file}")


def register(app: App) -> None:
    """Add ``issue-list`` and ``prepare-sample`` to ``app``."""
    app.command("issue-list")(issue_list_command)
    app.command("prepare-sample")(prepare_sample_command)
