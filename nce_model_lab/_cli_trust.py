"""``nce-lab trust ...``: create and edit the federation's signed trust root."""

from __future__ import annotations

from pathlib import Path

import typer

from sample_protocol.cli_support import App, emit_json
from sample_protocol.keys import load_public_key
from sample_protocol.trust import TrustRoot, load_trust_root

from .trust_admin import (
    add_party,
    create_trust_root,
    parse_party_spec,
    revoke_party,
    rotate_party_key,
)

ROOT_KEY = typer.Option(..., "--root-key", help="The NCE root secret key that signs trust.json.")
TRUST = typer.Argument(..., help="The trust root file (trust.json).")


def _summary(record: TrustRoot, path: Path, as_json: bool) -> None:
    if as_json:
        emit_json(record)
        return
    typer.echo(f"{path}: trust root version {record.version}, {len(record.parties)} parties")
    for p in record.parties:
        state = f"REVOKED ({p.revoked_reason})" if p.revoked else "active"
        sources = ",".join(p.sources) or "-"
        typer.echo(f"  {p.name:<24} {p.role.value:<9} {sources:<28} key {p.key_id}  {state}")


def register(app: App) -> None:
    trust = App(prog=app.prog, help="Create and edit the signed trust root (trust.json).")

    @trust.command("init")
    def trust_init(
        out: Path = typer.Option(Path("trust.json"), "--out", "-o", help="Where to write it."),
        root_key: Path = ROOT_KEY,
        party: list[str] = typer.Option(
            ...,
            "--party",
            help="ROLE:PUBLIC_KEY_FILE[:SOURCE,SOURCE]; repeat for every party. "
            "Roles: lab, tax_body, body, register.",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the trust root as JSON."),
    ) -> None:
        """Write version 1 of the trust root, signed by the root key."""
        specs = [parse_party_spec(p) for p in party]
        _summary(create_trust_root(root_key, specs, out), out, as_json)

    @trust.command("add")
    def trust_add(
        path: Path = TRUST,
        party: str = typer.Argument(..., help="ROLE:PUBLIC_KEY_FILE[:SOURCE,SOURCE]"),
        root_key: Path = ROOT_KEY,
    ) -> None:
        """Add a party (writes the next version)."""
        _summary(add_party(path, root_key, parse_party_spec(party)), path, False)

    @trust.command("rotate")
    def trust_rotate(
        path: Path = TRUST,
        name: str = typer.Argument(..., help="The party whose key changes."),
        public_key: Path = typer.Argument(..., help="The party's new public key file."),
        root_key: Path = ROOT_KEY,
    ) -> None:
        """Replace a party's key; the old key is trusted for nothing new."""
        _summary(rotate_party_key(path, root_key, name, public_key), path, False)

    @trust.command("revoke")
    def trust_revoke(
        path: Path = TRUST,
        name: str = typer.Argument(..., help="The party to revoke."),
        reason: str = typer.Option(..., "--reason", help="Why (kept in the trust root)."),
        root_key: Path = ROOT_KEY,
    ) -> None:
        """Revoke a party: nothing it signs is accepted any more."""
        _summary(revoke_party(path, root_key, name, reason), path, False)

    @trust.command("show")
    def trust_show(
        path: Path = TRUST,
        root_pub: Path = typer.Option(..., "--root-pub", help="The pinned root public key."),
        as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
    ) -> None:
        """Verify the trust root's signature and list its parties."""
        record = load_trust_root(path, root_public=load_public_key(root_pub))
        _summary(record, path, as_json)

    app.add_typer(trust, name="trust")
