"""``registry-combiner report | verify-report | search | serve | tokens add|list|remove``.

Thin commands over :mod:`.report`, :mod:`.search`, :mod:`.service` and :mod:`.tokens`;
mount them with ``register(app)``. Exit codes: 0 done, 1 failure, 2 bad input (an invalid
identifier, an unknown entity), 3 refused (a report whose signature does not check out).
"""

from __future__ import annotations

import contextlib
import getpass
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from sample_protocol.cli_support import App, emit_json
from sample_protocol.identifiers import mask_identifier
from sample_protocol.keys import PublicKeys, load_public_key, load_secret_key
from sample_protocol.trust import Role, load_trust_root

from ._cli_store import JsonOpt, StateOpt, _audit
from .errors import RegistryInputError
from .ingest import audited
from .report import issue_report, verify_report, write_report
from .search import SEARCH_MODES, search, search_hit
from .store import DB_FILE, Store, open_store
from .tokens import ACCESS_LEVELS, add_user, list_users, remove_user

__all__ = ["register"]

KeyOpt = Annotated[
    Path, typer.Option("--key", help="The register's secret key (register.key) that signs.")
]
TokensOpt = Annotated[
    Path, typer.Option("--tokens", help="The token file (users and token hashes, mode 0600).")
]


def _existing_store(state: Path) -> contextlib.closing[Store]:
    db = state / DB_FILE if state.is_dir() or not state.suffix else state
    if not db.is_file():
        raise RegistryInputError(
            f"register database {db}: not found (ingest batches first)", code="store_missing"
        )
    return contextlib.closing(open_store(db))


