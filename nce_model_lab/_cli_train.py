"""``nce-lab train``, ``nce-lab release`` and ``nce-lab card``.

Thin commands over :func:`~nce_model_lab.release.train_round`,
:func:`~nce_model_lab.release.release_round` and
:func:`~nce_model_lab.card_target.write_card`; mount them with ``register(app)``.
Exit codes: 2 for an unknown request or a round without a training table (or not yet
trained) and bad options, 3 when an ONNX export fails its parity check or a model fails
a quality gate without ``--force`` (nothing written).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sample_protocol.cli_support import App, emit_json
from sample_protocol.keys import load_public_key, load_secret_key
from sample_protocol.records import MANIFEST_NAME, ReleaseManifest
from sample_protocol.trust import load_trust_root

from .card import MODEL_CARD_FILE
from .card_target import write_card
from .labdir import LabDir
from .quality import DEFAULT_GATES, QualityGates
from .release import TrainedRound, release_round, train_round

__all__ = ["card", "register", "release", "train"]

LabDirOpt = Annotated[
    Path, typer.Option("--lab-dir", help="The lab directory (requests, samples, models).")
]
RequestOpt = Annotated[
    str, typer.Option("--request", help="The sample request (round) id, req-YYYYMMDD-....")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
MinAucOpt = Annotated[
    float | None,
    typer.Option(
        "--min-auc",
        help=f"Quality gate: a model's held-out AUC must be at least this "
        f"(default {DEFAULT_GATES.min_auc}).",
    ),
]
MaxAucOpt = Annotated[
    float | None,
    typer.Option(
        "--max-auc",
        help=f"Quality gate: a model's held-out AUC must be at most this; above it the "
        f"outcome has likely leaked into the features (default {DEFAULT_GATES.max_auc}).",
    ),
]
MaxEceOpt = Annotated[
    float | None,
    typer.Option(
        "--max-ece",
        help=f"Quality gate: a model's held-out expected calibration error must be at "
        f"most this (default {DEFAULT_GATES.max_ece}).",
    ),
]


def _gates(min_auc: float | None, max_auc: float | None, max_ece: float | None) -> QualityGates:
    d = DEFAULT_GATES
    return QualityGates(
        min_auc=d.min_auc if min_auc is None else min_auc,
        max_auc=d.max_auc if max_auc is None else max_auc,
        max_ece=d.max_ece if max_ece is None else max_ece,
    )


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
    min_auc: MinAucOpt = None,
    max_auc: MaxAucOpt = None,
    max_ece: MaxEceOpt = None,
    force: Annotated[
        str | None,
        typer.Option(
            "--force",
            metavar="REASON",
            help="Release even if models fail the quality gates; REASON (1-100 characters) "
            "is written, per overridden gate, into the signed manifests' quality_overrides "
            "and into the lab's audit log.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the signed release bundles of a trained round (step 6).

    One bundle per preliminary source (for that body) and one for the register (the
    combiners), each with its models, feature specs, cut-offs, parity fixture and model
    card (model_card.html). First every model is checked on its held-out test rows
    against the quality gates: AUC at least --min-auc (0.60) and at most --max-auc (0.98,
    above which the outcome has likely leaked), ECE at most --max-ece (0.05). A failure
    refuses the release (exit 3, nothing written, the message names each model, measure,
    value and limit) unless --force REASON is given.
    """
    lab_key = load_secret_key(key)
    LabDir(lab_dir).ensure()
    root = load_trust_root(trust, root_public=load_public_key(root_pub), state_dir=lab_dir)
    gates = _gates(min_auc, max_auc, max_ece)
    bundles = release_round(
        lab_dir,
        request,
        lab_key=lab_key,
        trust=root,
        out_dir=out,
        sequence=sequence,
        valid_days=valid_days,
        gates=gates,
        force=force,
    )
    release_id = bundles[0].parent.name
    overrides = {
        b.name: ReleaseManifest.from_json((b / MANIFEST_NAME).read_bytes()).quality_overrides
        for b in bundles
    }
    if as_json:
        emit_json(
            {
                "release_id": release_id,
                "bundles": {b.name: str(b) for b in bundles},
                "cards": {b.name: str(b / MODEL_CARD_FILE) for b in bundles},
                "quality_gates": gates,
                "quality_overrides": {k: list(v) for k, v in overrides.items() if v},
            }
        )
        return
    typer.echo(f"wrote release {release_id}: {len(bundles)} signed bundles")
    for b in bundles:
        typer.echo(f"  {b.name:<16} {b}")
    forced = [note for notes in overrides.values() for note in notes]
    if forced:
        typer.echo(f"  quality gates overridden ({len(forced)}), recorded in the manifests:")
        for note in forced:
            typer.echo(f"    {note}")
    else:
        typer.echo("  every model passes the quality gates")


def card(
    target: Annotated[
        str,
        typer.Argument(
            help="A release bundle directory (OUT/<release_id>/<AUDIENCE>), a release "
            "directory (OUT/<release_id>) or the request id of a trained round."
        ),
    ],
    lab_dir: LabDirOpt,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="The HTML file to write (default: LAB/rounds/<id>/cards/<round or release>.html).",
        ),
    ] = None,
    min_auc: MinAucOpt = None,
    max_auc: MaxAucOpt = None,
    max_ece: MaxEceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the model card (one self-contained HTML file) of a round or a release.

    Per index and per model, on the held-out test entities: AUC, Gini, KS, Brier score,
    calibration table and ECE, category shares and observed outcome rates, PSI, and the
    ROC curve, calibration plot, value distribution and category rates as images; the
    cut-offs, score scale and cut-off rule; the training record (data hash, seed,
    versions); the quality gates and any override. A release's card uses the gates its
    manifest records; a round's uses --min-auc/--max-auc/--max-ece (defaults 0.60, 0.98,
    0.05). Needs the lab directory that trained the round. No JavaScript, nothing loaded
    from outside the file.
    """
    given = (min_auc, max_auc, max_ece)
    gates = None if all(v is None for v in given) else _gates(*given)
    written = write_card(lab_dir, target, out=out, gates=gates)
    if as_json:
        emit_json(
            {
                "card": str(written.path),
                "request_id": written.request_id,
                "release_id": written.release_id,
                "audiences": list(written.audiences),
                "models": list(written.models),
                "failures": list(written.failures),
                "quality_overrides": list(written.overrides),
            }
        )
        return
    what = written.release_id or f"round {written.request_id}"
    typer.echo(f"wrote the model card of {what} ({len(written.models)} models): {written.path}")
    for f in written.failures:
        typer.echo(f"  {'overridden' if written.overrides else 'FAILS'}: {f.describe()}")


def register(app: App) -> None:
    """Mount ``train``, ``release`` and ``card`` on ``app``."""
    app.command("train")(train)
    app.command("release")(release)
    app.command("card")(card)
