"""Every party's keys: an Ed25519 signing key and an X25519 key for sealed boxes.

A party's key pair lives in three files written by :func:`write_keypair`:

- ``NAME.key``: the secret key (JSON, mode 0600): both secret keys, never shown in a
  message, a ``repr`` or a log;
- ``NAME.pub``: the public record (:class:`PublicKey` as JSON), what goes into the
  trust root;
- ``NAME.minisign.pub``: the signing key in minisign's format, so that anyone can check
  our signatures with the standard tool: ``minisign -Vm FILE -p NAME.minisign.pub``.

The key id is 8 bytes derived from the Ed25519 public key (the first 8 bytes of its
BLAKE2b-512 digest), so a key always has the same id. As text it is written the way
minisign prints it: the id bytes reversed, as 16 upper-case hex digits.

Example::

    secret = generate_keypair("lab")
    files = write_keypair(secret, "keys/")
    same = load_secret_key(files.secret)
    assert same.public == load_public_key(files.public)

A public key read from a minisign ``.pub`` file keeps minisign's (random) key id and has
no box key (``box_public == ""``): it can verify signatures but cannot receive sealed
envelopes (:attr:`PublicKey.can_receive` is false).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeAlias

import nacl.exceptions
import nacl.public
import nacl.signing

from ._atomic import write_text
from .errors import KeyFileError, ValidationError
from .serde import Record

__all__ = [
    "KEY_ID_BYTES",
    "KeyFiles",
    "PublicKey",
    "PublicKeys",
    "SecretKey",
    "derive_key_id",
    "format_key_id",
    "generate_keypair",
    "index_public_keys",
    "load_public_key",
    "load_secret_key",
    "parse_key_id",
    "parse_minisign_public_key",
    "read_minisign_public_key",
    "write_keypair",
    "write_minisign_public_key",
]

#: Length of a key id in bytes (minisign's ``keynum``).
KEY_ID_BYTES = 8
_KEY_BYTES = 32
_MINISIGN_ALG = b"Ed"
_MINISIGN_PUBKEY_LEN = 2 + KEY_ID_BYTES + _KEY_BYTES
_MINISIGN_SECKEY_LEN = 2 + 2 + 2 + 32 + 8 + 8 + KEY_ID_BYTES + 64 + 32
_UNTRUSTED_PREFIX = "untrusted comment:"
_SECRET_KIND = "SecretKey"  # noqa: S105 - a record kind, not a password
_SECRET_VERSION = 1
_MAX_KEY_FILE_BYTES = 64 * 1024
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_KEY_ID_RE = re.compile(r"[0-9A-F]{16}")


# --------------------------------------------------------------------------- key ids


def derive_key_id(sign_public: bytes) -> bytes:
    """The 8-byte key id of an Ed25519 public key (the order minisign files store).

    >>> len(derive_key_id(bytes(32)))
    8
    """
    if len(sign_public) != _KEY_BYTES:
        raise ValidationError(
            f"Ed25519 public key: expected {_KEY_BYTES} bytes, found {len(sign_public)}",
            code="invalid_key",
        )
    return hashlib.blake2b(sign_public).digest()[:KEY_ID_BYTES]


def format_key_id(key_id_bytes: bytes) -> str:
    """Key id bytes as minisign prints them: reversed, 16 upper-case hex digits.

    >>> format_key_id(bytes.fromhex("240bce5fe2c80a5e"))
    '5E0AC8E25FCE0B24'
    """
    if len(key_id_bytes) != KEY_ID_BYTES:
        raise ValidationError(
            f"key id: expected {KEY_ID_BYTES} bytes, found {len(key_id_bytes)}",
            code="invalid_key_id",
        )
    return key_id_bytes[::-1].hex().upper()


def parse_key_id(text: str) -> bytes:
    """The inverse of :func:`format_key_id`: 16 hex digits to the 8 id bytes."""
    if not isinstance(text, str) or not _KEY_ID_RE.fullmatch(text):
        raise ValidationError(
            f"key id: expected 16 upper-case hex digits, found {text!r}", code="invalid_key_id"
        )
    return bytes.fromhex(text)[::-1]


def _check_name(name: str, where: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValidationError(
            f"{where}: expected a key name of 1-64 letters, digits, '.', '_' or '-' "
            f"(starting with a letter or digit), found {name!r}",
            code="invalid_key_name",
        )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str, where: str, expected_len: int) -> bytes:
    """Decode strict base64 of ``expected_len`` bytes (the message never shows the text)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, AttributeError):
        raise ValidationError(f"{where}: expected base64, found something else") from None
    if len(raw) != expected_len:
        raise ValidationError(f"{where}: expected {expected_len} bytes of base64, found {len(raw)}")
    return raw


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class PublicKey(Record):
    """A party's public keys, as shared in ``NAME.pub`` and the trust root.

    ``box_public`` is empty for a verify-only key (one read from a minisign ``.pub``
    file); such a key may carry any key id, since minisign's ids are random.
    """

    name: str
    key_id: str
    sign_public: str
    box_public: str

    def validate(self) -> None:
        where = f"public key {self.name!r}"
        _check_name(self.name, f"{where} name")
        raw = _unb64(self.sign_public, f"{where} sign_public", _KEY_BYTES)
        kid = parse_key_id(self.key_id)
        if self.box_public:
            _unb64(self.box_public, f"{where} box_public", _KEY_BYTES)
            expected = derive_key_id(raw)
            if kid != expected:
                raise ValidationError(
                    f"{where}: key_id {self.key_id} does not belong to its signing key "
                    f"(expected {format_key_id(expected)})",
                    code="invalid_key_id",
                )

    @classmethod
    def from_verify_key(
        cls,
        name: str,
        verify_key: nacl.signing.VerifyKey,
        *,
        key_id_bytes: bytes | None = None,
        box_key: nacl.public.PublicKey | None = None,
    ) -> PublicKey:
        """Build a public key; without ``box_key`` it is verify-only.

        ``key_id_bytes`` defaults to the id derived from ``verify_key``; pass minisign's
        id to wrap a key that minisign generated.
        """
        raw = bytes(verify_key)
        kid = derive_key_id(raw) if key_id_bytes is None else key_id_bytes
        key = cls(
            name=name,
            key_id=format_key_id(kid),
            sign_public=_b64(raw),
            box_public="" if box_key is None else _b64(bytes(box_key)),
        )
        key.validate()
        return key

    @property
    def key_id_bytes(self) -> bytes:
        """The key id in the byte order written into minisign files."""
        return parse_key_id(self.key_id)

    @property
    def verify_key(self) -> nacl.signing.VerifyKey:
        """The Ed25519 key that checks this party's signatures."""
        raw = _unb64(self.sign_public, f"public key {self.name!r} sign_public", _KEY_BYTES)
        return nacl.signing.VerifyKey(raw)

    @property
    def can_receive(self) -> bool:
        """Whether envelopes can be sealed to this key (it has an X25519 box key)."""
        return bool(self.box_public)

    @property
    def box_key(self) -> nacl.public.PublicKey:
        """The X25519 key that envelopes are sealed to."""
        if not self.box_public:
            raise ValidationError(
                f"public key {self.name!r} ({self.key_id}) is verify-only (read from a "
                "minisign file): it has no box key, so nothing can be sealed to it",
                code="key_verify_only",
            )
        raw = _unb64(self.box_public, f"public key {self.name!r} box_public", _KEY_BYTES)
        return nacl.public.PublicKey(raw)


