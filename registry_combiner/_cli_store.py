"""``registry-combiner verify-release | ingest | ingest-feed | combine | show | export``.

Thin commands over :mod:`.ingest`, :mod:`.feeds`, :mod:`.combine` and :mod:`.query`; mount
them with ``register(app)``. Everything lives in the register's state directory ``--state``:
the database (``register.sqlite``), the trust-root and release rollback counters and the
hash-chained ``audit.log`` where every ingest, feed and combine (and every refusal) is
recorded. Exit codes: 0 done, 1 failure, 2 bad input, 3 refused.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import typer

from sample_protocol.audit import AuditLog
from sample_protocol.cli_support import EXIT_OK, App, echo_error, emit_json
from sample_protocol.errors import ProtocolError
from sample_protocol.keys import SecretKey, load_public_key, load_secret_key
from sample_protocol.trust import Role, TrustRoot, load_trust_root

from .combine import combine
from .errors import RegistryInputError
from .feeds import ingest_feed
from .ingest import audited, ingest_batch, verify_release
from .query import entity_view, export_current
from .store import Store, open_store

__all__ = ["register"]

AUDIT_FILE = "audit.log"

StateOpt = Annotated[
    Path,
    typer.Option("--state", help="The register's state directory (database, counters, audit)."),
]
TrustOpt = Annotated[Path, typer.Option("--trust", help="The signed trust root (trust.json).")]
RootOpt = Annotated[
    Path, typer.Option("--root-pub", help="The pinned root public key (nce-root.pub).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")]


def _trust(trust: Path, root_pub: Path, state: Path) -> TrustRoot:
    state.mkdir(parents=True, exist_ok=True)
    return load_trust_root(trust, root_public=load_public_key(root_pub), state_dir=state)


def _actor(trust: TrustRoot | None, key: SecretKey | None) -> str:
    if key is not None:
        return key.name
    if trust is not None:
        names = [p.name for p in trust.parties if p.role is Role.REGISTER and not p.revoked]
        if len(names) == 1:
            return names[0]
    return "register"


def _audit(state: Path, actor: str) -> AuditLog:
    return AuditLog(state / AUDIT_FILE, actor=actor)


def _store(state: Path) -> contextlib.closing[Store]:
    return contextlib.closing(open_store(state))


def verify_release_command(
    bundle: Annotated[Path, typer.Argument(help="The register's bundle: RELEASE/REGISTER.")],
    state: StateOpt,
    trust: TrustOpt,
    root_pub: RootOpt,
    as_json: JsonOpt = False,
) -> None:
    """Verify the register's release bundle and record its release id.

    The same checks a body runs on its bundle (signature by a trusted lab, not expired,
    hashes, no rollback, the ONNX gate, parity). Batches naming this release can then be
    ingested. Exit 3 if the bundle is refused.
    """
    root = _trust(trust, root_pub, state)
    with (
        _store(state) as store,
        audited(_audit(state, _actor(root, None)), "release_verified", str(bundle)) as scope,
    ):
        verified, release = verify_release(bundle, store=store, trust=root, state_dir=state)
        scope.details.update(release_id=release.release_id, sequence=release.sequence)
    models = [m.name for m in verified.manifest.models]
    result: dict[str, Any] = {
        "release_id": release.release_id,
        "sequence": release.sequence,
        "lab": release.lab,
        "expires_at": release.expires_at.isoformat(),
        "models": models,
    }
    if as_json:
        emit_json(result)
        return
    typer.echo(
        f"release {release.release_id} (sequence {release.sequence}) verified; "
        f"{len(models)} combiners; expires {release.expires_at.date()}"
    )


def ingest_command(
    batches: Annotated[list[Path], typer.Argument(help="Batch directories from the bodies.")],
    state: StateOpt,
    trust: TrustOpt,
    root_pub: RootOpt,
    key: Annotated[
        Path | None,
        typer.Option("--key", help="The register's secret key (opens sealed batches)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify each batch and store it in one transaction.

    Refused (exit 3, nothing of it stored): a bad signature or signer, a tampered or
    half-written batch, a release the register has not verified or that expired, a batch
    id already ingested. Every batch is tried; the exit code is the worst outcome.
    """
    root = _trust(trust, root_pub, state)
    secret = load_secret_key(key) if key is not None else None
    log = _audit(state, _actor(root, secret))
    results: list[dict[str, Any]] = []
    worst = EXIT_OK
    with _store(state) as store:
        for path in batches:
            try:
                with audited(log, "batch_ingested", str(path)) as scope:
                    done = ingest_batch(path, store=store, trust=root, recipient=secret)
                    scope.details.update(
                        batch_id=done.batch.batch_id,
                        source=done.batch.source,
                        release_id=done.batch.release_id,
                        rows=done.batch.row_count,
                    )
            except ProtocolError as exc:
                echo_error("registry-combiner", f"{path}: {exc}", exc.code)
                worst = max(worst, exc.exit_code)
                results.append({"path": str(path), "error": exc.code})
                continue
            results.append(done.to_dict())
            if not as_json:
                b = done.batch
                typer.echo(
                    f"ingested {b.batch_id}: {b.source} by {b.body}, release {b.release_id}, "
                    f"{b.row_count:,} rows, {b.entities:,} entities ({done.entities_new:,} new)"
                )
    if as_json:
        emit_json({"batches": results})
    if worst != EXIT_OK:
        raise typer.Exit(worst)


