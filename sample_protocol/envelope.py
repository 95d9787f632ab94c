"""Sealed envelopes: sign, then seal to the recipient's X25519 key.

An envelope carries one payload (a sample, a batch) from one party to another as a file,
so that air-gapped bodies work. Layout::

    b"KZSE1"                      magic and format version (plaintext)
    recipient key id (8 bytes)    so a wrong recipient gets a clear error (plaintext)
    ciphertext length (8 bytes, big-endian)
    SealedBox(recipient, inner)   anonymous, authenticated public-key encryption

    inner = header length (4 bytes, big-endian) + header (canonical JSON)
            + Ed25519 signature (64 bytes) + payload

The header (:class:`EnvelopeHeader`) names the kind of payload, the sender, the recipient, the
creation time, a random envelope id and the payload's SHA-256 and size; the sender signs
``domain tag + header``, which covers the payload through its hash. Opening decrypts,
verifies the signature with a trusted sender key, checks the recipient, the payload hash
and the kind, and only then returns anything.

Example::

    blob = seal(data, sender=tax_key, recipient=lab_public, kind="sample")
    opened = open_envelope(blob, recipient=lab_key, senders=trusted, expected_kind="sample")
    opened.payload == data
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nacl.exceptions
import nacl.public

from ._atomic import atomic_open, write_bytes
from .errors import EnvelopeError, SerdeError, ValidationError
from .keys import KEY_ID_BYTES, PublicKey, PublicKeys, SecretKey, index_public_keys, parse_key_id
from .serde import Record

__all__ = [
    "ENVELOPE_MAGIC",
    "EnvelopeHeader",
    "OpenedEnvelope",
    "envelope_recipient",
    "open_envelope",
    "open_file",
    "seal",
    "seal_file",
]

ENVELOPE_MAGIC = b"KZSE1"
_VERSION = 1
_SIG_DOMAIN = b"kz-federated-scoring/envelope/v1\x00"
_SIG_LEN = 64
_LEN_BYTES = 8
_HEADER_LEN_BYTES = 4
_PREFIX_LEN = len(ENVELOPE_MAGIC) + KEY_ID_BYTES + _LEN_BYTES
_MAX_HEADER_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class EnvelopeHeader(Record):
    """The signed header inside an envelope."""

    version: int
    payload_kind: str
    sender: str
    sender_key_id: str
    recipient: str
    recipient_key_id: str
    created_at: dt.datetime
    envelope_id: str
    payload_sha256: str
    payload_size: int
    meta: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        if self.version != _VERSION:
            raise ValidationError(
                f"envelope header: expected version {_VERSION}, found {self.version}"
            )
        if not self.payload_kind:
            raise ValidationError("envelope header: expected a non-empty payload_kind")
        parse_key_id(self.sender_key_id)
        parse_key_id(self.recipient_key_id)
        if len(self.payload_sha256) != 64 or self.payload_size < 0:
            raise ValidationError("envelope header: malformed payload hash or size")


@dataclass(frozen=True, slots=True)
class OpenedEnvelope:
    """An envelope that passed every check. ``sender`` is the trusted key's name."""

    payload: bytes = field(repr=False)
    kind: str
    sender: str
    sender_key_id: str
    envelope_id: str
    created_at: dt.datetime
    meta: dict[str, str]
    payload_sha256: str


