from __future__ import annotations

import datetime as dt
import os
import stat

import nacl.public
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sample_protocol.envelope import (
    ENVELOPE_MAGIC,
    EnvelopeHeader,
    envelope_recipient,
    open_envelope,
    open_file,
    seal,
    seal_file,
)
from sample_protocol.errors import EnvelopeError, ValidationError
from sample_protocol.keys import PublicKey, generate_keypair

LAB = generate_keypair("lab")
TAX = generate_keypair("tax")
STATS = generate_keypair("stats")
PAYLOAD = b"random_id,amount\nR-0001,12.5\n" * 4
BLOB = seal(PAYLOAD, sender=TAX, recipient=LAB.public, kind="sample", meta={"request": "r1"})
SENDERS = {"tax": TAX.public, "stats": STATS.public}


def _open(blob, **kwargs):
    kwargs.setdefault("recipient", LAB)
    kwargs.setdefault("senders", SENDERS)
    return open_envelope(blob, **kwargs)


def test_round_trip():
    opened = _open(BLOB, expected_kind="sample")
    assert opened.payload == PAYLOAD
    assert opened.kind == "sample"
    assert opened.sender == "tax"
    assert opened.sender_key_id == TAX.key_id
    assert opened.meta == {"request": "r1"}
    assert opened.created_at.tzinfo is not None
    assert abs(opened.created_at - dt.datetime.now(dt.UTC)) < dt.timedelta(days=1)
    assert len(opened.envelope_id) == 32
    assert PAYLOAD.hex() not in repr(opened) and "random_id" not in repr(opened)


def test_blob_starts_with_magic_and_hides_the_payload():
    assert BLOB.startswith(ENVELOPE_MAGIC)
    assert b"random_id" not in BLOB and b"R-0001" not in BLOB
    assert envelope_recipient(BLOB) == LAB.key_id


def test_each_envelope_is_fresh():
    again = seal(PAYLOAD, sender=TAX, recipient=LAB.public, kind="sample")
    assert again != BLOB
    assert _open(again).envelope_id != _open(BLOB).envelope_id


def test_empty_payload_round_trips():
    blob = seal(b"", sender=TAX, recipient=LAB.public, kind="ping")
    assert _open(blob).payload == b""


def test_wrong_recipient():
    with pytest.raises(EnvelopeError) as err:
        _open(BLOB, recipient=STATS)
    assert err.value.code == "envelope_wrong_recipient"
    assert LAB.key_id in str(err.value) and "stats" in str(err.value)
    assert err.value.exit_code == 3


def test_forwarded_envelope_is_refused():
    # The recipient decrypts and re-seals the signed content to someone else.
    ciphertext = BLOB[len(ENVELOPE_MAGIC) + 16 :]
    inner = nacl.public.SealedBox(LAB.box_secret).decrypt(ciphertext)
    forwarded_ct = nacl.public.SealedBox(STATS.public.box_key).encrypt(inner)
    forwarded = (
        ENVELOPE_MAGIC + STATS.key_id_bytes + len(forwarded_ct).to_bytes(8, "big") + forwarded_ct
    )
    with pytest.raises(EnvelopeError) as err:
        _open(forwarded, recipient=STATS)
    assert err.value.code == "envelope_wrong_recipient"
    assert "forwarded" in str(err.value)


def test_unknown_sender():
    with pytest.raises(EnvelopeError) as err:
        _open(BLOB, senders=[STATS.public])
    assert err.value.code == "envelope_unknown_sender"
    assert TAX.key_id in str(err.value) and "'tax'" in str(err.value)


def test_sender_with_same_id_but_other_key_is_a_bad_signature():
    impostor = PublicKey.from_verify_key(
        "tax", STATS.signing_key.verify_key, key_id_bytes=TAX.key_id_bytes
    )
    with pytest.raises(EnvelopeError) as err:
        _open(BLOB, senders=impostor)
    assert err.value.code == "envelope_bad_signature"


def test_forged_by_anyone_who_knows_the_recipient_key():
    # SealedBox is anonymous: an attacker can seal to LAB, but cannot sign as TAX.
    forged_sender = generate_keypair("tax")  # same name, different key
    forged = seal(b"evil", sender=forged_sender, recipient=LAB.public, kind="sample")
    with pytest.raises(EnvelopeError) as err:
        _open(forged)
    assert err.value.code == "envelope_unknown_sender"


def test_wrong_kind():
    with pytest.raises(EnvelopeError) as err:
        _open(BLOB, expected_kind="batch")
    assert err.value.code == "envelope_wrong_kind"
    assert "'batch'" in str(err.value) and "'sample'" in str(err.value)


@pytest.mark.parametrize("cut", [0, 3, 5, 12, 20, 21, 60, len(BLOB) - 1])
def test_truncated(cut):
    with pytest.raises(EnvelopeError) as err:
        _open(BLOB[:cut])
    assert err.value.code == "envelope_malformed"


