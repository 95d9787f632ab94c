"""Detached signatures in minisign's format, so that ``minisign -V`` can check them.

A ``.minisig`` file has four lines::

    untrusted comment: <free text, not signed>
    base64("ED" + key id (8 bytes) + Ed25519 signature of BLAKE2b-512(file))
    trusted comment: <text, signed>
    base64(Ed25519 signature of (the 64-byte signature + the trusted comment))

We always sign prehashed (``ED``), so files of any size are streamed, never loaded. The
legacy ``Ed`` form (a signature over the raw file) is refused unless the caller passes
``allow_legacy=True``.

Example::

    sig = sign_bytes(b"hello", secret)
    verify_bytes(b"hello", sig, secret.public).signer   # -> secret.name
    sign_file("manifest.json", secret)                  # -> manifest.json.minisig
    verify_file("manifest.json", trusted_keys)          # raises SignatureError if bad
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.signing

from ._atomic import write_text
from .errors import SignatureError, ValidationError
from .keys import KEY_ID_BYTES, PublicKey, PublicKeys, SecretKey, format_key_id, index_public_keys
from .serde import Record

__all__ = [
    "LEGACY_ALGORITHM",
    "PREHASHED_ALGORITHM",
    "SIGNATURE_SUFFIX",
    "TRUSTED_COMMENT_MAX_BYTES",
    "UNTRUSTED_COMMENT_MAX_BYTES",
    "VerifiedSignature",
    "blake2b_file",
    "default_trusted_comment",
    "sign_bytes",
    "sign_file",
    "signature_path",
    "verify_bytes",
    "verify_file",
]

PREHASHED_ALGORITHM = b"ED"
LEGACY_ALGORITHM = b"Ed"
SIGNATURE_SUFFIX = ".minisig"
#: minisign 0.11 cannot read much longer comments back (measured: 4000 bytes fine,
#: 8000 overflow its buffer; untrusted: 1000 fine, 1010 not).
TRUSTED_COMMENT_MAX_BYTES = 2048
UNTRUSTED_COMMENT_MAX_BYTES = 512

_UNTRUSTED_PREFIX = b"untrusted comment: "
_TRUSTED_PREFIX = b"trusted comment: "
_SIG_LEN = 64
_SIG_BLOB_LEN = 2 + KEY_ID_BYTES + _SIG_LEN
_MAX_SIG_FILE_BYTES = 16 * 1024
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class VerifiedSignature(Record):
    """What a good signature tells: which key signed, and its signed comment."""

    key_id: str
    signer: str
    trusted_comment: str

    @property
    def fields(self) -> dict[str, str]:
        """The trusted comment's tab-separated ``name:value`` parts.

        >>> VerifiedSignature("0" * 16, "lab", "timestamp:1\\tsigner:lab").fields
        {'timestamp': '1', 'signer': 'lab'}
        """
        out: dict[str, str] = {}
        for part in self.trusted_comment.split("\t"):
            name, sep, value = part.partition(":")
            if sep:
                out[name.strip()] = value
        return out

    @property
    def timestamp(self) -> int | None:
        """The ``timestamp:`` of the trusted comment (Unix seconds), if there is one."""
        raw = self.fields.get("timestamp", "")
        return int(raw) if raw.isdigit() else None


@dataclass(frozen=True, slots=True)
class _Parsed:
    algorithm: bytes
    key_id_bytes: bytes
    signature: bytes
    trusted_comment: bytes
    global_signature: bytes


# --------------------------------------------------------------------------- helpers


def signature_path(path: str | os.PathLike[str]) -> Path:
    """Where the detached signature of ``path`` lives: ``path + ".minisig"``."""
    return Path(os.fspath(path) + SIGNATURE_SUFFIX)


def blake2b_file(path: str | os.PathLike[str]) -> bytes:
    """BLAKE2b-512 of a file, read in 1 MiB chunks (files can be gigabytes)."""
    digest = hashlib.blake2b()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.digest()


def _clean(text: str) -> str:
    return "".join("?" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in text)


def default_trusted_comment(
    secret: SecretKey, *, file_name: str | None = None, timestamp: int | None = None
) -> str:
    """``timestamp:<unix>\\tfile:<name>\\tsigner:<party>`` (``file`` left out if None)."""
    ts = int(time.time()) if timestamp is None else timestamp
    parts = [f"timestamp:{ts}"]
    if file_name is not None:
        parts.append(f"file:{_clean(file_name)}")
    parts.append(f"signer:{secret.name}")
    return "\t".join(parts)


def _comment_bytes(text: str, what: str, limit: int) -> bytes:
    raw = text.encode("utf-8")
    if "\n" in text or "\r" in text:
        raise ValidationError(
            f"{what}: expected one line, found a line break in {text[:60]!r}",
            code="invalid_comment",
        )
    if len(raw) > limit:
        raise ValidationError(
            f"{what}: expected at most {limit} UTF-8 bytes, found {len(raw)}",
            code="invalid_comment",
        )
    return raw


def _sign_digest(
    digest: bytes,
    secret: SecretKey,
    *,
    trusted_comment: str,
    untrusted_comment: str | None,
) -> str:
    trusted = _comment_bytes(trusted_comment, "trusted comment", TRUSTED_COMMENT_MAX_BYTES)
    untrusted_text = (
        f"signature from {secret.name} secret key {secret.key_id}"
        if untrusted_comment is None
        else untrusted_comment
    )
    untrusted = _comment_bytes(untrusted_text, "untrusted comment", UNTRUSTED_COMMENT_MAX_BYTES)
    signature = secret.signing_key.sign(digest).signature
    global_signature = secret.signing_key.sign(signature + trusted).signature
    blob = PREHASHED_ALGORITHM + secret.key_id_bytes + signature
    lines = [
        _UNTRUSTED_PREFIX + untrusted,
        base64.b64encode(blob),
        _TRUSTED_PREFIX + trusted,
        base64.b64encode(global_signature),
    ]
    return (b"\n".join(lines) + b"\n").decode("utf-8")


# --------------------------------------------------------------------------- signing


def sign_bytes(
    data: bytes,
    secret: SecretKey,
    *,
    trusted_comment: str | None = None,
    untrusted_comment: str | None = None,
    file_name: str | None = None,
) -> str:
    """The ``.minisig`` text of a prehashed signature of ``data``.

    ``trusted_comment`` defaults to :func:`default_trusted_comment` (with ``file_name``).
    """
    if trusted_comment is None:
        trusted_comment = default_trusted_comment(secret, file_name=file_name)
    return _sign_digest(
        hashlib.blake2b(data).digest(),
        secret,
        trusted_comment=trusted_comment,
        untrusted_comment=untrusted_comment,
    )


def sign_file(
    path: str | os.PathLike[str],
    secret: SecretKey,
    *,
    trusted_comment: str | None = None,
    untrusted_comment: str | None = None,
    sig_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Sign a file (streamed); write ``path + ".minisig"`` (or ``sig_path``) atomically."""
    path = Path(path)
    if trusted_comment is None:
        trusted_comment = default_trusted_comment(secret, file_name=path.name)
    text = _sign_digest(
        blake2b_file(path),
        secret,
        trusted_comment=trusted_comment,
        untrusted_comment=untrusted_comment,
    )
    return write_text(signature_path(path) if sig_path is None else sig_path, text)


