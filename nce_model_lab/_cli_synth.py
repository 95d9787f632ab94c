"""``nce-lab synth``: write a synthetic economy to a directory.

The command is a thin layer over :mod:`sample_protocol.synthetic`; register it with
``app.command("synth")(synth)``.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from sample_protocol.catalogue import source_codes
from sample_protocol.cli_support import EXIT_USAGE, echo_error, emit_json
from sample_protocol.errors import ProtocolError
from sample_protocol.synthetic import (
    check_output_dir,
    generate_economy,
    read_summary,
    write_economy,
)

__all__ = ["parse_sources", "synth"]

PROG = "nce-lab"
_ALL_SOURCES = ", ".join(source_codes())


def parse_sources(values: list[str] | None) -> list[str] | None:
    """Accept repeated ``--sources`` and comma-separated lists; ``None`` means all."""
    if not values:
        return None
    codes = [part.strip().upper() for value in values for part in value.split(",")]
    return [code for code in codes if code]


def synth(
    entities: int = typer.Option(
        20_000,
        "--entities",
        "-n",
        help="Number of business entities (1 to 10,000,000; about 2 in 3 are entrepreneurs).",
    ),
    seed: int = typer.Option(
        0, "--seed", help="Random seed: the same seed and entity count give the same economy."
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Directory to write: sources/<CODE>.parquet, truth/truth.parquet, economy.json.",
    ),
    sources: list[str] | None = typer.Option(
        None,
        "--sources",
        "-s",
        metavar="CODE[,CODE...]",
        help=(
            "Generate only these sources (repeat, or separate with commas). "
            f"Default: all of {_ALL_SOURCES}."
        ),
    ),
    force: bool = typer.Option(False, "--force", help="Replace the contents of a non-empty OUT."),
    as_json: bool = typer.Option(False, "--json", help="Print the economy's summary as JSON."),
) -> None:
    """Generate a synthetic economy shaped like Kazakhstan's, with its truth kept apart.

    The truth (each entity's outcome and true probability for every index) goes to
    OUT/truth/, away from the source tables, so that no model reads it by mistake.
    """
    started = time.perf_counter()

    def progress(message: str) -> None:
        typer.echo(f"{PROG} synth: {message}", err=True)

    try:
        check_output_dir(out, overwrite=force)
        economy = generate_economy(entities, seed, parse_sources(sources), progress=progress)
        progress(f"writing {out}")
        write_economy(economy, out, overwrite=force)
        summary = read_summary(out)
    except ProtocolError as exc:
        echo_error(PROG, str(exc), exc.code)
        raise typer.Exit(exc.exit_code) from None
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        echo_error(PROG, f"{exc.strerror or exc}{where}", "os_error")
        raise typer.Exit(EXIT_USAGE) from None
    if as_json:
        emit_json({"out": str(out), **summary.to_dict()})
        return
    elapsed = time.perf_counter() - started
    typer.echo(
        f"wrote {summary.n_entities:,} entities, {len(summary.sources)} sources to {out} "
        f"in {elapsed:.1f} s (seed {summary.seed})"
    )
    for index, rate in summary.outcome_rates.items():
        auc = summary.oracle_auc.get(index)
        auc_text = f"{auc:.3f}" if auc is not None else "n/a"
        typer.echo(f"  {index:<20} outcome rate {rate:6.1%}   oracle AUC {auc_text}")
    typer.echo(f"  truth: {out / 'truth' / 'truth.parquet'} (never a model input)")
