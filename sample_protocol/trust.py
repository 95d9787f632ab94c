"""The trust root: who the parties are, what they may sign, and with which keys.

``trust.json`` lists every party (the NCE lab, the tax body, the other data-owning
bodies, the register), its role, the sources it owns and its current public key. It is
signed by the lab's **root key** (``trust.json.minisig``, minisign format) and every
party pins that root public key out of band. Loading verifies the signature *before*
parsing anything (fail closed), and refuses a trust root older than the newest one
already seen (rollback protection through :class:`MonotonicCounter`).

Policy:

* Only a party's **current** key is trusted. Keys moved to ``previous_keys`` by
  :meth:`TrustRoot.rotate` are kept for the record (and so that an error can say
  "that key belonged to X and was rotated out"), but a signature made with one is
  refused (``trust_key_rotated``), whatever the artifact's date: dates are claimed by
  the signer, so they cannot make an old key safe again. Re-sign what must stay valid.
* A revoked party is refused for everything (``trust_revoked``). Revocation is undone
  only explicitly, with ``with_party(dataclasses.replace(p, revoked=False, revoked_reason=""))``.
* A key id appears at most once in a trust root (current or previous, any party), so a
  rotated-out key can never come back under another name.
* Every edit (:meth:`~TrustRoot.with_party`, :meth:`~TrustRoot.rotate`,
  :meth:`~TrustRoot.revoke`) returns a new root with ``version + 1``; the lab signs and
  distributes it with :func:`write_trust_root`.

Example::

    root = new_trust_root(lab_root_secret, [lab, tax, register])
    write_trust_root(root, "trust.json", lab_root_secret)
    trusted = load_trust_root("trust.json", root_public=lab_root_public, state_dir=state)
    signer = trusted.require_signer(sig.key_id, roles={Role.TAX_BODY}, source="TAX")
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import fcntl
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import _atomic
from .errors import SignatureError, TrustError, ValidationError
from .keys import PublicKey, SecretKey
from .serde import Record, canonical_json
from .signing import default_trusted_comment, sign_bytes, signature_path, verify_bytes

__all__ = [
    "TRUST_STATE_FILE",
    "MonotonicCounter",
    "Party",
    "Role",
    "TrustRoot",
    "load_trust_root",
    "new_trust_root",
    "write_trust_root",
]

#: Name of the file, inside a party's state directory, that records the newest
#: trust-root version seen.
TRUST_STATE_FILE = "trust_state.json"
_TRUST_COUNTER = "trust_root"
_MAX_SIG_READ = 64 * 1024

_KEY_ID_RE = re.compile(r"^[0-9A-F]{16}$")
_SOURCE_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
_COUNTER_NAME_RE = re.compile(r"^[A-Za-z0-9_.:/-]{1,200}$")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_PARTY_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class Role(enum.StrEnum):
    """What a party is allowed to sign."""

    LAB = "lab"  #: NCE model lab: sample requests, release bundles
    TAX_BODY = "tax_body"  #: the tax body: random-ID lists, its samples and batches
    BODY = "body"  #: any other data-owning body: its samples and batches
    REGISTER = "register"  #: the register: combined indexes, reports


@dataclass(frozen=True, slots=True)
class Party(Record):
    """One party of the federation and its keys."""

    name: str
    role: Role
    sources: tuple[str, ...]
    key: PublicKey
    previous_keys: tuple[PublicKey, ...] = ()
    revoked: bool = False
    revoked_reason: str = ""

    def validate(self) -> None:
        where = f"party {self.name!r}"
        problem = None
        if not _PARTY_NAME_RE.fullmatch(self.name):
            problem = (
                "expected a name of 1-64 letters, digits, '.', '_' or '-' starting with a "
                "letter or digit (it names files)"
            )
        elif bad := [s for s in self.sources if not _SOURCE_RE.match(s)]:
            problem = f"source code {bad[0]!r} is not an upper-case code like 'TAX'"
        elif len(set(self.sources)) != len(self.sources):
            problem = f"a source is listed twice in {list(self.sources)}"
        elif self.revoked and not self.revoked_reason.strip():
            problem = "a revoked party needs a revoked_reason"
        elif not self.revoked and self.revoked_reason:
            problem = "revoked_reason given but the party is not revoked"
        if problem:
            raise ValidationError(f"{where}: {problem}", code="trust_bad_party")
        for key in (self.key, *self.previous_keys):
            key.validate()  # key id format, and that it belongs to its signing key

    @property
    def key_id(self) -> str:
        """The key id of the party's current (only trusted) key."""
        return self.key.key_id


