"""The lab's administration of the federation's trust root.

The NCE holds the root key that signs ``trust.json``: the list of parties, their roles,
the sources they own and their public keys. Every other party pins the root's public key
and loads ``trust.json`` only after its signature checks out.

A party is described on the command line as ``ROLE:PUBLIC_KEY_FILE[:SOURCE,SOURCE]``,
e.g. ``tax_body:keys/tax-body.pub:TAX``; the party's name is the one in its public key.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sample_protocol.catalogue import source_codes
from sample_protocol.keys import load_public_key, load_secret_key
from sample_protocol.trust import (
    Party,
    Role,
    TrustRoot,
    load_trust_root,
    new_trust_root,
    write_trust_root,
)

from .errors import LabError

__all__ = [
    "PartySpec",
    "add_party",
    "create_trust_root",
    "parse_party_spec",
    "revoke_party",
    "rotate_party_key",
]


@dataclass(frozen=True, slots=True)
class PartySpec:
    """A party to put in the trust root: its role, public key file and sources."""

    role: Role
    public_key: Path
    sources: tuple[str, ...] = ()


def parse_party_spec(text: str) -> PartySpec:
    """Parse ``ROLE:PUBLIC_KEY_FILE[:SOURCE,SOURCE]``.

    >>> parse_party_spec("tax_body:keys/tax-body.pub:TAX")
    PartySpec(role=<Role.TAX_BODY: 'tax_body'>, public_key=PosixPath('keys/tax-body.pub'), sources=('TAX',))
    """  # noqa: E501
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[1]:
        raise LabError(
            f"party {text!r}: expected ROLE:PUBLIC_KEY_FILE[:SOURCE,SOURCE]",
            code="bad_party_spec",
        )
    try:
        role = Role(parts[0].strip().lower())
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise LabError(
            f"party {text!r}: expected a role among {allowed}, found {parts[0]!r}",
            code="bad_party_spec",
        ) from None
    sources = (
        tuple(s.strip().upper() for s in parts[2].split(",") if s.strip())
        if len(parts) == 3
        else ()
    )
    known = set(source_codes())
    unknown = [s for s in sources if s not in known]
    if unknown:
        raise LabError(
            f"party {text!r}: unknown source(s) {', '.join(unknown)}; "
            f"expected among {', '.join(sorted(known))}",
            code="bad_party_spec",
        )
    if role in (Role.BODY, Role.TAX_BODY) and not sources:
        raise LabError(
            f"party {text!r}: a {role.value} must own at least one source (…:SOURCE)",
            code="bad_party_spec",
        )
    return PartySpec(role=role, public_key=Path(parts[1]), sources=sources)


def _party(spec: PartySpec) -> Party:
    key = load_public_key(spec.public_key)
    return Party(name=key.name, role=spec.role, sources=spec.sources, key=key)


def create_trust_root(
    root_key: str | os.PathLike[str],
    parties: Iterable[PartySpec],
    out: str | os.PathLike[str],
) -> TrustRoot:
    """Write a first, signed trust root (version 1) to ``out`` (and ``out.minisig``)."""
    secret = load_secret_key(root_key)
    record = new_trust_root(secret, [_party(p) for p in parties])
    write_trust_root(record, out, secret)
    return record


def add_party(
    trust: str | os.PathLike[str], root_key: str | os.PathLike[str], spec: PartySpec
) -> TrustRoot:
    """Add (or re-describe) a party; writes the next version of the trust root."""
    secret = load_secret_key(root_key)
    current = load_trust_root(trust, root_public=secret.public)
    updated = current.with_party(_party(spec))
    write_trust_root(updated, trust, secret)
    return updated


def rotate_party_key(
    trust: str | os.PathLike[str],
    root_key: str | os.PathLike[str],
    name: str,
    new_public_key: str | os.PathLike[str],
) -> TrustRoot:
    """Replace a party's key; its old key is no longer trusted for anything new."""
    secret = load_secret_key(root_key)
    current = load_trust_root(trust, root_public=secret.public)
    updated = current.rotate(name, load_public_key(new_public_key, name=name))
    write_trust_root(updated, trust, secret)
    return updated


def revoke_party(
    trust: str | os.PathLike[str], root_key: str | os.PathLike[str], name: str, reason: str
) -> TrustRoot:
    """Revoke a party: nothing it signs is accepted any more."""
    secret = load_secret_key(root_key)
    current = load_trust_root(trust, root_public=secret.public)
    updated = current.revoke(name, reason)
    write_trust_root(updated, trust, secret)
    return updated
