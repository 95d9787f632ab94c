"""``agency-runtime verify`` and ``score``: thin commands over :mod:`.verify` and :mod:`.score`.

The verdict and the summary go to standard output (JSON with ``--json``); progress goes
to standard error. Exit codes: 0 done, 2 bad input, 3 refused (see ``cli_support``).
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from sample_protocol.cli_support import EXIT_REFUSED, App, emit_json
from sample_protocol.errors import ProtocolError
from sample_protocol.keys import PublicKey, SecretKey, load_public_key, load_secret_key
from sample_protocol.trust import TrustRoot, load_trust_root

from .errors import RuntimeInputError
from .input_reader import DEFAULT_BATCH_ROWS
from .sample_round import audit_scope
from .score import ScoreResult, score_population
from .verify import VerifiedRelease, verify_release

__all__ = ["register", "score_command", "verify_command"]

#: The audit log's actor when ``verify`` runs without the body's key.
ANONYMOUS_ACTOR = "agency-runtime"

Bundle = Annotated[
    Path, typer.Argument(help="The release bundle directory (manifest.json and its .minisig).")
]
Trust = Annotated[
    Path | None,
    typer.Option("--trust", help="The signed trust root (trust.json); needs --root-pub."),
]
RootPub = Annotated[
    Path | None, typer.Option("--root-pub", help="The pinned root public key (nce-root.pub).")
]
LabPub = Annotated[
    Path | None,
    typer.Option(
        "--lab-pub",
        help="Instead of --trust: the one lab public key to trust (NAME.pub or minisign .pub).",
    ),
]
State = Annotated[
    Path,
    typer.Option(
        "--state",
        help="This body's state directory (audit log, highest release sequence accepted).",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print the verdict or summary as JSON.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")]


def _trust_material(
    trust: Path | None,
    root_pub: Path | None,
    lab_pub: Path | None,
    state: Path,
    actor: str,
) -> tuple[TrustRoot | None, PublicKey | None]:
    if lab_pub is not None and (trust is not None or root_pub is not None):
        raise RuntimeInputError(
            "--lab-pub: give either --trust with --root-pub, or --lab-pub, not both",
            code="bad_option",
        )
    if lab_pub is not None:
        return None, load_public_key(lab_pub)
    if trust is None or root_pub is None:
        raise RuntimeInputError(
            "--trust and --root-pub (or --lab-pub): expected the trust root and its pinned root "
            "key, or a single lab public key; found "
            + ("no --root-pub" if trust is not None else "no --trust"),
            code="bad_option",
        )
    state.mkdir(parents=True, exist_ok=True)
    with audit_scope(state, actor, "trust_root_loaded", str(trust)):
        root = load_public_key(root_pub)
        return load_trust_root(trust, root_public=root, state_dir=state), None


def _print_verdict(release: VerifiedRelease) -> None:
    m = release.manifest
    parity = max(release.bundle.parity.values(), default=0.0)
    typer.echo(
        f"VERIFIED: release {m.release_id} (sequence {m.sequence}) for {m.audience}, "
        f"signed by {release.bundle.signer}"
    )
    typer.echo(f"  created {m.created_at.isoformat()}, expires {m.expires_at.isoformat()}")
    typer.echo(
        f"  {len(release.models)} model(s) passed the ONNX gate and re-ran their parity "
        f"fixture here (max abs difference {parity:.2g})"
    )
    for s in release.models:
        typer.echo(
            f"  {s.name}: {len(s.features)} inputs; category medium from p >= "
            f"{s.cutoffs.medium_from:.4f}, high from p >= {s.cutoffs.high_from:.4f}"
        )
    if release.generalisation:
        levels = ", ".join(f"{k} -> {v[1]}" for k, v in sorted(release.generalisation.items()))
        typer.echo(f"  inputs generalised as in training: {levels}")


def _refused_verdict(exc: ProtocolError, json_output: bool) -> None:
    if exc.exit_code != EXIT_REFUSED:
        return
    if json_output:
        emit_json({"verdict": "refused", "code": exc.code, "reason": str(exc)})
    else:
        typer.echo(f"REFUSED [{exc.code}]: {exc}")


def verify_command(
    bundle: Bundle,
    state: State,
    trust: Trust = None,
    root_pub: RootPub = None,
    lab_pub: LabPub = None,
    source: Annotated[
        str | None,
        typer.Option("--source", help="This body's source code (default: the bundle's audience)."),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            help="This body's secret key: names it in the audit log and "
            "checks that it owns the source.",
        ),
    ] = None,
    json_output: Json = False,
) -> None:
    """Verify a release bundle and print a clear verdict (exit 3 when refused).

    Checks, failing closed: the manifest's signature (a non-revoked lab of the trust root,
    or the one --lab-pub key), the SHA-256 of every file, expiry, rollback (the sequence
    may not go below the highest accepted, kept in STATE/release_state.json), the ONNX
    gate of every model, the parity fixture re-run on this machine, and that the release
    carries each model's feature spec, score scale and cut-offs. The verdict is appended
    to STATE/audit.log either way.
    """
    secret: SecretKey | None = load_secret_key(key) if key is not None else None
    actor = secret.name if secret is not None else ANONYMOUS_ACTOR
    try:
        root, lab = _trust_material(trust, root_pub, lab_pub, state, actor)
        release = verify_release(
            bundle,
            state_dir=state,
            actor=actor,
            trust=root,
            lab_public=lab,
            source=source.strip().upper() if source else None,
            body_key_id=secret.key_id if secret is not None else None,
        )
    except ProtocolError as exc:
        _refused_verdict(exc, json_output)
        raise
    if json_output:
        emit_json(release.to_dict())
    else:
        _print_verdict(release)


class _ProgressLine:
    """A light progress line on standard error (in place on a terminal)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.started = time.perf_counter()
        self.last = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.perf_counter()
        if self.quiet or now - self.last < (0.25 if self.tty else 5.0):
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        share = f" / {total:,} ({100 * done / total:.0f}%)" if total else ""
        text = f"agency-runtime: scored {done:,}{share} entities, {rate:,.0f}/s"
        if self.tty:
            sys.stderr.write("\r" + text + "  ")
            sys.stderr.flush()
        else:
            typer.echo(text, err=True)

    def finish(self) -> None:
        if self.tty and self.last and not self.quiet:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _print_summary(result: ScoreResult) -> None:
    m = result.manifest
    typer.echo(
        f"scored {result.entities:,} entities of {result.source} with release "
        f"{result.release_id}: {m.row_count:,} rows ({len(result.indexes)} indexes) in "
        f"{result.seconds:.1f} s"
    )
    for index, counts in result.categories.items():
        parts = ", ".join(f"{name} {n:,}" for name, n in counts.items())
        typer.echo(f"  {index}: {parts}")
    sealed = " (sealed to the register)" if m.sealed else ""
    typer.echo(f"batch {m.batch_id} signed by {m.body}: {result.out}{sealed}")


