"""``nce-lab demo``: one whole round on a synthetic economy, every party played."""

from __future__ import annotations

from pathlib import Path

import typer

from sample_protocol.cli_support import App, emit_json

from .demo import run_demo


def register(app: App) -> None:
    @app.command("demo")
    def demo(
        out: Path | None = typer.Option(
            None, "--out", "-o", help="Directory to keep (default: a fresh temporary one)."
        ),
        entities: int = typer.Option(50_000, "--entities", "-n", help="Size of the economy."),
        seed: int = typer.Option(1, "--seed", help="Seed of the synthetic economy."),
        sample_size: int | None = typer.Option(
            None,
            "--sample-size",
            help="Entities in the test sample (default: half, at most 20,000).",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Play every party of one federated round on a synthetic economy.

        Each party's step runs that party's own command-line tool in its own process: keys
        and trust root, the sample request, the bodies' sealed samples, the lab's training
        and signed release, every preliminary body scoring its whole population, and the
        register ingesting the batches and direct feeds, combining and issuing a signed
        report. The summary ends with each index's AUC on the synthetic truth: the
        register's final probability over every entity outside the training sample, the
        lab's held-out combiner and the oracle (the truth's own probability).
        """

        def say(message: str) -> None:
            typer.echo(message, err=as_json)

        result = run_demo(out, entities=entities, seed=seed, sample_size=sample_size, progress=say)
        if as_json:
            emit_json(result.to_dict())
            return
        typer.echo("")
        typer.echo(f"One round in {result.seconds:.0f} s, in {result.out}")
        typer.echo(
            f"  request {result.request_id}: {result.sample_size:,} of "
            f"{result.entities:,} entities sampled"
        )
        typer.echo(
            f"  training table: {result.training_rows:,} rows x "
            f"{result.training_columns} columns, keyed by random ID only"
        )
        typer.echo(f"    {result.training_table}")
        typer.echo("")
        typer.echo(f"  {'index':<22} {'outcome rate':>12} {'oracle AUC':>11}")
        for index, rate in result.outcome_rates.items():
            auc = result.oracle_auc.get(index)
            auc_text = "-" if auc is None else f"{auc:.3f}"
            typer.echo(f"  {index:<22} {rate:>12.1%} {auc_text:>11}")
        typer.echo("")
        typer.echo(f"  {'model (held-out)':<36} {'family':<10} {'AUC':>6} {'ECE':>6}")
        for m in result.models:
            typer.echo(f"  {m['name']:<36} {m['family']:<10} {m['auc']:>6.3f} {m['ece']:>6.3f}")
        typer.echo("")
        typer.echo(f"  release {result.release_id}: {len(result.bundles)} signed bundles")
        for bundle in result.bundles:
            typer.echo(f"    {bundle}")
        typer.echo("")
        typer.echo(
            f"  scored by the bodies: {len(result.batches)} sealed batches; direct feeds at "
            f"the register: {len(result.direct_feeds)}"
        )
        typer.echo("")
        typer.echo(
            f"  {'index':<22} {'federated':>9} {'lab':>6} {'oracle':>6}   "
            f"{'low':>6} {'medium':>6} {'high':>6}"
        )
        for row in result.indexes:
            cats = row["categories"]
            typer.echo(
                f"  {row['index']:<22} {_num(row['federated_auc']):>9} "
                f"{_num(row['lab_auc']):>6} {_num(row['oracle_auc']):>6}   "
                + " ".join(f"{cats.get(c, 0.0):>6.1%}" for c in ("low", "medium", "high"))
            )
        typer.echo("  (AUC on the synthetic truth: federated = the register's final probability")
        typer.echo("   on every entity outside the training sample; lab = the combiner on its")
        typer.echo("   held-out sample rows)")
        typer.echo("")
        if result.model_card:
            typer.echo(f"  model card:        {result.model_card}")
        typer.echo(f"  register database: {result.register_db}")
        typer.echo(f"  signed report:     {result.report}")
        typer.echo("")
        typer.echo("  The synthetic truth is in economy/truth/, apart from every source table.")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