# --------------------------------------------------------------------------- verifying


def _malformed(where: str, what: str) -> SignatureError:
    return SignatureError(f"{where}: not a minisign signature: {what}", code="signature_malformed")


def _b64_field(line: bytes, where: str, what: str, length: int) -> bytes:
    try:
        raw = base64.b64decode(line, validate=True)
    except binascii.Error:
        raise _malformed(where, f"{what} is not base64") from None
    if len(raw) != length:
        raise _malformed(where, f"{what}: expected {length} bytes, found {len(raw)}")
    return raw


def _parse(sig: str | bytes, where: str) -> _Parsed:
    data = sig.encode("utf-8") if isinstance(sig, str) else bytes(sig)
    if len(data) > _MAX_SIG_FILE_BYTES:
        raise _malformed(where, f"expected at most {_MAX_SIG_FILE_BYTES} bytes, found {len(data)}")
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    lines = [ln.removesuffix(b"\r") for ln in lines]
    if len(lines) != 4:
        raise _malformed(where, f"expected 4 lines, found {len(lines)}")
    if not lines[0].startswith(_UNTRUSTED_PREFIX):
        raise _malformed(where, "line 1: expected 'untrusted comment: ...'")
    if not lines[2].startswith(_TRUSTED_PREFIX):
        raise _malformed(where, "line 3: expected 'trusted comment: ...'")
    blob = _b64_field(lines[1], where, "line 2 (signature)", _SIG_BLOB_LEN)
    global_signature = _b64_field(lines[3], where, "line 4 (comment signature)", _SIG_LEN)
    return _Parsed(
        algorithm=blob[:2],
        key_id_bytes=blob[2 : 2 + KEY_ID_BYTES],
        signature=blob[2 + KEY_ID_BYTES :],
        trusted_comment=lines[2][len(_TRUSTED_PREFIX) :],
        global_signature=global_signature,
    )