class SecretKey:
    """A party's secret keys. Never serialised except by :func:`write_keypair`.

    Its ``repr`` and ``str`` show the name and key id only; it cannot be pickled.
    """

    __slots__ = ("box_secret", "key_id", "name", "signing_key")

    name: str
    key_id: str
    signing_key: nacl.signing.SigningKey
    box_secret: nacl.public.PrivateKey

    def __init__(
        self,
        name: str,
        signing_key: nacl.signing.SigningKey,
        box_secret: nacl.public.PrivateKey,
    ) -> None:
        _check_name(name, "secret key name")
        self.name = name
        self.signing_key = signing_key
        self.box_secret = box_secret
        self.key_id = format_key_id(derive_key_id(bytes(signing_key.verify_key)))

    @property
    def key_id_bytes(self) -> bytes:
        """The key id in the byte order written into minisign files."""
        return parse_key_id(self.key_id)

    @property
    def public(self) -> PublicKey:
        """The matching public record."""
        return PublicKey(
            name=self.name,
            key_id=self.key_id,
            sign_public=_b64(bytes(self.signing_key.verify_key)),
            box_public=_b64(bytes(self.box_secret.public_key)),
        )

    def __repr__(self) -> str:
        return f"SecretKey(name={self.name!r}, key_id={self.key_id!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretKey):
            return NotImplemented
        return (
            self.name == other.name
            and hmac.compare_digest(bytes(self.signing_key), bytes(other.signing_key))
            and hmac.compare_digest(bytes(self.box_secret), bytes(other.box_secret))
        )

    def __hash__(self) -> int:
        return hash((self.name, self.key_id))

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("SecretKey cannot be pickled or copied; write it with write_keypair")


