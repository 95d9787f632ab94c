from __future__ import annotations

import base64
import json
import os
import pickle
import stat

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sample_protocol.errors import KeyFileError, SerdeError, ValidationError
from sample_protocol.keys import (
    KeyFiles,
    PublicKey,
    SecretKey,
    derive_key_id,
    format_key_id,
    generate_keypair,
    index_public_keys,
    load_public_key,
    load_secret_key,
    parse_key_id,
    parse_minisign_public_key,
    read_minisign_public_key,
    write_keypair,
    write_minisign_public_key,
)

LAB = generate_keypair("lab")


def _secret_strings(secret: SecretKey) -> list[str]:
    return [
        base64.b64encode(bytes(secret.signing_key)).decode(),
        base64.b64encode(bytes(secret.box_secret)).decode(),
        bytes(secret.signing_key).hex(),
    ]


# --------------------------------------------------------------------------- key ids


def test_key_id_is_derived_from_the_signing_key_and_printed_like_minisign():
    raw = bytes(LAB.signing_key.verify_key)
    kid = derive_key_id(raw)
    assert len(kid) == 8
    assert LAB.key_id == kid[::-1].hex().upper()
    assert LAB.key_id_bytes == kid
    assert LAB.public.key_id_bytes == kid
    # deterministic: the same key always has the same id
    again = SecretKey("other", nacl.signing.SigningKey(bytes(LAB.signing_key)), LAB.box_secret)
    assert again.key_id == LAB.key_id


@given(st.binary(min_size=8, max_size=8))
def test_key_id_text_round_trip(raw):
    text = format_key_id(raw)
    assert len(text) == 16 and text == text.upper()
    assert parse_key_id(text) == raw


@pytest.mark.parametrize(
    "bad", ["", "abc", "5e0ac8e25fce0b24", "5E0AC8E25FCE0B2G", "5E0AC8E25FCE0B2"]
)
def test_parse_key_id_refuses_bad_text(bad):
    with pytest.raises(ValidationError) as err:
        parse_key_id(bad)
    assert err.value.code == "invalid_key_id"


def test_derive_key_id_refuses_wrong_length():
    with pytest.raises(ValidationError) as err:
        derive_key_id(b"short")
    assert "32 bytes" in str(err.value)


@pytest.mark.parametrize("bad", ["", "a b", "../x", "x/y", "-lead", "a" * 65, "tab\there"])
def test_generate_refuses_unsafe_names(bad):
    with pytest.raises(ValidationError) as err:
        generate_keypair(bad)
    assert err.value.code == "invalid_key_name"


# --------------------------------------------------------------------------- records


def test_public_key_json_round_trip_and_validate():
    public = LAB.public
    again = PublicKey.from_json(public.to_json())
    assert again == public
    assert bytes(again.verify_key) == bytes(LAB.signing_key.verify_key)
    assert bytes(again.box_key) == bytes(LAB.box_secret.public_key)
    assert again.can_receive


def test_public_key_validate_refuses_key_id_of_another_key():
    other = generate_keypair("other").public
    data = json.loads(LAB.public.to_json())
    data["key_id"] = other.key_id
    with pytest.raises(ValidationError) as err:
        PublicKey.from_dict(data)
    assert err.value.code == "invalid_key_id"
    assert other.key_id in str(err.value)


@pytest.mark.parametrize("field", ["sign_public", "box_public"])
@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"x" * 31).decode()])
def test_public_key_validate_refuses_bad_key_bytes(field, value):
    data = json.loads(LAB.public.to_json())
    data[field] = value
    with pytest.raises(ValidationError) as err:
        PublicKey.from_dict(data)
    assert field in str(err.value)


def test_public_key_from_json_refuses_other_kind():
    with pytest.raises(SerdeError):
        PublicKey.from_json('{"kind": "TrustRoot"}')


def test_verify_only_key_may_carry_minisign_id_but_cannot_receive():
    key = PublicKey.from_verify_key("m", LAB.signing_key.verify_key, key_id_bytes=b"\x01" * 8)
    assert key.key_id == "0101010101010101"
    assert not key.can_receive
    assert PublicKey.from_json(key.to_json()) == key
    with pytest.raises(ValidationError) as err:
        _ = key.box_key
    assert err.value.code == "key_verify_only"
    assert "'m'" in str(err.value)


def test_secret_key_never_shows_secret_material():
    shown = repr(LAB) + str(LAB) + f"{LAB}"
    assert LAB.key_id in shown and "lab" in shown
    for secret in _secret_strings(LAB):
        assert secret not in shown
    assert not hasattr(LAB, "to_json")
    with pytest.raises(TypeError):
        pickle.dumps(LAB)