def _roles_set(roles: Role | Iterable[Role] | None) -> frozenset[Role] | None:
    if roles is None:
        return None
    if isinstance(roles, str):  # a Role is a str: do not iterate its characters
        return frozenset({Role(roles)})
    return frozenset(Role(r) for r in roles)


def _roles_text(roles: Iterable[Role]) -> str:
    return ", ".join(sorted(r.value for r in roles))


@dataclass(frozen=True, slots=True)
class TrustRoot(Record):
    """The signed list of parties. Edits return a new root with ``version + 1``."""

    version: int
    issued_at: dt.datetime
    root_key_id: str
    parties: tuple[Party, ...]

    def validate(self) -> None:
        where = f"trust root version {self.version}"
        problem = None
        if self.version < 1:
            problem = f"version must be >= 1, found {self.version}"
        elif self.issued_at.tzinfo is None or self.issued_at.utcoffset() is None:
            problem = f"issued_at must be timezone-aware, found {self.issued_at.isoformat()}"
        elif not _KEY_ID_RE.match(self.root_key_id):
            problem = f"root_key_id {self.root_key_id!r} is not 16 upper-case hex digits"
        elif not any(p.role is Role.LAB for p in self.parties):
            problem = "expected at least one party with role 'lab', found none"
        if problem:
            raise ValidationError(f"{where}: {problem}", code="trust_bad_root")
        names: set[str] = set()
        key_owner: dict[str, str] = {}
        for party in self.parties:
            party.validate()
            if party.name in names:
                raise ValidationError(
                    f"{where}: party {party.name!r} is listed twice", code="trust_bad_root"
                )
            names.add(party.name)
            for key in (party.key, *party.previous_keys):
                other = key_owner.get(key.key_id)
                if other is not None:
                    raise ValidationError(
                        f"{where}: key id {key.key_id} is used twice "
                        f"(party {other!r} and party {party.name!r}); every key id, current "
                        "or previous, must be unique",
                        code="trust_bad_root",
                    )
                key_owner[key.key_id] = party.name

    # -- look-ups ---------------------------------------------------------------

    def party(self, name: str) -> Party:
        """The party called ``name``; :class:`TrustError` ``trust_unknown_party`` if none."""
        for party in self.parties:
            if party.name == name:
                return party
        known = ", ".join(sorted(p.name for p in self.parties))
        raise TrustError(
            f"trust root version {self.version}: no party named {name!r} (parties: {known})",
            code="trust_unknown_party",
        )

    def party_for_key_id(self, key_id: str) -> Party:
        """The party that holds or held ``key_id`` (current or previous key).

        This is a look-up, not a trust decision: use :meth:`require_signer` for that.
        Raises :class:`TrustError` ``trust_unknown_signer`` if no party ever had the key.
        """
        for party in self.parties:
            if any(k.key_id == key_id for k in (party.key, *party.previous_keys)):
                return party
        raise TrustError(
            f"trust root version {self.version}: key id {key_id!r} belongs to no party",
            code="trust_unknown_signer",
        )

    def require_signer(
        self,
        key_id: str,
        *,
        roles: Role | Iterable[Role] | None = None,
        source: str | None = None,
    ) -> Party:
        """The party whose *current* key is ``key_id``, if it may sign this.

        Refuses, with :class:`TrustError`, a key that belongs to no party
        (``trust_unknown_signer``), a revoked party (``trust_revoked``), a rotated-out
        key (``trust_key_rotated``), a party whose role is not in ``roles``
        (``trust_wrong_role``) and a party that does not own ``source``
        (``trust_wrong_source``).
        """
        where = f"trust root version {self.version}"
        party = self.party_for_key_id(key_id)
        if party.revoked:
            raise TrustError(
                f"{where}: signer {party.name!r} (key {key_id}) is revoked: {party.revoked_reason}",
                code="trust_revoked",
            )
        if party.key.key_id != key_id:
            raise TrustError(
                f"{where}: key {key_id} of {party.name!r} was rotated out; only its current "
                f"key {party.key.key_id} is trusted",
                code="trust_key_rotated",
            )
        wanted = _roles_set(roles)
        if wanted is not None and party.role not in wanted:
            raise TrustError(
                f"{where}: signer {party.name!r} has role {party.role.value!r}, expected one "
                f"of: {_roles_text(wanted)}",
                code="trust_wrong_role",
            )
        if source is not None and source not in party.sources:
            owned = ", ".join(party.sources) or "none"
            raise TrustError(
                f"{where}: signer {party.name!r} does not own source {source!r} (it owns: {owned})",
                code="trust_wrong_source",
            )
        return party

    def trusted_keys(self, roles: Role | Iterable[Role] | None = None) -> dict[str, PublicKey]:
        """Current keys of the non-revoked parties (optionally of some roles), by key id.

        The result is what :func:`~sample_protocol.signing.verify_bytes` takes as ``keys``.
        """
        wanted = _roles_set(roles)
        return {
            p.key.key_id: p.key
            for p in self.parties
            if not p.revoked and (wanted is None or p.role in wanted)
        }

    # -- edits (each returns a new root, version + 1) ---------------------------------

    def _next(self, parties: Iterable[Party], issued_at: dt.datetime | None) -> TrustRoot:
        root = TrustRoot(
            version=self.version + 1,
            issued_at=issued_at or _utcnow(),
            root_key_id=self.root_key_id,
            parties=tuple(parties),
        )
        root.validate()
        return root

    def with_party(self, party: Party, *, issued_at: dt.datetime | None = None) -> TrustRoot:
        """Add ``party``, or replace the party of the same name.

        A replacement must keep the same current key (change keys with :meth:`rotate`,
        which keeps the old one on record); it may change role, sources or revocation.
        """
        party.validate()
        parties = list(self.parties)
        for i, old in enumerate(parties):
            if old.name == party.name:
                if old.key.key_id != party.key.key_id:
                    raise ValidationError(
                        f"trust root version {self.version}: party {party.name!r} would change "
                        f"key {old.key.key_id} to {party.key.key_id}; use rotate() for that",
                        code="trust_bad_edit",
                    )
                parties[i] = party
                break
        else:
            parties.append(party)
        return self._next(parties, issued_at)

    def rotate(
        self, name: str, new_key: PublicKey, *, issued_at: dt.datetime | None = None
    ) -> TrustRoot:
        """Make ``new_key`` the current key of ``name``; the old key is no longer trusted."""
        old = self.party(name)
        if new_key.key_id == old.key.key_id:
            raise ValidationError(
                f"trust root version {self.version}: rotate {name!r}: the new key "
                f"{new_key.key_id} is the current key",
                code="trust_bad_edit",
            )
        new = dataclasses.replace(old, key=new_key, previous_keys=(*old.previous_keys, old.key))
        return self._next((new if p.name == name else p for p in self.parties), issued_at)

    def revoke(self, name: str, reason: str, *, issued_at: dt.datetime | None = None) -> TrustRoot:
        """Mark ``name`` revoked: no signature of it is accepted any more."""
        old = self.party(name)
        if not reason.strip():
            raise ValidationError(
                f"trust root version {self.version}: revoke {name!r}: a reason is required",
                code="trust_bad_edit",
            )
        if old.revoked:
            raise ValidationError(
                f"trust root version {self.version}: party {name!r} is already revoked "
                f"({old.revoked_reason})",
                code="trust_bad_edit",
            )
        new = dataclasses.replace(old, revoked=True, revoked_reason=reason.strip())
        return self._next((new if p.name == name else p for p in self.parties), issued_at)