def _check_meta(meta: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (meta or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValidationError(
                f"envelope meta: expected str keys and values, found {key!r}: {value!r}",
                code="invalid_envelope_meta",
            )
        out[key] = value
    return out


def _seal_ciphertext(
    payload: bytes,
    *,
    sender: SecretKey,
    recipient: PublicKey,
    kind: str,
    meta: Mapping[str, str] | None,
) -> tuple[bytes, bytes]:
    """``(plaintext prefix, ciphertext)`` of an envelope."""
    if not kind or not isinstance(kind, str):
        raise ValidationError(f"envelope kind: expected a non-empty string, found {kind!r}")
    if not recipient.can_receive:
        raise EnvelopeError(
            f"cannot seal to {recipient.name!r} ({recipient.key_id}): it is a verify-only "
            "key without a box key (use the party's NAME.pub)",
            code="envelope_recipient_no_box_key",
        )
    header = EnvelopeHeader(
        version=_VERSION,
        payload_kind=kind,
        sender=sender.name,
        sender_key_id=sender.key_id,
        recipient=recipient.name,
        recipient_key_id=recipient.key_id,
        created_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
        envelope_id=secrets.token_hex(16),
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        payload_size=len(payload),
        meta=_check_meta(meta),
    )
    header_bytes = header.canonical_bytes()
    signature = sender.signing_key.sign(_SIG_DOMAIN + header_bytes).signature
    inner = b"".join(
        [len(header_bytes).to_bytes(_HEADER_LEN_BYTES, "big"), header_bytes, signature, payload]
    )
    ciphertext = nacl.public.SealedBox(recipient.box_key).encrypt(inner)
    del inner
    prefix = ENVELOPE_MAGIC + recipient.key_id_bytes + len(ciphertext).to_bytes(_LEN_BYTES, "big")
    return prefix, ciphertext


def seal(
    payload: bytes,
    *,
    sender: SecretKey,
    recipient: PublicKey,
    kind: str,
    meta: Mapping[str, str] | None = None,
) -> bytes:
    """Sign ``payload`` with ``sender``'s key and seal it to ``recipient``; the blob."""
    prefix, ciphertext = _seal_ciphertext(
        payload, sender=sender, recipient=recipient, kind=kind, meta=meta
    )
    return prefix + ciphertext


def _malformed(where: str, what: str) -> EnvelopeError:
    return EnvelopeError(f"{where}: not a readable envelope: {what}", code="envelope_malformed")


def _read_prefix(blob: bytes, where: str) -> tuple[bytes, int]:
    """Check the plaintext prefix; return the recipient key id bytes and ciphertext size."""
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise TypeError(f"envelope: expected bytes, found {type(blob).__name__}")
    magic = bytes(blob[: len(ENVELOPE_MAGIC)])
    if magic != ENVELOPE_MAGIC:
        if magic[:4] == ENVELOPE_MAGIC[:4]:
            raise _malformed(
                where, f"unsupported format version {magic!r}, expected {ENVELOPE_MAGIC!r}"
            )
        raise _malformed(
            where, f"expected it to start with {ENVELOPE_MAGIC!r}, found {magic!r} (wrong file?)"
        )
    if len(blob) < _PREFIX_LEN:
        raise _malformed(where, f"truncated: {len(blob)} bytes, shorter than its header")
    kid = bytes(blob[len(ENVELOPE_MAGIC) : len(ENVELOPE_MAGIC) + KEY_ID_BYTES])
    size = int.from_bytes(blob[_PREFIX_LEN - _LEN_BYTES : _PREFIX_LEN], "big")
    return kid, size


def envelope_recipient(blob: bytes) -> str:
    """The key id an envelope is sealed to (from its plaintext prefix; not authenticated)."""
    kid, _ = _read_prefix(blob, "envelope")
    return kid[::-1].hex().upper()


def _decrypt(blob: bytes, recipient: SecretKey, where: str) -> bytes:
    kid, size = _read_prefix(blob, where)
    if not hmac.compare_digest(kid, recipient.key_id_bytes):
        shown = kid[::-1].hex().upper()
        raise EnvelopeError(
            f"{where} is sealed to key {shown}, not to {recipient.name!r} ({recipient.key_id}): "
            "open it with the recipient's key",
            code="envelope_wrong_recipient",
        )
    found = len(blob) - _PREFIX_LEN
    if found != size:
        state = "truncated" if found < size else "has trailing bytes"
        raise _malformed(where, f"{state}: expected {size} bytes of ciphertext, found {found}")
    try:
        return nacl.public.SealedBox(recipient.box_secret).decrypt(bytes(blob[_PREFIX_LEN:]))
    except nacl.exceptions.CryptoError:
        raise EnvelopeError(
            f"{where}: decryption failed although it is addressed to {recipient.name!r} "
            f"({recipient.key_id}): the file was damaged or tampered with",
            code="envelope_tampered",
        ) from None


def _split_inner(inner: bytes, where: str) -> tuple[EnvelopeHeader, bytes, bytes, memoryview]:
    view = memoryview(inner)
    if len(view) < _HEADER_LEN_BYTES:
        raise _malformed(where, "inner content shorter than its header length")
    header_len = int.from_bytes(view[:_HEADER_LEN_BYTES], "big")
    end = _HEADER_LEN_BYTES + header_len
    if header_len > _MAX_HEADER_BYTES or len(view) < end + _SIG_LEN:
        raise _malformed(where, f"inner header length {header_len} does not fit the content")
    header_bytes = bytes(view[_HEADER_LEN_BYTES:end])
    try:
        header = EnvelopeHeader.from_json(header_bytes, where=f"{where} header")
    except SerdeError as exc:
        raise _malformed(where, str(exc)) from None
    signature = bytes(view[end : end + _SIG_LEN])
    return header, header_bytes, signature, view[end + _SIG_LEN :]


def _find_sender(header: EnvelopeHeader, senders: PublicKeys, where: str) -> list[PublicKey]:
    index = index_public_keys(senders)
    candidates = list(index.get(header.sender_key_id, ()))
    if not candidates:
        known = ", ".join(f"{kid} ({k.name})" for kid, ks in sorted(index.items()) for k in ks)
        raise EnvelopeError(
            f"{where}: sent by unknown key {header.sender_key_id} (claims to be "
            f"{header.sender!r}); trusted senders: {known or 'none given'}",
            code="envelope_unknown_sender",
        )
    return candidates


def open_envelope(
    blob: bytes,
    *,
    recipient: SecretKey,
    senders: PublicKeys,
    expected_kind: str | None = None,
    where: str = "envelope",
) -> OpenedEnvelope:
    """Decrypt, verify and check an envelope; nothing is returned unless all checks pass.

    Raises :class:`EnvelopeError` with code ``envelope_malformed``,
    ``envelope_wrong_recipient``, ``envelope_tampered``, ``envelope_unknown_sender``,
    ``envelope_bad_signature`` or ``envelope_wrong_kind``.
    """
    inner = _decrypt(blob, recipient, where)
    header, header_bytes, signature, payload = _split_inner(inner, where)
    if header.recipient_key_id != recipient.key_id:
        raise EnvelopeError(
            f"{where} was signed for key {header.recipient_key_id} ({header.recipient!r}) "
            f"but sealed to {recipient.key_id}: it was forwarded, refusing it",
            code="envelope_wrong_recipient",
        )
    signer: PublicKey | None = None
    for key in _find_sender(header, senders, where):
        try:
            key.verify_key.verify(_SIG_DOMAIN + header_bytes, signature)
        except nacl.exceptions.BadSignatureError:
            continue
        signer = key
        break
    if signer is None:
        raise EnvelopeError(
            f"{where}: the sender's signature ({header.sender_key_id}) does not match "
            "the header: forged or altered",
            code="envelope_bad_signature",
        )
    digest = hashlib.sha256(payload).hexdigest()
    if len(payload) != header.payload_size or not hmac.compare_digest(
        digest, header.payload_sha256
    ):
        raise EnvelopeError(
            f"{where}: payload does not match its signed hash (expected sha256 "
            f"{header.payload_sha256} of {header.payload_size} bytes, found {digest} of "
            f"{len(payload)} bytes)",
            code="envelope_bad_signature",
        )
    if expected_kind is not None and header.payload_kind != expected_kind:
        raise EnvelopeError(
            f"{where}: expected a {expected_kind!r} envelope, found a {header.payload_kind!r} one",
            code="envelope_wrong_kind",
        )
    return OpenedEnvelope(
        payload=bytes(payload),
        kind=header.payload_kind,
        sender=signer.name,
        sender_key_id=header.sender_key_id,
        envelope_id=header.envelope_id,
        created_at=header.created_at,
        meta=dict(header.meta),
        payload_sha256=header.payload_sha256,
    )


def seal_file(
    src: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    sender: SecretKey,
    recipient: PublicKey,
    kind: str,
    meta: Mapping[str, str] | None = None,
) -> Path:
    """Seal the file ``src`` into ``dest`` (written atomically); return ``dest``."""
    prefix, ciphertext = _seal_ciphertext(
        Path(src).read_bytes(), sender=sender, recipient=recipient, kind=kind, meta=meta
    )
    with atomic_open(dest) as fh:
        fh.write(prefix)
        fh.write(ciphertext)
    return Path(dest)


def open_file(
    src: str | os.PathLike[str],
    dest: str | os.PathLike[str] | None,
    *,
    recipient: SecretKey,
    senders: PublicKeys,
    expected_kind: str | None = None,
    mode: int = 0o600,
) -> OpenedEnvelope:
    """Open the envelope file ``src``; write its payload to ``dest`` (if given) atomically.

    ``dest`` is created only when every check passed (mode 0600 by default: payloads
    are data).
    """
    src = Path(src)
    try:
        blob = src.read_bytes()
    except FileNotFoundError:
        raise EnvelopeError(f"envelope file {src} not found", code="envelope_missing") from None
    opened = open_envelope(
        blob,
        recipient=recipient,
        senders=senders,
        expected_kind=expected_kind,
        where=f"envelope file {src}",
    )
    del blob
    if dest is not None:
        write_bytes(dest, opened.payload, mode=mode)
    return opened