def _check_algorithm(parsed: _Parsed, where: str, allow_legacy: bool) -> None:
    if parsed.algorithm == LEGACY_ALGORITHM:
        if not allow_legacy:
            raise SignatureError(
                f"{where}: legacy (non-prehashed 'Ed') minisign signature refused; "
                "re-sign with a current minisign (prehashed 'ED'), or allow legacy signatures",
                code="signature_legacy",
            )
    elif parsed.algorithm != PREHASHED_ALGORITHM:
        raise _malformed(where, f"expected algorithm 'ED', found {parsed.algorithm!r}")


def _describe(candidates: dict[str, tuple[PublicKey, ...]]) -> str:
    known = [f"{kid} ({k.name})" for kid, keys in sorted(candidates.items()) for k in keys]
    if not known:
        return "no keys were given"
    shown = ", ".join(known[:10])
    return f"known: {shown}" + (f" and {len(known) - 10} more" if len(known) > 10 else "")


def _verify(parsed: _Parsed, message: bytes, keys: PublicKeys, where: str) -> VerifiedSignature:
    index = index_public_keys(keys)
    kid = format_key_id(parsed.key_id_bytes)
    candidates = index.get(kid, ())
    if not candidates:
        raise SignatureError(
            f"{where}: signed by unknown key {kid} ({_describe(index)})",
            code="signature_unknown_key",
        )
    for key in candidates:
        verify_key = key.verify_key
        try:
            verify_key.verify(message, parsed.signature)
        except nacl.exceptions.BadSignatureError:
            continue
        try:
            verify_key.verify(parsed.signature + parsed.trusted_comment, parsed.global_signature)
        except nacl.exceptions.BadSignatureError:
            raise SignatureError(
                f"{where}: the trusted comment does not match its signature "
                "(the comment was altered after signing)",
                code="signature_comment_mismatch",
            ) from None
        try:
            comment = parsed.trusted_comment.decode("utf-8")
        except UnicodeDecodeError:
            raise _malformed(where, "the trusted comment is not UTF-8 text") from None
        return VerifiedSignature(key_id=kid, signer=key.name, trusted_comment=comment)
    names = ", ".join(k.name for k in candidates)
    raise SignatureError(
        f"{where}: signature does not match the content for key {kid} ({names}): "
        "the data was changed after signing, or the signature belongs to other data",
        code="signature_mismatch",
    )


def verify_bytes(
    data: bytes,
    sig_text: str | bytes,
    keys: PublicKeys,
    *,
    allow_legacy: bool = False,
    where: str = "data",
) -> VerifiedSignature:
    """Check ``sig_text`` (a ``.minisig``) over ``data`` with one of ``keys``.

    Raises :class:`SignatureError` with code ``signature_malformed``,
    ``signature_legacy``, ``signature_unknown_key``, ``signature_mismatch`` or
    ``signature_comment_mismatch``; ``where`` names the data in messages.
    """
    parsed = _parse(sig_text, f"signature of {where}")
    _check_algorithm(parsed, f"signature of {where}", allow_legacy)
    message = hashlib.blake2b(data).digest() if parsed.algorithm == PREHASHED_ALGORITHM else data
    return _verify(parsed, bytes(message), keys, f"signature of {where}")


def verify_file(
    path: str | os.PathLike[str],
    keys: PublicKeys,
    *,
    sig_path: str | os.PathLike[str] | None = None,
    allow_legacy: bool = False,
) -> VerifiedSignature:
    """Check ``path`` against ``path + ".minisig"`` (or ``sig_path``); streams the file.

    A missing signature file raises :class:`SignatureError` code ``signature_missing``.
    """
    path = Path(path)
    sig_file = signature_path(path) if sig_path is None else Path(sig_path)
    where = f"signature {sig_file} of file {path}"
    try:
        size = sig_file.stat().st_size
    except FileNotFoundError:
        raise SignatureError(
            f"file {path} is not signed: signature file {sig_file} not found "
            "(unsigned files are never loaded)",
            code="signature_missing",
        ) from None
    if size > _MAX_SIG_FILE_BYTES:
        raise _malformed(where, f"expected at most {_MAX_SIG_FILE_BYTES} bytes, found {size}")
    parsed = _parse(sig_file.read_bytes(), where)
    _check_algorithm(parsed, where, allow_legacy)
    if not path.is_file():
        raise SignatureError(
            f"{where}: the signed file {path} is missing", code="signed_file_missing"
        )
    prehashed = parsed.algorithm == PREHASHED_ALGORITHM
    message = blake2b_file(path) if prehashed else path.read_bytes()
    return _verify(parsed, message, keys, where)