def score_command(
    bundle: Bundle,
    input_file: Annotated[
        Path,
        typer.Argument(
            help="This body's population: its extract of the source (.parquet or "
            ".csv), keyed by a bin (BIN or IIN) or iin column."
        ),
    ],
    source: Annotated[str, typer.Option("--source", help="The source code, e.g. TAX.")],
    key: Annotated[Path, typer.Option("--key", help="This body's secret key (BODY.key).")],
    out: Annotated[
        Path, typer.Option("--out", help="The batch directory to create (must not exist).")
    ],
    state: State,
    trust: Trust = None,
    root_pub: RootPub = None,
    lab_pub: LabPub = None,
    seal_to: Annotated[
        Path | None,
        typer.Option(
            "--seal-to", help="Seal the batch to the register's public key (REGISTER.pub)."
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="The date the data describes, YYYY-MM-DD (default: today)."),
    ] = None,
    batch_rows: Annotated[
        int, typer.Option("--batch-rows", help="Rows read and scored at a time.", min=1)
    ] = DEFAULT_BATCH_ROWS,
    json_output: Json = False,
    quiet: Quiet = False,
) -> None:
    """Verify the release, score the whole population, write the signed batch.

    The release is verified as by `verify`. The input is read in streamed batches (memory
    does not grow with it) and every row is checked against the source's contract; each
    entity gets one row per index of the release: BIN/IIN, value 1-99 and category from
    the signed scale and cut-offs, probability (4 decimals), release id and as-of date.
    Nothing else can be written. The batch directory (batch.parquet or, with --seal-to,
    batch.parquet.kzse; manifest.json; manifest.json.minisig) appears only when all
    went well. The run is appended to STATE/audit.log.
    """
    secret = load_secret_key(key)
    day = None
    if as_of is not None:
        try:
            day = dt.date.fromisoformat(as_of.strip())
        except ValueError:
            raise RuntimeInputError(
                f"--as-of: expected a date YYYY-MM-DD, found {as_of!r}", code="bad_option"
            ) from None
    register_key = load_public_key(seal_to) if seal_to is not None else None
    root, lab = _trust_material(trust, root_pub, lab_pub, state, secret.name)
    line = _ProgressLine(quiet)

    def say(message: str) -> None:
        if not quiet:
            typer.echo(f"agency-runtime: {message}", err=True)

    try:
        result = score_population(
            bundle,
            input_file,
            source=source,
            key=secret,
            out=out,
            state_dir=state,
            trust=root,
            lab_public=lab,
            seal_to=register_key,
            as_of=day,
            batch_size=batch_rows,
            progress=line,
            say=say,
        )
    finally:
        line.finish()
    if json_output:
        emit_json(result.to_dict())
    else:
        _print_summary(result)


def register(app: App) -> None:
    """Add ``verify`` and ``score`` to ``app``."""
    app.command("verify")(verify_command)
    app.command("score")(score_command)