def report_command(
    identifier: Annotated[str, typer.Argument(help="The entity's BIN or IIN.")],
    state: StateOpt,
    key: KeyOpt,
    out: Annotated[Path, typer.Option("--out", help="Directory for the report files.")] = Path("."),
    user: Annotated[
        str | None,
        typer.Option("--user", help="Who asked (recorded in the report and the check log)."),
    ] = None,
    history: Annotated[int, typer.Option("--history", help="Runs of history to show.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Issue a signed report of an entity's current indexes and log the check.

    Writes REPORT_ID.json (canonical JSON) and REPORT_ID.html, each with a minisign
    signature by the register's key (.minisig), so that anyone can check them later with
    `minisign -Vm FILE -p register.minisign.pub` or `registry-combiner verify-report`.
    The report shows value, category, probability, coverage, overrides, reason codes,
    release, computed time and history of the four indexes. The check is recorded in the
    check log (view 'report', with the JSON's SHA-256) and the audit log.
    Exit 2 for an invalid identifier (bad check digit) or an unknown entity.
    """
    secret = load_secret_key(key)
    who = user or f"operator:{getpass.getuser()}"
    with (
        _existing_store(state) as store,
        audited(_audit(state, secret.name), "report_issued", "report") as scope,
    ):
        issued = issue_report(store, identifier, user=who, key=secret, history=history)
        files = write_report(issued, out)
        scope.details.update(
            report_id=issued.report_id, sha256=issued.sha256, user=who,
            entity=mask_identifier(issued.report.entity.bin),
        )  # fmt: skip
    result = {
        "report_id": issued.report_id,
        "sha256": issued.sha256,
        "check_id": issued.check_id,
        "files": [str(f) for f in files],
    }
    if as_json:
        emit_json(result)
        return
    typer.echo(f"report {issued.report_id} (check {issued.check_id}) for {who}:")
    for f in files:
        typer.echo(f"  {f}")


def verify_report_command(
    file: Annotated[Path, typer.Argument(help="A report: REPORT_ID.json or REPORT_ID.html.")],
    sig: Annotated[
        Path | None, typer.Option("--sig", help="Its signature (default FILE.minisig).")
    ] = None,
    pub: Annotated[
        Path | None,
        typer.Option("--pub", help="The register's public key (register.pub or .minisign.pub)."),
    ] = None,
    trust: Annotated[
        Path | None, typer.Option("--trust", help="Or: the trust root (trust.json)...")
    ] = None,
    root_pub: Annotated[
        Path | None, typer.Option("--root-pub", help="...with its pinned root key.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a report's signature against the register's key.

    Give the register's public key (--pub), or the trust root (--trust with --root-pub):
    then the signer must be a non-revoked party with role 'register'. A JSON report must
    also name the key that signed it. Exit 3 if the signature or the report is refused.
    """
    keys: PublicKeys
    if (pub is None) == (trust is None):
        raise RegistryInputError(
            "verify-report: expected either --pub or --trust with --root-pub", code="bad_option"
        )
    if pub is not None:
        keys = load_public_key(pub)
    else:
        if root_pub is None:
            raise RegistryInputError("verify-report: --trust needs --root-pub", code="bad_option")
        assert trust is not None
        root = load_trust_root(trust, root_public=load_public_key(root_pub))
        keys = root.trusted_keys(Role.REGISTER)
    verified = verify_report(file, keys, sig_path=sig)
    if as_json:
        emit_json(verified.to_dict())
        return
    s = verified.signature
    typer.echo(f"{file}: signature OK, signed by {s.signer} (key {s.key_id})")
    r = verified.report
    if r is not None:
        typer.echo(f"  report {r.report_id}: {r.user} checked {r.entity.bin} at {r.issued_at}")
        for ix in r.indexes:
            typer.echo(f"  {ix.index:<22} {ix.value:>2} {ix.category}")


def search_command(
    query: Annotated[str, typer.Argument(help="A BIN/IIN, a name, or a person's names.")],
    state: StateOpt,
    by: Annotated[
        str, typer.Option("--by", help=f"How to read the query: {', '.join(SEARCH_MODES)}.")
    ] = "auto",
    legal_form: Annotated[
        str | None, typer.Option("--legal-form", help="Only this legal form (e.g. LLP).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Most results (1-100).")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Find entities by BIN/IIN, by name and legal form, or by surname, name, patronymic.

    --by id validates the identifier first (exit 2 with the reason for a bad check
    digit); name matches the name and legal form; person the head's or an individual
    entrepreneur's names; auto reads an all-digit query as an identifier and anything else
    against every field. Words match as prefixes, diacritics ignored. Not logged as a check.
    """
    with _existing_store(state) as store:
        found = search(store, query, by=by, legal_form=legal_form, limit=limit)
        hits = [search_hit(e) for e in found]
    if as_json:
        emit_json({"query": query, "by": by, "results": hits})
        return
    if not hits:
        typer.echo("no entity found")
    for h in hits:
        head = f"  (head: {h['head']})" if h["head"] else ""
        typer.echo(f"{h['bin']}  {h['name'] or '-'}  [{h['legal_form'] or h['kind']}]{head}")


def serve_command(
    state: StateOpt,
    key: KeyOpt,
    tokens: TokensOpt,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8080,
    history: Annotated[int, typer.Option("--history", help="Runs of history in reports.")] = 5,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=1, max=64, help="Worker processes (about one per core; default 1)."
        ),
    ] = 1,
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            min=1,
            max=256,
            help="Request threads per process: few keep the latency tail short (Python runs "
            "one at a time; SQLite reads overlap).",
        ),
    ] = 8,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="Log every request line (the check log records the checks either way).",
        ),
    ] = True,
) -> None:
    """Serve the register over HTTP (FastAPI on uvicorn); OpenAPI docs at /docs.

    Routes: /entities/{id}/basic (the free basic view of para 37), /entities/{id} (full
    view), /entities/{id}/report (signed report; ?format=html), /search, /checks/mine,
    /entities/{id}/checks (for a user bound to that entity). Every route but /health and
    the docs needs a bearer token from `registry-combiner tokens add`; every view and
    report is written to the check log with the user and the time. One process serves
    on one core (Python); --workers N runs N processes on the same port, each on its own
    socket (the kernel spreads connections over them). Put a TLS-terminating proxy in
    front when listening beyond 127.0.0.1.
    """
    import uvicorn

    from .service import ENV_PREFIX, create_app, listening_socket

    app = create_app(state, tokens, key, history=history, threads=threads)  # checks all, once
    options: dict[str, Any] = {
        "host": host, "port": port, "server_header": False, "log_level": "info",
        "access_log": access_log,
    }  # fmt: skip
    if workers == 1:
        uvicorn.run(app, **options)
        return
    from uvicorn.supervisors import Multiprocess

    from ._workers import reuse_port_sockets, reuse_port_supported, run_workers

    for name, path in {"STATE": state, "TOKENS": tokens, "KEY": key}.items():
        os.environ[ENV_PREFIX + name] = str(path.resolve())
    os.environ[ENV_PREFIX + "HISTORY"] = str(history)
    os.environ[ENV_PREFIX + "THREADS"] = str(threads)
    factory = "registry_combiner.service:app_from_env"
    if reuse_port_supported():  # a socket per worker: connections spread over them
        try:
            sockets = reuse_port_sockets(host, port, workers)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
        del options["host"], options["port"]
        typer.echo(f"serving on http://{host}:{port} with {workers} worker processes", err=True)
        raise typer.Exit(run_workers(factory, options, sockets))
    config = uvicorn.Config(factory, factory=True, workers=workers, **options)
    Multiprocess(config, sockets=[listening_socket(host, port)]).run()


tokens_app = App(prog="registry-combiner", help="Manage the service's users and tokens.")


@tokens_app.command("add")
def tokens_add_command(
    user: Annotated[str, typer.Argument(help="The user's name (letters, digits, . _ @ -).")],
    tokens: TokensOpt,
    access: Annotated[
        str, typer.Option("--access", help=f"What the user may see: {', '.join(ACCESS_LEVELS)}.")
    ] = "full",
    entity: Annotated[
        str | None,
        typer.Option("--entity", help="BIN/IIN this user speaks for (may see who checked it)."),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Issue a new token to an existing user.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a user with a fresh token; print the token ONCE (only its SHA-256 is kept).

    The token file is created with mode 0600 if missing. 'basic' users get the free basic
    view, search and their own checks; 'full' users also the full view and signed reports.
    """
    token, created = add_user(tokens, user, access=access, entity=entity, replace_existing=replace)
    if as_json:
        emit_json({"user": created.name, "access": created.access, "entity": created.entity,
                   "token": token})  # fmt: skip
        return
    typer.echo(f"user {created.name!r} ({created.access} access) added to {tokens}")
    typer.echo("token (shown once, store it now):")
    typer.echo(token)


@tokens_app.command("list")
def tokens_list_command(tokens: TokensOpt, as_json: JsonOpt = False) -> None:
    """List the users of a token file (names, access, bound entity; never tokens)."""
    users = list_users(tokens)
    if as_json:
        emit_json([{"user": u.name, "access": u.access, "entity": u.entity,
                    "created_at": u.created_at} for u in users])  # fmt: skip
        return
    for u in users:
        bound = f"  entity {u.entity}" if u.entity else ""
        typer.echo(f"{u.name:<24} {u.access:<6}{bound}")


@tokens_app.command("remove")
def tokens_remove_command(
    user: Annotated[str, typer.Argument(help="The user to remove.")], tokens: TokensOpt
) -> None:
    """Remove a user; a running server refuses the token from its next request on."""
    remove_user(tokens, user)
    typer.echo(f"user {user!r} removed from {tokens}")


def register(app: App) -> None:
    """Mount the query and service commands on ``app``."""
    app.command("report")(report_command)
    app.command("verify-report")(verify_report_command)
    app.command("search")(search_command)
    app.command("serve")(serve_command)
    app.add_typer(tokens_app, name="tokens")
