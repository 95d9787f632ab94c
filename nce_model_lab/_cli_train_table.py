"""``nce-lab train-table``: a model of any table with a binary target, as a signed bundle.

A thin command over :func:`~nce_model_lab.generic.train_table`; mount it with
``register(app)``. Exit codes: 2 for a bad table or option (missing column, target not
binary, repeated id, unreadable file, a key readable by others), 3 when the export fails
its parity check or a category value holds a BIN/IIN. Nothing is written on error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sample_protocol.cli_support import App, emit_json
from sample_protocol.keys import load_public_key, load_secret_key
from sample_protocol.trust import TrustRoot, load_trust_root

from .errors import LabError
from .generic import DEFAULT_INDEX, DEFAULT_SOURCE, TableTraining, train_table

__all__ = ["register", "train_table_command"]


def _print(result: TableTraining) -> None:
    ev = result.evaluation
    typer.echo(
        f"trained {result.source}.{result.index} on {result.table}: {result.n_rows:,} rows, "
        f"{result.n_events:,} events ({result.target} = {result.positive!r}), "
        f"{len(result.features)} features"
    )
    folds = ", ".join(f"{a:.3f}" for a in result.cv_auc)
    typer.echo(f"  {result.cv_folds}-fold cross-validated AUC {result.cv_auc_mean:.3f} ({folds})")
    typer.echo(
        f"  out-of-fold: KS {ev.ks:.3f}, Brier {ev.brier:.4f}, ECE {ev.ece:.4f}; family "
        f"{result.family} (validation AUC hgb {result.selection.hgb_auc:.3f}, scorecard "
        f"{result.selection.scorecard_auc:.3f})"
    )
    cut = result.cutoffs
    typer.echo(f"  cut-offs: medium from p = {cut.medium_from:.4f}, high from {cut.high_from:.4f}")
    typer.echo(
        f"  ONNX parity: max diff {result.parity.max_abs_diff:.1e} on {result.parity.n_rows:,} rows"
    )
    if result.outside_contract:
        shown = ", ".join(result.outside_contract[:6])
        more = " ..." if len(result.outside_contract) > 6 else ""
        typer.echo(
            f"  note: {len(result.outside_contract)} feature(s) are not fields of the "
            f"{result.source} catalogue contract ({shown}{more}); agency-runtime score reads a "
            "body's extract by that contract"
        )
    for column, why in result.dropped.items():
        typer.echo(f"  not a feature: {column} ({why})")
    typer.echo(
        f"  wrote release {result.release_id} (sequence {result.sequence}, audience "
        f"{result.source}) to {result.bundle}"
    )


def train_table_command(
    data: Annotated[Path, typer.Argument(help="The table: a CSV file with a header, or Parquet.")],
    target: Annotated[
        str, typer.Option("--target", help="The binary outcome column (0/1, true/false).")
    ],
    id_column: Annotated[
        str, typer.Option("--id", help="The id column: one row per id, never a feature.")
    ],
    key: Annotated[Path, typer.Option("--key", help="The lab's secret key (NCE-LAB.key).")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The bundle directory to write (new or empty).")
    ],
    index: Annotated[
        str, typer.Option("--index", help="The scoring index the model estimates.")
    ] = DEFAULT_INDEX,
    source: Annotated[
        str,
        typer.Option(
            "--source", help="Catalogue code of the body the bundle is for (its audience)."
        ),
    ] = DEFAULT_SOURCE,
    positive: Annotated[
        str | None,
        typer.Option("--positive", help="The target value that is the event, if not 1/true."),
    ] = None,
    drop: Annotated[
        list[str] | None,
        typer.Option("--drop", help="A column to leave out of the features (repeatable)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the folds and the models.")] = 0,
    trust: Annotated[
        Path | None,
        typer.Option("--trust", help="Signed trust root: check that the key is a lab's."),
    ] = None,
    root_pub: Annotated[
        Path | None,
        typer.Option("--root-pub", help="The pinned NCE root public key (with --trust)."),
    ] = None,
    lab_dir: Annotated[
        Path | None,
        typer.Option("--lab-dir", help="Number the release after the lab's, and record it."),
    ] = None,
    sequence: Annotated[
        int | None,
        typer.Option("--sequence", help="Release sequence (default: next of --lab-dir, or 1)."),
    ] = None,
    valid_days: Annotated[
        int, typer.Option("--valid-days", help="Days until the bundle expires.")
    ] = 365,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train a model on any table with a binary target; write a signed release bundle.

    Every column but the id and the target is a feature: numbers, true/false, dates and
    text (categories), missing values allowed. The family (gradient boosting or
    scorecard) is chosen and calibrated as for a round, evaluated by 5-fold
    cross-validation (AUC, KS, Brier, ECE on out-of-fold probabilities, from which the
    cut-offs and the 1-99 scale come), refitted on every row, exported to ONNX and
    parity-checked. The bundle is addressed to the body --source (default TAX) and
    scores the index --index (default financial_stability); `agency-runtime score
    --source CODE` runs it on an extract keyed by BIN/IIN whose feature columns are that
    source's catalogue fields (other columns cannot be scored). Exit 2 for a bad table or
    option, 3 if the parity check fails; nothing is written on error.
    """
    if (trust is None) != (root_pub is None):
        raise LabError(
            "--trust and --root-pub go together: give both or neither", code="bad_option"
        )
    lab_key = load_secret_key(key)
    root: TrustRoot | None = None
    if trust is not None and root_pub is not None:
        root = load_trust_root(trust, root_public=load_public_key(root_pub), state_dir=lab_dir)
    result = train_table(
        data,
        target=target,
        id_column=id_column,
        lab_key=lab_key,
        out_dir=out,
        index=index,
        source=source,
        positive=positive,
        drop=tuple(drop or ()),
        seed=seed,
        trust=root,
        lab_dir=lab_dir,
        sequence=sequence,
        valid_days=valid_days,
    )
    if as_json:
        emit_json(result)
        return
    _print(result)


def register(app: App) -> None:
    """Mount ``train-table`` on ``app``."""
    app.command("train-table")(train_table_command)