#: What verifiers accept as "the keys I trust": one key, a mapping (its values are
#: used, e.g. party name -> key), or any iterable of keys.
PublicKeys: TypeAlias = PublicKey | Mapping[str, PublicKey] | Iterable[PublicKey]


def index_public_keys(keys: PublicKeys) -> dict[str, tuple[PublicKey, ...]]:
    """Index keys by key id (text form). Several keys may share an id (minisign's ids
    are random), so each id maps to a tuple of candidates.

    >>> k = generate_keypair("lab").public
    >>> index_public_keys({"lab": k}) == {k.key_id: (k,)}
    True
    """
    if isinstance(keys, PublicKey):
        items: Iterable[object] = (keys,)
    elif isinstance(keys, Mapping):
        items = keys.values()
    else:
        items = keys
    index: dict[str, list[PublicKey]] = {}
    for key in items:
        if not isinstance(key, PublicKey):
            raise TypeError(f"expected PublicKey objects, found {type(key).__name__}")
        bucket = index.setdefault(key.key_id, [])
        if key not in bucket:
            bucket.append(key)
    return {kid: tuple(bucket) for kid, bucket in index.items()}


@dataclass(frozen=True, slots=True)
class KeyFiles:
    """The three files of a key pair."""

    secret: Path
    public: Path
    minisign_public: Path


# --------------------------------------------------------------------------- generate / write


def generate_keypair(name: str) -> SecretKey:
    """A fresh key pair (Ed25519 for signing, X25519 for sealed boxes) for party ``name``."""
    return SecretKey(name, nacl.signing.SigningKey.generate(), nacl.public.PrivateKey.generate())


def _key_files(name: str, out_dir: Path) -> KeyFiles:
    return KeyFiles(
        secret=out_dir / f"{name}.key",
        public=out_dir / f"{name}.pub",
        minisign_public=out_dir / f"{name}.minisign.pub",
    )


