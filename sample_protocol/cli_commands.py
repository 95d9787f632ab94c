"""Commands that every party's CLI has: ``keys new`` and ``audit verify``.

They are written once here and mounted by each role's CLI, so that the three tools
behave the same way.
"""

from __future__ import annotations

from pathlib import Path

import typer

from .cli_support import App, emit_json

__all__ = ["add_audit_commands", "add_keys_commands"]


def add_keys_commands(app: App) -> None:
    """Mount ``keys new`` on ``app``."""
    keys = App(prog=app.prog, help="Create and inspect this party's key pair.")

    @keys.command("new")
    def keys_new(
        name: str = typer.Argument(..., help="Party name, e.g. 'tax-body' or 'nce-lab'."),
        out: Path = typer.Option(Path("keys"), "--out", "-o", help="Directory for the key files."),
        force: bool = typer.Option(False, "--force", help="Overwrite existing key files."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Create an Ed25519 signing key and an X25519 sealing key for NAME.

        Writes NAME.key (secret, mode 0600: never share it), NAME.pub (public, give it to
        the lab for the trust root) and NAME.minisign.pub (checks our signatures with the
        standard `minisign -V`).
        """
        from .keys import generate_keypair, write_keypair

        secret = generate_keypair(name)
        files = write_keypair(secret, out, overwrite=force)
        result = {
            "name": name,
            "key_id": secret.key_id,
            "secret_key": str(files.secret),
            "public_key": str(files.public),
            "minisign_public_key": str(files.minisign_public),
        }
        if as_json:
            emit_json(result)
            return
        typer.echo(f"created key pair for {name!r} (key id {secret.key_id})")
        typer.echo(f"  secret  {files.secret}  (0600: keep it inside your perimeter)")
        typer.echo(f"  public  {files.public}")
        typer.echo(f"  minisign public key  {files.minisign_public}")

    app.add_typer(keys, name="keys")


def add_audit_commands(app: App) -> None:
    """Mount ``audit verify`` on ``app``."""
    audit = App(prog=app.prog, help="Check this party's hash-chained audit log.")

    @audit.command("verify")
    def audit_verify(
        log: Path = typer.Argument(..., help="The audit log (JSON lines)."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Check every line's hash chain; name the first broken line (exit 3) if any."""
        from .audit import verify_log

        result = verify_log(log)
        if as_json:
            emit_json({"log": str(log), "entries": result.entries, "head": result.head, "ok": True})
            return
        typer.echo(f"{log}: {result.entries} entries, chain intact (head {result.head[:16]}…)")

    app.add_typer(audit, name="audit")
