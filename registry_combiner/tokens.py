"""The service's users and their bearer tokens (para 31: users are registered).

A token file (``TOKENS.json``, mode 0600, written atomically) maps each user name to the
**SHA-256 of their token**, never the token itself::

    {"kind": "TokenFile", "version": 1, "users": {
        "alice": {"kind": "TokenEntry", "sha256": "<64 hex>", "access": "full",
                  "entity": null, "created_at": "2026-11-23T10:00:00+00:00"}}}

* ``access``: ``basic`` (the free basic view of para 37, search and one's own checks) or
  ``full`` (also the full view and signed reports).
* ``entity``: a BIN/IIN the user speaks for. Only such a user may see who checked that
  entity (para 36: "business entities ... obtain information about users who requested
  information about him/her"); the register issues these tokens to an entity after it has
  identified the entity's representative, which is outside this tool.

``registry-combiner tokens add USER`` draws a fresh random token (``kzr_`` + 256 random
bits, URL-safe), prints it once and stores its hash. :meth:`Tokens.authenticate` hashes the
token a request presents and compares it with every user's hash using
:func:`hmac.compare_digest`, so neither a hit nor a miss ends early.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from sample_protocol import _atomic
from sample_protocol.errors import ValidationError
from sample_protocol.identifiers import validate_identifier
from sample_protocol.serde import Record

from .errors import RegistryInputError

__all__ = [
    "ACCESS_LEVELS",
    "TOKEN_PREFIX",
    "TokenEntry",
    "TokenFile",
    "TokenUser",
    "Tokens",
    "add_user",
    "check_user_name",
    "hash_token",
    "list_users",
    "load_tokens",
    "remove_user",
]

#: What a token may see: the free basic view only, or everything.
ACCESS_LEVELS = ("basic", "full")
#: Every token starts with this, so a leaked one is easy to recognise in logs and scans.
TOKEN_PREFIX = "kzr_"  # noqa: S105 - a public prefix, not a secret
#: Longest token :meth:`Tokens.authenticate` hashes (longer ones are wrong anyway).
MAX_TOKEN_CHARS = 256
_USER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_HEX_RE = re.compile(r"[0-9a-f]{64}")
_MAX_FILE_BYTES = 16 << 20


def hash_token(token: str) -> str:
    """The lower-case hex SHA-256 of a token's UTF-8 bytes (what the file stores)."""
    return hashlib.sha256(token.encode("utf-8", errors="surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenEntry(Record):
    """One user's line of the token file: the hash of their token and their rights."""

    sha256: str
    access: str = "full"
    entity: str | None = None
    created_at: dt.datetime | None = None

    def validate(self) -> None:
        if not _HEX_RE.fullmatch(self.sha256):
            raise ValidationError(
                "sha256: expected 64 lower-case hex digits", code="tokens_corrupt"
            )
        if self.access not in ACCESS_LEVELS:
            raise ValidationError(
                f"access: expected one of {', '.join(ACCESS_LEVELS)}, found {self.access!r}",
                code="tokens_corrupt",
            )
        if self.entity is not None:
            validate_identifier(self.entity, where="entity")


@dataclass(frozen=True, slots=True)
class TokenUser:
    """An authenticated (or listed) user."""

    name: str
    access: str
    entity: str | None
    created_at: dt.datetime | None

    @property
    def full(self) -> bool:
        """Whether the user may see the full view and get signed reports."""
        return self.access == "full"


@dataclass(frozen=True, slots=True)
class TokenFile(Record):
    """The token file's content."""

    version: int = 1
    users: dict[str, TokenEntry] = field(default_factory=dict)

    def validate(self) -> None:
        if self.version != 1:
            raise ValidationError(
                f"token file: expected version 1, found {self.version}", code="tokens_corrupt"
            )
        for name in self.users:
            if not _USER_RE.fullmatch(name):
                raise ValidationError(
                    f"token file: user name {name[:80]!r} is not 1-64 letters, digits, '.', "
                    "'_', '@' or '-'",
                    code="tokens_corrupt",
                )


def check_user_name(name: str) -> str:
    """``name`` if it is 1-64 letters, digits, ``.``, ``_``, ``@`` or ``-``."""
    if not isinstance(name, str) or not _USER_RE.fullmatch(name):
        raise RegistryInputError(
            f"user name: expected 1-64 letters, digits, '.', '_', '@' or '-' starting with a "
            f"letter or digit, found {str(name)[:80]!r}",
            code="token_bad_user",
        )
    return name


def _user(name: str, entry: TokenEntry) -> TokenUser:
    return TokenUser(
        name=name, access=entry.access, entity=entry.entity, created_at=entry.created_at
    )


class Tokens:
    """The users of a token file, for authenticating requests."""

    def __init__(self, entries: dict[str, TokenEntry]) -> None:
        self._entries = [(entry.sha256, _user(name, entry)) for name, entry in entries.items()]

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, token: str | None) -> TokenUser | None:
        """The user whose token this is, or None (every user's hash is compared)."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        presented = hash_token(token)
        found: TokenUser | None = None
        for digest, user in self._entries:
            if hmac.compare_digest(digest, presented):
                found = user
        return found


def _read(path: Path) -> TokenFile:
    where = f"token file {path}"
    try:
        st = path.stat()
    except FileNotFoundError:
        raise RegistryInputError(
            f"{where}: not found (create it with `registry-combiner tokens add USER "
            f"--tokens {path}`)",
            code="tokens_missing",
        ) from None
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise RegistryInputError(
            f"{where}: accessible by group or others (mode {mode:04o}, expected 0600): run "
            f"`chmod 600 {path}`",
            code="tokens_permissions",
        )
    if st.st_size > _MAX_FILE_BYTES:
        raise RegistryInputError(
            f"{where}: expected at most {_MAX_FILE_BYTES} bytes, found {st.st_size}",
            code="tokens_corrupt",
        )
    try:
        return TokenFile.from_json(path.read_bytes(), where=where)
    except ValidationError as exc:
        message = str(exc) if where in str(exc) else f"{where}: {exc}"
        raise RegistryInputError(message, code="tokens_corrupt") from None


def load_tokens(path: str | os.PathLike[str]) -> Tokens:
    """Read a token file (refusing one readable by group or others)."""
    return Tokens(_read(Path(path)).users)


def _write(path: Path, data: TokenFile) -> None:
    text = TokenFile(version=data.version, users=dict(sorted(data.users.items()))).to_json()
    _atomic.write_text(path, text + "\n", mode=0o600)


def add_user(
    path: str | os.PathLike[str],
    name: str,
    *,
    access: str = "full",
    entity: str | None = None,
    replace_existing: bool = False,
    now: dt.datetime | None = None,
) -> tuple[str, TokenUser]:
    """Add ``name`` with a fresh token (or give it a new one); return the token, once.

    The file is created (0600) when missing. An existing user is refused
    (``token_user_exists``) unless ``replace_existing``, which revokes the old token.
    """
    path = Path(path)
    check_user_name(name)
    if access not in ACCESS_LEVELS:
        raise RegistryInputError(
            f"access: expected one of {', '.join(ACCESS_LEVELS)}, found {access!r}",
            code="token_bad_access",
        )
    bound = None if entity is None else validate_identifier(entity, where="entity")
    data = _read(path) if path.exists() else TokenFile()
    if name in data.users and not replace_existing:
        raise RegistryInputError(
            f"token file {path}: user {name!r} already exists (use --replace to issue a new "
            "token, which revokes the old one)",
            code="token_user_exists",
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    entry = TokenEntry(
        sha256=hash_token(token),
        access=access,
        entity=bound,
        created_at=(now or dt.datetime.now(dt.UTC)).replace(microsecond=0),
    )
    _write(path, TokenFile(users={**data.users, name: entry}))
    return token, _user(name, entry)


def remove_user(path: str | os.PathLike[str], name: str) -> None:
    """Remove ``name`` (its token stops working as soon as a server sees the new file)."""
    path = Path(path)
    data = _read(path)
    if name not in data.users:
        raise RegistryInputError(
            f"token file {path}: no user {str(name)[:80]!r}", code="token_user_unknown"
        )
    _write(path, TokenFile(users={n: u for n, u in data.users.items() if n != name}))


def list_users(path: str | os.PathLike[str]) -> list[TokenUser]:
    """The users of a token file (name, access, entity, created), by name."""
    return [_user(n, e) for n, e in sorted(_read(Path(path)).users.items())]