def write_keypair(
    secret: SecretKey, out_dir: str | os.PathLike[str], *, overwrite: bool = False
) -> KeyFiles:
    """Write ``NAME.key`` (mode 0600), ``NAME.pub`` and ``NAME.minisign.pub`` in ``out_dir``.

    Refuses (:class:`KeyFileError`, code ``key_exists``) when any of them exists, unless
    ``overwrite``; in that case nothing is written.
    """
    files = _key_files(secret.name, Path(out_dir))
    if not overwrite:
        for path in dataclasses.astuple(files):
            if os.path.lexists(path):
                raise KeyFileError(
                    f"key file {path} already exists: refusing to overwrite a key "
                    "(move it away, or pass overwrite=True / --force to replace it)",
                    code="key_exists",
                )
    doc = {
        "kind": _SECRET_KIND,
        "version": _SECRET_VERSION,
        "name": secret.name,
        "key_id": secret.key_id,
        "ed25519_seed": _b64(bytes(secret.signing_key)),
        "x25519_secret": _b64(bytes(secret.box_secret)),
    }
    write_text(files.secret, json.dumps(doc, indent=2, sort_keys=True) + "\n", mode=0o600)
    write_text(files.public, secret.public.to_json() + "\n")
    write_minisign_public_key(secret.public, files.minisign_public)
    return files


# --------------------------------------------------------------------------- minisign files


def write_minisign_public_key(public: PublicKey, path: str | os.PathLike[str]) -> Path:
    """Write ``public``'s signing key as a minisign public key file."""
    raw = _MINISIGN_ALG + public.key_id_bytes + bytes(public.verify_key)
    text = f"untrusted comment: minisign public key {public.key_id}\n{_b64(raw)}\n"
    return write_text(path, text)


