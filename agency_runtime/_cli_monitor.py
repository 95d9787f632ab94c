"""``agency-runtime monitor``: population drift (PSI) against the bundle's references.

Thin over :func:`agency_runtime.monitor.monitor_population`. The table (or, with
``--json``, the report) goes to standard output, progress lines to standard error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sample_protocol.cli_support import App, emit_json
from sample_protocol.keys import load_public_key, load_secret_key
from sample_protocol.monitoring import ACT, WATCH, DriftReport
from sample_protocol.trust import load_trust_root

from .monitor import MonitorReport, monitor_population

__all__ = ["format_table", "monitor_command", "register"]


def _rows(drift: DriftReport) -> list[tuple[str, str, float, str, float]]:
    items = sorted(drift.features, key=lambda f: (-f.psi, f.name))
    return [
        (drift.model, c.name, c.psi, c.flag.value, c.missing_share) for c in (drift.score, *items)
    ]


def format_table(report: MonitorReport) -> str:
    """The report as a plain-text table: per model its probability, then its columns by PSI."""
    lines = [
        f"release {report.release_id} (sequence {report.sequence}), source {report.source}: "
        f"{report.rows:,} rows of {report.input_file}; overall {report.flag.value.upper()} "
        f"(PSI > {WATCH:.2f} watch, > {ACT:.2f} act)",
        "",
        f"{'model':<34} {'column':<40} {'PSI':>8}  {'flag':<6} {'missing':>8}",
    ]
    for drift in report.models:
        for i, (model, column, value, flag, missing) in enumerate(_rows(drift)):
            shown = model if i == 0 else ""
            lines.append(f"{shown:<34} {column:<40} {value:>8.4f}  {flag:<6} {missing:>8.1%}")
    return "\n".join(lines)


def monitor_command(
    bundle: Annotated[
        Path, typer.Argument(help="The release bundle for this body's source (a directory).")
    ],
    input_file: Annotated[
        Path, typer.Argument(help="This body's population to check (.parquet or .csv).")
    ],
    trust: Annotated[Path, typer.Option("--trust", help="The signed trust root (trust.json).")],
    root_pub: Annotated[
        Path, typer.Option("--root-pub", help="The pinned root public key (nce-root.pub).")
    ],
    source: Annotated[
        str, typer.Option("--source", help="This body's source code (the bundle's audience).")
    ],
    state: Annotated[
        Path, typer.Option("--state", help="This body's state directory (audit log, rollback).")
    ],
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            help="This body's secret key (BODY.key): names the body in the audit log and "
            "proves it owns the source (default: the source's owner in the trust root).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the JSON report here (atomically; only on success)."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON instead of a table.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """Check how far this body's population has drifted from the model's training data.

    Verifies BUNDLE first (as `verify` does), then streams INPUT, and computes the
    population stability index (PSI) of every model input and of every model's
    probability against the reference distributions signed into the bundle. PSI above
    0.10 is flagged "watch", above 0.25 "act". Only aggregates are written (PSI, flags,
    missing shares, row counts), never a row; the run is appended to STATE/audit.log.
    """

    def say(message: str) -> None:
        if not quiet:
            typer.echo(f"agency-runtime: {message}", err=True)

    secret = None if key is None else load_secret_key(key)
    state.mkdir(parents=True, exist_ok=True)
    root = load_trust_root(trust, root_public=load_public_key(root_pub), state_dir=state)
    report = monitor_population(
        bundle,
        input_file,
        trust=root,
        key=secret,
        source=source,
        state_dir=state,
        out=out,
        progress=say,
    )
    if json_output:
        emit_json(report.to_dict())
        return
    typer.echo(format_table(report))
    if out is not None:
        typer.echo(f"\nreport written to {out}")


def register(app: App) -> None:
    """Add ``monitor`` to ``app``."""
    app.command("monitor")(monitor_command)