def test_index_public_keys_accepts_one_mapping_or_iterable():
    tax = generate_keypair("tax").public
    expected = {LAB.key_id: (LAB.public,), tax.key_id: (tax,)}
    assert index_public_keys(LAB.public) == {LAB.key_id: (LAB.public,)}
    assert index_public_keys({"lab": LAB.public, "tax": tax}) == expected
    assert index_public_keys([LAB.public, tax, LAB.public]) == expected
    with pytest.raises(TypeError):
        index_public_keys([LAB])  # type: ignore[list-item]


# --------------------------------------------------------------------------- files


def test_write_and_load_keypair(tmp_path):
    files = write_keypair(LAB, tmp_path)
    assert files == KeyFiles(
        secret=tmp_path / "lab.key",
        public=tmp_path / "lab.pub",
        minisign_public=tmp_path / "lab.minisign.pub",
    )
    assert stat.S_IMODE(os.stat(files.secret).st_mode) == 0o600
    doc = json.loads(files.secret.read_text())
    assert set(doc) == {"kind", "version", "name", "key_id", "ed25519_seed", "x25519_secret"}
    assert doc["kind"] == "SecretKey" and doc["key_id"] == LAB.key_id
    loaded = load_secret_key(files.secret)
    assert loaded == LAB
    assert loaded.public == LAB.public
    assert load_public_key(files.public) == LAB.public
    for secret in _secret_strings(LAB):
        assert secret not in files.public.read_text()
        assert secret not in files.minisign_public.read_text()


def test_write_refuses_to_overwrite_unless_asked(tmp_path):
    files = write_keypair(LAB, tmp_path)
    before = files.secret.read_bytes()
    newer = SecretKey("lab", nacl.signing.SigningKey.generate(), generate_keypair("x").box_secret)
    with pytest.raises(KeyFileError) as err:
        write_keypair(newer, tmp_path)
    assert err.value.code == "key_exists"
    assert "lab.key" in str(err.value)
    assert files.secret.read_bytes() == before
    write_keypair(newer, tmp_path, overwrite=True)
    assert load_secret_key(files.secret) == newer


def test_write_refuses_when_only_one_of_the_files_exists(tmp_path):
    (tmp_path / "lab.minisign.pub").write_text("old")
    with pytest.raises(KeyFileError) as err:
        write_keypair(LAB, tmp_path)
    assert "lab.minisign.pub" in str(err.value)
    assert not (tmp_path / "lab.key").exists()


def test_load_secret_key_missing(tmp_path):
    with pytest.raises(KeyFileError) as err:
        load_secret_key(tmp_path / "nope.key")
    assert err.value.code == "key_missing"
    assert "nope.key" in str(err.value)
    assert isinstance(err.value, OSError)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_load_secret_key_refuses_loose_permissions(tmp_path, mode):
    files = write_keypair(LAB, tmp_path)
    os.chmod(files.secret, mode)
    with pytest.raises(KeyFileError) as err:
        load_secret_key(files.secret)
    assert err.value.code == "key_permissions"
    message = str(err.value)
    assert f"chmod 600 {files.secret}" in message
    for secret in _secret_strings(LAB):
        assert secret not in message


@pytest.mark.parametrize("which", ["public", "minisign_public"])
def test_load_secret_key_refuses_public_key_files(tmp_path, which):
    files = write_keypair(LAB, tmp_path)
    path = getattr(files, which)
    with pytest.raises(KeyFileError) as err:
        load_secret_key(path)
    assert err.value.code == "key_wrong_kind"
    assert str(path) in str(err.value)


def _write_secret_doc(path, doc):
    path.write_text(json.dumps(doc))
    os.chmod(path, 0o600)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(key_id=format_key_id(b"\0" * 8)), "does not match"),
        (lambda d: d.update(ed25519_seed="!!!"), "ed25519_seed"),
        (lambda d: d.update(x25519_secret=base64.b64encode(b"1").decode()), "x25519_secret"),
        (lambda d: d.pop("name"), "name"),
        (lambda d: d.update(version=99), "version"),
        (lambda d: d.update(kind="Something"), "kind"),
    ],
)
def test_load_secret_key_refuses_corrupt_files(tmp_path, change, expected):
    files = write_keypair(LAB, tmp_path)
    doc = json.loads(files.secret.read_text())
    change(doc)
    _write_secret_doc(files.secret, doc)
    with pytest.raises(KeyFileError) as err:
        load_secret_key(files.secret)
    assert err.value.code == "key_corrupt"
    message = str(err.value)
    assert str(files.secret) in message and expected in message
    for secret in _secret_strings(LAB):
        assert secret not in message


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]", b"\xff\xfe\x00binary"])
def test_load_secret_key_refuses_garbage(tmp_path, content):
    path = tmp_path / "x.key"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError) as err:
        load_secret_key(path)
    assert err.value.code == "key_corrupt"
    assert "x.key" in str(err.value)