def new_trust_root(
    root: SecretKey, parties: Iterable[Party], *, issued_at: dt.datetime | None = None
) -> TrustRoot:
    """A first trust root (version 1) whose signer is the lab's root key ``root``."""
    record = TrustRoot(
        version=1,
        issued_at=issued_at or _utcnow(),
        root_key_id=root.key_id,
        parties=tuple(parties),
    )
    record.validate()
    return record


def write_trust_root(
    root_record: TrustRoot, path: str | os.PathLike[str], root_secret: SecretKey
) -> Path:
    """Write ``trust.json`` (canonical JSON) and ``trust.json.minisig``, each atomically.

    Refuses (``trust_wrong_root_key``) to sign with a key other than the root's own.
    """
    path = Path(path)
    if root_secret.key_id != root_record.root_key_id:
        raise TrustError(
            f"{path}: this trust root names root key {root_record.root_key_id}, but the "
            f"secret key given is {root_secret.key_id}",
            code="trust_wrong_root_key",
        )
    root_record.validate()
    data = root_record.canonical_bytes() + b"\n"
    comment = (
        default_trusted_comment(root_secret, file_name=path.name)
        + f"\ttrust_root_version:{root_record.version}"
    )
    signature = sign_bytes(data, root_secret, trusted_comment=comment)
    # Data first, then signature: a reader in between sees a mismatch and refuses.
    _atomic.write_bytes(path, data)
    _atomic.write_text(signature_path(path), signature)
    return path