def test_trailing_bytes_refused():
    with pytest.raises(EnvelopeError) as err:
        _open(BLOB + b"\0")
    assert err.value.code == "envelope_malformed"
    assert "trailing" in str(err.value)


@pytest.mark.parametrize(
    "blob", [b"PAR1....parquet bytes", b'{"kind": "Manifest"}', b"KZSE9" + b"\0" * 100]
)
def test_plain_file_is_not_an_envelope(blob):
    with pytest.raises(EnvelopeError) as err:
        _open(blob)
    assert err.value.code == "envelope_malformed"
    assert "KZSE1" in str(err.value)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_flipped_byte_is_refused(data):
    pos = data.draw(st.integers(0, len(BLOB) - 1))
    tampered = bytearray(BLOB)
    tampered[pos] ^= data.draw(st.integers(1, 255))
    with pytest.raises(EnvelopeError) as err:
        _open(bytes(tampered))
    assert err.value.code in {
        "envelope_malformed",
        "envelope_wrong_recipient",
        "envelope_tampered",
    }


def test_ciphertext_tamper_code():
    tampered = bytearray(BLOB)
    tampered[-1] ^= 1
    with pytest.raises(EnvelopeError) as err:
        _open(bytes(tampered))
    assert err.value.code == "envelope_tampered"
    assert "lab" in str(err.value)


def test_cannot_seal_to_verify_only_key():
    verify_only = PublicKey.from_verify_key("m", LAB.signing_key.verify_key, key_id_bytes=b"\1" * 8)
    with pytest.raises(EnvelopeError) as err:
        seal(b"x", sender=TAX, recipient=verify_only, kind="sample")
    assert err.value.code == "envelope_recipient_no_box_key"


@pytest.mark.parametrize(("kind", "meta"), [("", None), ("sample", {"a": 1}), ("sample", {1: "a"})])
def test_bad_kind_or_meta_refused_when_sealing(kind, meta):
    with pytest.raises(ValidationError):
        seal(b"x", sender=TAX, recipient=LAB.public, kind=kind, meta=meta)


def test_header_record_round_trips():
    header = EnvelopeHeader(
        version=1,
        payload_kind="sample",
        sender="tax",
        sender_key_id=TAX.key_id,
        recipient="lab",
        recipient_key_id=LAB.key_id,
        created_at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        envelope_id="ab" * 16,
        payload_sha256="0" * 64,
        payload_size=3,
        meta={"k": "v"},
    )
    assert EnvelopeHeader.from_json(header.to_json()) == header


# --------------------------------------------------------------------------- files


def test_seal_file_and_open_file(tmp_path):
    src = tmp_path / "sample.parquet"
    src.write_bytes(PAYLOAD)
    sealed = seal_file(
        src, tmp_path / "out" / "sample.kzse", sender=TAX, recipient=LAB.public, kind="sample"
    )
    assert sealed.read_bytes().startswith(ENVELOPE_MAGIC)
    dest = tmp_path / "in" / "sample.parquet"
    opened = open_file(sealed, dest, recipient=LAB, senders=SENDERS, expected_kind="sample")
    assert dest.read_bytes() == PAYLOAD == opened.payload
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    assert open_file(sealed, None, recipient=LAB, senders=SENDERS).payload == PAYLOAD


@pytest.mark.parametrize(
    ("mutate", "kwargs", "code"),
    [
        (lambda b: b, {"recipient": STATS}, "envelope_wrong_recipient"),
        (lambda b: b, {"senders": [STATS.public]}, "envelope_unknown_sender"),
        (lambda b: b, {"expected_kind": "batch"}, "envelope_wrong_kind"),
        (lambda b: b[:-10], {}, "envelope_malformed"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), {}, "envelope_tampered"),
        (lambda b: b"just a csv\n", {}, "envelope_malformed"),
    ],
)
def test_nothing_written_when_opening_fails(tmp_path, mutate, kwargs, code):
    src = tmp_path / "in.kzse"
    src.write_bytes(mutate(BLOB))
    dest = tmp_path / "out" / "sample.parquet"
    args = {"recipient": LAB, "senders": SENDERS, **kwargs}
    with pytest.raises(EnvelopeError) as err:
        open_file(src, dest, **args)
    assert err.value.code == code
    assert str(src) in str(err.value)
    assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.kzse"]


def test_open_file_refuses_to_replace_existing_output_on_failure(tmp_path):
    src = tmp_path / "in.kzse"
    src.write_bytes(BLOB[:-3])
    dest = tmp_path / "sample.parquet"
    dest.write_bytes(b"previous")
    with pytest.raises(EnvelopeError):
        open_file(src, dest, recipient=LAB, senders=SENDERS)
    assert dest.read_bytes() == b"previous"


def test_open_file_missing(tmp_path):
    with pytest.raises(EnvelopeError) as err:
        open_file(tmp_path / "gone.kzse", None, recipient=LAB, senders=SENDERS)
    assert err.value.code == "envelope_missing"
    assert "gone.kzse" in str(err.value)