def test_load_secret_key_refuses_a_directory(tmp_path):
    with pytest.raises(KeyFileError) as err:
        load_secret_key(tmp_path)
    assert err.value.code == "key_corrupt"


def test_load_public_key_refuses_secret_key_file(tmp_path):
    files = write_keypair(LAB, tmp_path)
    with pytest.raises(KeyFileError) as err:
        load_public_key(files.secret)
    assert err.value.code == "key_wrong_kind"
    message = str(err.value)
    assert "lab.key" in message
    for secret in _secret_strings(LAB):
        assert secret not in message


def test_load_public_key_refuses_tampered_record(tmp_path):
    files = write_keypair(LAB, tmp_path)
    data = json.loads(files.public.read_text())
    data["key_id"] = format_key_id(b"\0" * 8)
    files.public.write_text(json.dumps(data))
    with pytest.raises(KeyFileError) as err:
        load_public_key(files.public)
    assert err.value.code == "key_corrupt"
    assert "lab.pub" in str(err.value)


def test_load_public_key_missing_and_garbage(tmp_path):
    with pytest.raises(KeyFileError) as err:
        load_public_key(tmp_path / "gone.pub")
    assert err.value.code == "key_missing"
    (tmp_path / "bad.pub").write_text("hello")
    with pytest.raises(KeyFileError) as err:
        load_public_key(tmp_path / "bad.pub")
    assert err.value.code == "key_corrupt"
    assert "bad.pub" in str(err.value)


# --------------------------------------------------------------------------- minisign files


def test_minisign_public_key_file_format(tmp_path):
    path = write_minisign_public_key(LAB.public, tmp_path / "lab.minisign.pub")
    lines = path.read_text().splitlines()
    assert lines[0] == f"untrusted comment: minisign public key {LAB.key_id}"
    raw = base64.b64decode(lines[1])
    assert raw == b"Ed" + LAB.key_id_bytes + bytes(LAB.signing_key.verify_key)
    kid, verify_key = read_minisign_public_key(path)
    assert kid == LAB.key_id_bytes
    assert bytes(verify_key) == bytes(LAB.signing_key.verify_key)


def test_load_public_key_from_minisign_file_is_verify_only(tmp_path):
    files = write_keypair(LAB, tmp_path)
    key = load_public_key(files.minisign_public)
    assert key.name == "lab"
    assert key.key_id == LAB.key_id
    assert key.sign_public == LAB.public.sign_public
    assert not key.can_receive
    assert load_public_key(files.minisign_public, name="nce").name == "nce"


def test_parse_minisign_public_key_accepts_bare_base64_line():
    raw = b"Ed" + LAB.key_id_bytes + bytes(LAB.signing_key.verify_key)
    kid, vk = parse_minisign_public_key(base64.b64encode(raw).decode())
    assert kid == LAB.key_id_bytes and bytes(vk) == bytes(LAB.signing_key.verify_key)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("untrusted comment: x\n", "key_corrupt"),
        ("untrusted comment: x\n!!!notbase64\n", "key_corrupt"),
        ("untrusted comment: x\n" + base64.b64encode(b"Ed" + b"1" * 30).decode(), "key_corrupt"),
        ("untrusted comment: x\n" + base64.b64encode(b"XX" + b"1" * 40).decode(), "key_corrupt"),
        ("untrusted comment: minisign encrypted secret key\nAAAA\n", "key_wrong_kind"),
        (
            "untrusted comment: x\n" + base64.b64encode(b"Ed" + b"1" * 156).decode(),
            "key_wrong_kind",
        ),
    ],
)
def test_read_minisign_public_key_refuses_bad_files(tmp_path, text, code):
    path = tmp_path / "k.pub"
    path.write_text(text)
    with pytest.raises(KeyFileError) as err:
        read_minisign_public_key(path)
    assert err.value.code == code
    assert "k.pub" in str(err.value)


@settings(max_examples=20, deadline=None)
@given(st.text(alphabet="abcXYZ019._-", min_size=1, max_size=20).filter(lambda s: s[0].isalnum()))
def test_any_valid_name_round_trips_through_files(tmp_path_factory, name):
    out = tmp_path_factory.mktemp("keys")
    secret = generate_keypair(name)
    files = write_keypair(secret, out)
    assert load_secret_key(files.secret) == secret
    assert load_public_key(files.public) == secret.public