def load_trust_root(
    path: str | os.PathLike[str],
    *,
    root_public: PublicKey,
    state_dir: str | os.PathLike[str] | None = None,
) -> TrustRoot:
    """Verify, then parse ``trust.json``; refuse a rollback if ``state_dir`` is given.

    The signature is checked over the exact bytes read, before any parsing. With
    ``state_dir``, the version must be at least the highest seen (recorded in
    ``state_dir/trust_state.json``), which then advances.
    """
    path = Path(path)
    sig_path = signature_path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TrustError(f"trust root {path}: file not found", code="trust_missing") from None
    except OSError as exc:
        raise TrustError(
            f"trust root {path}: cannot read ({exc.strerror})", code="trust_missing"
        ) from None
    try:
        with open(sig_path, "rb") as fh:
            sig_text = fh.read(_MAX_SIG_READ)  # the parser refuses anything that long
    except FileNotFoundError:
        raise SignatureError(
            f"trust root {path} is not signed: signature file {sig_path} not found "
            "(an unsigned trust root is never loaded)",
            code="signature_missing",
        ) from None
    except OSError as exc:
        raise SignatureError(
            f"trust root {path}: cannot read signature file {sig_path} ({exc.strerror})",
            code="signature_missing",
        ) from None
    verified = verify_bytes(data, sig_text, root_public, where=f"trust root {path}")
    try:
        record = TrustRoot.from_json(data, where=f"trust root {path}")
    except ValidationError as exc:  # SerdeError included; signed by the root, yet invalid
        message = str(exc) if str(path) in str(exc) else f"trust root {path}: {exc}"
        raise TrustError(message, code="trust_invalid") from exc
    if record.root_key_id != verified.key_id or verified.key_id != root_public.key_id:
        raise TrustError(
            f"trust root {path}: names root key {record.root_key_id} but is signed by "
            f"{verified.key_id} (pinned root key {root_public.key_id})",
            code="trust_wrong_root_key",
        )
    if state_dir is not None:
        MonotonicCounter(Path(state_dir) / TRUST_STATE_FILE).check_and_advance(
            _TRUST_COUNTER, record.version, what=f"trust root {path}"
        )
    return record


class MonotonicCounter:
    """Highest value seen per name, kept in one JSON file, for rollback protection.

    Several processes may use the same file: each read-modify-write holds an exclusive
    ``flock`` on ``<file>.lock`` and the file is replaced atomically. A corrupt file is
    an error, never a reset to zero (that would re-open the door to a rollback).

    >>> import tempfile
    >>> counter = MonotonicCounter(Path(tempfile.mkdtemp()) / "state.json")
    >>> counter.check_and_advance("release", 3, what="release r3")
    3
    >>> counter.current("release")
    3
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"MonotonicCounter({str(self.path)!r})"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _read(self) -> dict[str, int]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise TrustError(
                f"state file {self.path}: cannot read ({exc.strerror})", code="trust_state_corrupt"
            ) from None
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TrustError(
                f"state file {self.path}: not valid JSON ({exc}); refusing to guess the "
                "highest versions seen",
                code="trust_state_corrupt",
            ) from None
        counters = data.get("counters") if isinstance(data, dict) else None
        if not isinstance(counters, dict) or not all(
            isinstance(k, str) and type(v) is int and v >= 0 for k, v in counters.items()
        ):
            raise TrustError(
                f'state file {self.path}: expected {{"counters": {{name: integer >= 0}}}}; '
                "refusing to guess the highest versions seen",
                code="trust_state_corrupt",
            )
        return dict(counters)

    def values(self) -> dict[str, int]:
        """Every counter recorded, by name."""
        return self._read()

    def current(self, name: str) -> int:
        """The highest value accepted for ``name``; 0 if none yet."""
        return self._read().get(name, 0)

    def check_and_advance(self, name: str, value: int, *, what: str) -> int:
        """Refuse ``value`` below the highest seen for ``name``; else record it.

        An equal value is accepted (re-verifying the same artifact). Returns the
        highest value now recorded. ``what`` names the artifact in the error message.
        """
        if not _COUNTER_NAME_RE.match(name):
            raise ValidationError(
                f"counter name {name!r}: expected 1-200 characters from [A-Za-z0-9_.:/-]"
            )
        if type(value) is not int or value < 0:
            raise ValidationError(f"{what}: version must be an integer >= 0, found {value!r}")
        with self._locked():
            counters = self._read()
            seen = counters.get(name, 0)
            if value < seen:
                raise TrustError(
                    f"{what}: version {value} is older than version {seen} already seen "
                    f"(recorded in {self.path}); refusing a rollback",
                    code="trust_rollback",
                )
            if value > seen or name not in counters:
                counters[name] = value
                payload: Mapping[str, object] = {"counters": counters}
                _atomic.write_bytes(self.path, canonical_json(payload) + b"\n")
            return value