def parse_minisign_public_key(
    text: str, *, where: str = "minisign public key"
) -> tuple[bytes, nacl.signing.VerifyKey]:
    """Parse a minisign public key (the file's text, or its bare base64 line)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if lines and lines[0].lower().startswith(_UNTRUSTED_PREFIX):
        comment, lines = lines[0], lines[1:]
        if "secret key" in comment:
            raise KeyFileError(
                f"{where} is a minisign secret key, expected a public key "
                "(the .pub file minisign wrote next to it)",
                code="key_wrong_kind",
            )
    if len(lines) != 1:
        raise KeyFileError(
            f"{where}: expected a minisign public key (an 'untrusted comment:' line and one "
            f"base64 line), found {len(lines)} key line(s)",
            code="key_corrupt",
        )
    try:
        raw = base64.b64decode(lines[0].encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise KeyFileError(
            f"{where}: expected base64 on the key line, found other characters",
            code="key_corrupt",
        ) from None
    if len(raw) == _MINISIGN_SECKEY_LEN:
        raise KeyFileError(
            f"{where} is a minisign secret key, expected a public key", code="key_wrong_kind"
        )
    if len(raw) != _MINISIGN_PUBKEY_LEN or raw[:2] != _MINISIGN_ALG:
        raise KeyFileError(
            f"{where}: expected {_MINISIGN_PUBKEY_LEN} bytes starting with 'Ed', "
            f"found {len(raw)} bytes starting with {raw[:2]!r}",
            code="key_corrupt",
        )
    return raw[2 : 2 + KEY_ID_BYTES], nacl.signing.VerifyKey(raw[2 + KEY_ID_BYTES :])


def read_minisign_public_key(
    path: str | os.PathLike[str],
) -> tuple[bytes, nacl.signing.VerifyKey]:
    """Read a minisign public key file: ``(key_id_bytes, verify_key)``."""
    path = Path(path)
    return parse_minisign_public_key(_read_key_text(path), where=f"key file {path}")


# --------------------------------------------------------------------------- loading


def _read_key_text(path: Path) -> str:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(
            f"key file {path} not found (create one with `keys new`, or check the path)",
            code="key_missing",
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"key file {path} is not a regular file", code="key_corrupt")
    if st.st_size > _MAX_KEY_FILE_BYTES:
        raise KeyFileError(
            f"key file {path}: expected a small key file, found {st.st_size} bytes",
            code="key_corrupt",
        )
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise KeyFileError(
            f"key file {path}: expected UTF-8 text (JSON or minisign), found binary data",
            code="key_corrupt",
        ) from None


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _corrupt(path: Path, what: str) -> NoReturn:
    raise KeyFileError(
        f"secret key file {path} is corrupt: {what} (restore it from your backup, or "
        "create a new key with `keys new` and have the trust root updated)",
        code="key_corrupt",
    )


def load_secret_key(path: str | os.PathLike[str]) -> SecretKey:
    """Load ``NAME.key``; refuses files readable by group or others.

    Errors (:class:`KeyFileError`): ``key_missing``, ``key_wrong_kind`` (a public key
    was given), ``key_permissions`` (``mode & 0o077``), ``key_corrupt``.
    """
    path = Path(path)
    text = _read_key_text(path)
    data = _json_object(text)
    kind = data.get("kind") if data is not None else None
    if kind == PublicKey.kind() or text.lstrip().lower().startswith(_UNTRUSTED_PREFIX):
        raise KeyFileError(
            f"key file {path} is a public key, expected a secret key (NAME.key, not "
            "NAME.pub or NAME.minisign.pub)",
            code="key_wrong_kind",
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"secret key file {path} is accessible by group or others (mode {mode:04o}, "
            f"expected 0600): run `chmod 600 {path}`, and consider the key compromised "
            "if others may have read it",
            code="key_permissions",
        )
    if data is None:
        _corrupt(path, "expected a JSON object")
    if kind != _SECRET_KIND:
        _corrupt(path, f"expected kind {_SECRET_KIND!r}, found {kind!r}")
    if data.get("version") != _SECRET_VERSION:
        _corrupt(path, f"expected version {_SECRET_VERSION}, found {data.get('version')!r}")
    fields = ("name", "key_id", "ed25519_seed", "x25519_secret")
    missing = [f for f in fields if not isinstance(data.get(f), str)]
    if missing:
        _corrupt(path, f"missing or non-string field(s) {', '.join(missing)}")
    try:
        seed = _unb64(data["ed25519_seed"], "field ed25519_seed", _KEY_BYTES)
        box = _unb64(data["x25519_secret"], "field x25519_secret", _KEY_BYTES)
        secret = SecretKey(data["name"], nacl.signing.SigningKey(seed), nacl.public.PrivateKey(box))
    except (ValidationError, nacl.exceptions.CryptoError) as exc:
        _corrupt(path, str(exc))
    if secret.key_id != data["key_id"]:
        _corrupt(
            path,
            f"key_id {data['key_id']!r} does not match its signing key (expected {secret.key_id})",
        )
    return secret


def _name_from_path(path: Path) -> str:
    stem = path.name
    for suffix in (".pub", ".minisign"):
        stem = stem.removesuffix(suffix)
    return stem


def load_public_key(path: str | os.PathLike[str], *, name: str | None = None) -> PublicKey:
    """Load a public key: our ``NAME.pub`` JSON, or a minisign public key file.

    A minisign file gives a verify-only key (no box key) named ``name`` or, by default,
    after the file (``alice.minisign.pub`` -> ``alice``).
    """
    path = Path(path)
    text = _read_key_text(path)
    if text.lstrip().lower().startswith(_UNTRUSTED_PREFIX):
        kid, verify_key = parse_minisign_public_key(text, where=f"key file {path}")
        key_name = name or _name_from_path(path)
        try:
            return PublicKey.from_verify_key(key_name, verify_key, key_id_bytes=kid)
        except ValidationError as exc:
            raise KeyFileError(f"key file {path}: {exc}", code="key_corrupt") from None
    data = _json_object(text)
    if data is None:
        raise KeyFileError(
            f"key file {path}: expected a public key (JSON NAME.pub or minisign .pub), "
            "found neither",
            code="key_corrupt",
        )
    if data.get("kind") == _SECRET_KIND:
        raise KeyFileError(
            f"key file {path} is a SECRET key, expected a public key: share NAME.pub, "
            "never NAME.key",
            code="key_wrong_kind",
        )
    try:
        return PublicKey.from_dict(data, where=f"key file {path}")
    except ValidationError as exc:
        message = str(exc) if str(path) in str(exc) else f"key file {path}: {exc}"
        raise KeyFileError(message, code="key_corrupt") from None
