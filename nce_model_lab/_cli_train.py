"""``nce-lab train`` and ``nce-lab release``.

Thin commands over :func:`~nce_model_lab.release.train_round` and
:func:`~nce_model_lab.release.release_round`; mount them with ``register(app)``.
Exit codes: 2 for an unknown request or a round without a training table (or not yet
trained), 3 when an ONNX export fails its parity check (nothing written).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sample_protocol.cli_support import App, emit_json
from sample_protocol.keys import load_public_key, load_secret_key
from sample_protocol.trust import load_trust_root

from .labdir import LabDir
from .release import TrainedRound, release_round, train_round

__all__ = ["register", "release", "train"]

LabDirOpt = Annotated[
    Path, typer.Option("--lab-dir", help="The lab directory (requests, samples, models).")
]
RequestOpt = Annotated[
    str, typer.Option("--request", help="The sample request (round) id, req-YYYYMMDD-....")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _print_round(trained: TrainedRound, models_dir: Path) -> None:
    split = trained.split
    typer.echo(
        f"trained round {trained.request_id} (seed {trained.seed}): {split['train']:,} "
        f"training, {split['validation']:,} validation, {split['test']:,} test rows"
    )
    typer.echo(f"  {'model':<36} {'family':<10} {'AUC':>6} {'ECE':>6}  parity")
    for m in trained.models:
        ev, par = m.evaluation, m.parity
        verdict = "ok" if par.passed else "FAILED"
        typer.echo(
            f"  {m.name:<36} {m.family:<10} {ev.auc:6.3f} {ev.ece:6.3f}  "
            f"{verdict} (max diff {par.max_abs_diff:.1e})"
        )
    for name, why in trained.skipped.items():
        typer.echo(f"  {name:<36} skipped: {why}")
    typer.echo(f"  models written to {models_dir}")


def train(
    lab_dir: LabDirOpt,
    request: RequestOpt,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split and the models.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Train, evaluate and export every model of a round (step 5).

    Splits LAB/rounds/<id>/training.parquet 60/20/20, trains the preliminary models and
    combiners, derives cut-offs and the score scale on the validation rows, evaluates on
    the test rows and checks ONNX parity; writes LAB/rounds/<id>/models/. Exit 3 (nothing
    written) if a model fails parity.
    """
    trained = train_round(lab_dir, request, seed=seed)
    models_dir = LabDir(lab_dir).round_dir(request) / "models"
    if as_json:
        emit_json({"round": trained, "models_dir": str(models_dir)})
        return
    _print_round(trained, models_dir)


def release(
    lab_dir: LabDirOpt,
    request: RequestOpt,
    key: Annotated[Path, typer.Option("--key", help="The lab's secret key (NCE-LAB.key).")],
    trust: Annotated[
        Path, typer.Option("--trust", help="The signed trust root (trust.json + .minisig).")
    ],
    root_pub: Annotated[
        Path, typer.Option("--root-pub", help="The pinned public key of the NCE root key.")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for OUT/<release_id>/<AUDIENCE>/.")
    ],
    valid_days: Annotated[
        int, typer.Option("--valid-days", help="Days until the bundles expire.")
    ] = 365,
    sequence: Annotated[
        int | None,
        typer.Option("--sequence", help="Release sequence (default: 1 + the highest recorded)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the signed release bundles of a trained round (step 6).

    One bundle per preliminary source (for that body) and one for the register (the
    combiners), each with its models, feature specs, cut-offs and parity fixture.
    """
    lab_key = load_secret_key(key)
    LabDir(lab_dir).ensure()
    root = load_trust_root(trust, root_public=load_public_key(root_pub), state_dir=lab_dir)
    bundles = release_round(
        lab_dir,
        request,
        lab_key=lab_key,
        trust=root,
        out_dir=out,
        sequence=sequence,
        valid_days=valid_days,
    )
    release_id = bundles[0].parent.name
    if as_json:
        emit_json(
            {
                "release_id": release_id,
                "bundles": {b.name: str(b) for b in bundles},
            }
        )
        return
    typer.echo(f"wrote release {release_id}: {len(bundles)} signed bundles")
    for b in bundles:
        typer.echo(f"  {b.name:<16} {b}")


def register(app: App) -> None:
    """Mount ``train`` and ``release`` on ``app``."""
    app.command("train")(train)
    app.command("release")(release)