def ingest_feed_command(
    source: Annotated[str, typer.Argument(help="A direct source code, or TAX_LISTS.")],
    file: Annotated[Path, typer.Argument(help="The feed, a Parquet file keyed by 'bin'.")],
    state: StateOpt,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="The date the feed describes, YYYY-MM-DD (default today)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a direct feed against its source contract and store it.

    Every row is checked (columns, Arrow types, identifiers, nulls, ranges, categories);
    an error names the column and the row and nothing is stored (exit 2). A source in
    'preliminary' mode is refused (exit 3). LEGAL_ENTITY also fills the entities' names
    for search; TAX_LISTS (the published state lists) drives the hard overrides.
    """
    try:
        day = None if as_of is None else dt.date.fromisoformat(as_of)
    except ValueError:
        raise RegistryInputError(
            f"--as-of: expected a date YYYY-MM-DD, found {as_of!r}", code="bad_option"
        ) from None
    with (
        _store(state) as store,
        audited(_audit(state, _actor(None, None)), "feed_ingested", f"{source} {file}") as scope,
    ):
        done = ingest_feed(store, source, file, as_of=day)
        scope.details.update(feed_id=done.feed.feed_id, rows=done.feed.rows)
    if as_json:
        emit_json(done.to_dict())
        return
    f = done.feed
    typer.echo(
        f"ingested feed {f.feed_id}: {f.source} as of {f.as_of}, {f.rows:,} rows "
        f"({done.entities_new:,} new entities"
        + (f", {done.profiles:,} profiles" if done.profiles else "")
        + ")"
    )


def combine_command(
    release: Annotated[Path, typer.Option("--release", help="The register's bundle.")],
    state: StateOpt,
    trust: TrustOpt,
    root_pub: RootOpt,
    reasons: Annotated[
        str,
        typer.Option(
            "--reasons",
            help=(
                "Which indexes get reason codes: elevated (medium and high), all, or none. "
                "Each reason costs one more model run per source, so 'all' is slower."
            ),
        ),
    ] = "elevated",
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Verify the release, then compute the four indexes of every entity.

    Per index: the combiner's calibrated probability, value 1-99 and category, coverage
    (which bodies and feeds delivered), hard overrides from the state lists and up to 4
    reason codes. One run, written in one transaction; earlier runs stay as history.
    """
    root = _trust(trust, root_pub, state)

    def say(message: str) -> None:
        if not quiet:
            typer.echo(f"registry-combiner: {message}", err=True)

    with (
        _store(state) as store,
        audited(_audit(state, _actor(root, None)), "combined", str(release)) as scope,
    ):
        done = combine(store, release, trust=root, state_dir=state, reasons=reasons, progress=say)
        scope.details.update(
            run_id=done.run.run_id, release_id=done.run.release_id, entities=done.run.entities
        )
    if as_json:
        emit_json(done.to_dict())
        return
    typer.echo(
        f"run {done.run.run_id}: release {done.run.release_id}, {done.run.entities:,} entities "
        f"in {done.seconds:.1f} s"
    )
    for index, c in done.run.meta.get("counts", {}).items():
        typer.echo(
            f"  {index:<22} low {c['low']:,}  medium {c['medium']:,}  high {c['high']:,}  "
            f"partial {c['partial']:,}  overridden {c['overridden']:,}"
        )


def show_command(
    identifier: Annotated[str, typer.Argument(help="The entity's BIN or IIN.")],
    state: StateOpt,
    history: Annotated[int, typer.Option("--history", help="Runs of history to show.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Show an entity's current indexes, coverage, reasons and recent history.

    Exit 2 for an invalid identifier (bad check digit) or an unknown entity.
    """
    with _store(state) as store:
        view = entity_view(store, identifier, history=history)
    if as_json:
        emit_json(view)
        return
    e = view["entity"]
    typer.echo(f"{e['bin']} ({e['kind']}) {e['name'] or ''} {e['legal_form'] or ''}".rstrip())
    if view["lists"]:
        typer.echo(f"  on state lists: {', '.join(view['lists'])}")
    if view["run"] is None:
        typer.echo("  no indexes yet (run combine)")
        return
    run = view["run"]
    typer.echo(f"  run {run['run_id']}, release {run['release_id']}, {run['computed_at']}")
    for ix in view["indexes"]:
        marks = (" partial" if ix["partial"] else "") + (
            f" overridden ({', '.join(ix['overrides'])})" if ix["overridden"] else ""
        )
        typer.echo(
            f"  {ix['index']:<22} {ix['value']:>2} {ix['category']:<6} "
            f"p={ix['probability']:.4f}{marks}"
        )
        if ix["reasons"]:
            typer.echo(f"    reasons: {', '.join(r['code'] for r in ix['reasons'])}")
        missing = [s for s, v in ix["coverage"]["preliminary"].items() if v == "missing"]
        if missing:
            typer.echo(f"    missing preliminary: {', '.join(missing)}")
        trend = " <- ".join(f"{h['value']}" for h in ix["history"])
        typer.echo(f"    history (newest first): {trend}")


def export_command(
    out: Annotated[Path, typer.Option("--out", help="The Parquet file to write.")],
    state: StateOpt,
    as_json: JsonOpt = False,
) -> None:
    """Write every entity's current indexes (the latest run) to a Parquet file, atomically."""
    with _store(state) as store:
        done = export_current(store, out)
    if as_json:
        emit_json(done.to_dict())
        return
    typer.echo(f"exported {done.rows:,} rows (run {done.run_id}) to {done.path}")


def register(app: App) -> None:
    """Mount the store commands on ``app``."""
    app.command("verify-release")(verify_release_command)
    app.command("ingest")(ingest_command)
    app.command("ingest-feed")(ingest_feed_command)
    app.command("combine")(combine_command)
    app.command("show")(show_command)
    app.command("export")(export_command)
