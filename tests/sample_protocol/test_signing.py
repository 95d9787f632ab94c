from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sample_protocol.errors import SignatureError, ValidationError
from sample_protocol.keys import (
    PublicKey,
    generate_keypair,
    load_public_key,
    read_minisign_public_key,
    write_keypair,
)
from sample_protocol.signing import (
    TRUSTED_COMMENT_MAX_BYTES,
    VerifiedSignature,
    blake2b_file,
    default_trusted_comment,
    sign_bytes,
    sign_file,
    signature_path,
    verify_bytes,
    verify_file,
)

LAB = generate_keypair("lab")
TAX = generate_keypair("tax")
DATA = bytes(range(256)) * 3
SIG = sign_bytes(DATA, LAB, trusted_comment="release 7")
SIG_LINES = SIG.encode().split(b"\n")


def _with_lines(lines: list[bytes]) -> bytes:
    return b"\n".join(lines)


# --------------------------------------------------------------------------- round trips


def test_round_trip_bytes():
    result = verify_bytes(DATA, SIG, LAB.public)
    assert result == VerifiedSignature(key_id=LAB.key_id, signer="lab", trusted_comment="release 7")


def test_signature_text_has_minisign_layout():
    lines = SIG.splitlines()
    assert len(lines) == 4 and SIG.endswith("\n")
    assert lines[0].startswith("untrusted comment: ")
    blob = base64.b64decode(lines[1])
    assert blob[:2] == b"ED" and blob[2:10] == LAB.key_id_bytes and len(blob) == 74
    assert lines[2] == "trusted comment: release 7"
    assert len(base64.b64decode(lines[3])) == 64


def test_default_trusted_comment_names_time_file_and_signer():
    sig = sign_bytes(b"x", LAB, file_name="batch\n1.parquet")
    result = verify_bytes(b"x", sig, [TAX.public, LAB.public])
    assert result.fields["signer"] == "lab"
    assert result.fields["file"] == "batch?1.parquet"
    assert result.timestamp is not None and result.timestamp > 0
    assert default_trusted_comment(LAB, timestamp=5) == "timestamp:5\tsigner:lab"


def test_keys_may_be_a_mapping_or_iterable():
    assert verify_bytes(DATA, SIG, {"tax": TAX.public, "lab": LAB.public}).signer == "lab"
    assert verify_bytes(DATA, SIG.encode(), iter([TAX.public, LAB.public])).signer == "lab"


def test_sign_file_and_verify_file(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_bytes(DATA)
    sig_path = sign_file(path, LAB)
    assert sig_path == tmp_path / "manifest.json.minisig" == signature_path(path)
    result = verify_file(path, LAB.public)
    assert result.signer == "lab"
    assert result.fields["file"] == "manifest.json"
    assert verify_bytes(DATA, sig_path.read_text(), LAB.public) == result


def test_sign_file_custom_sig_path_and_hash_matches_in_memory(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(3 * (1 << 20) + 17))  # spans several read chunks
    sig = sign_file(path, LAB, sig_path=tmp_path / "sigs" / "big.sig", trusted_comment="t")
    assert verify_file(path, LAB.public, sig_path=sig).trusted_comment == "t"
    assert blake2b_file(path) == hashlib.blake2b(path.read_bytes()).digest()


@pytest.mark.parametrize("comment", ["two\nlines", "cr\r", "x" * (TRUSTED_COMMENT_MAX_BYTES + 1)])
def test_bad_trusted_comment_refused_when_signing(comment):
    with pytest.raises(ValidationError) as err:
        sign_bytes(b"x", LAB, trusted_comment=comment)
    assert err.value.code == "invalid_comment"


def test_bad_untrusted_comment_refused_when_signing():
    with pytest.raises(ValidationError) as err:
        sign_bytes(b"x", LAB, untrusted_comment="a\nb")
    assert err.value.code == "invalid_comment"


# --------------------------------------------------------------------------- refusals


def test_wrong_key_refused_as_unknown():
    with pytest.raises(SignatureError) as err:
        verify_bytes(DATA, SIG, TAX.public)
    assert err.value.code == "signature_unknown_key"
    assert LAB.key_id in str(err.value) and "tax" in str(err.value)


def test_same_key_id_but_other_key_is_a_mismatch():
    impostor = PublicKey.from_verify_key(
        "impostor", TAX.signing_key.verify_key, key_id_bytes=LAB.key_id_bytes
    )
    with pytest.raises(SignatureError) as err:
        verify_bytes(DATA, SIG, impostor)
    assert err.value.code == "signature_mismatch"
    # with both keys known under the same id, the right one is found
    assert verify_bytes(DATA, SIG, [impostor, LAB.public]).signer == "lab"


def test_no_keys_at_all():
    with pytest.raises(SignatureError) as err:
        verify_bytes(DATA, SIG, [])
    assert err.value.code == "signature_unknown_key"
    assert "no keys" in str(err.value)


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_any_flipped_data_byte_is_refused(data):
    pos = data.draw(st.integers(0, len(DATA) - 1))
    mask = data.draw(st.integers(1, 255))
    tampered = bytearray(DATA)
    tampered[pos] ^= mask
    with pytest.raises(SignatureError) as err:
        verify_bytes(bytes(tampered), SIG, LAB.public)
    assert err.value.code == "signature_mismatch"


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_any_flipped_signature_byte_is_refused(data):
    blob = bytearray(base64.b64decode(SIG_LINES[1]))
    pos = data.draw(st.integers(0, len(blob) - 1))
    blob[pos] ^= data.draw(st.integers(1, 255))
    lines = list(SIG_LINES)
    lines[1] = base64.b64encode(bytes(blob))
    with pytest.raises(SignatureError) as err:
        verify_bytes(DATA, _with_lines(lines), LAB.public)
    if pos < 2:
        assert err.value.code in {"signature_malformed", "signature_legacy"}
    elif pos < 10:
        assert err.value.code == "signature_unknown_key"
    else:
        assert err.value.code == "signature_mismatch"


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_any_flipped_trusted_comment_byte_is_refused(data):
    comment = bytearray(SIG_LINES[2][len(b"trusted comment: ") :])
    pos = data.draw(st.integers(0, len(comment) - 1))
    comment[pos] ^= data.draw(st.integers(1, 255))
    lines = list(SIG_LINES)
    lines[2] = b"trusted comment: " + bytes(comment)
    with pytest.raises(SignatureError) as err:
        verify_bytes(DATA, _with_lines(lines), LAB.public)
    assert err.value.code in {"signature_comment_mismatch", "signature_malformed"}


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_any_flipped_global_signature_byte_is_refused(data):
    glob = bytearray(base64.b64decode(SIG_LINES[3]))
    pos = data.draw(st.integers(0, len(glob) - 1))
    glob[pos] ^= data.draw(st.integers(1, 255))
    lines = list(SIG_LINES)
    lines[3] = base64.b64encode(bytes(glob))
    with pytest.raises(SignatureError) as err:
        verify_bytes(DATA, _with_lines(lines), LAB.public)
    assert err.value.code == "signature_comment_mismatch"


def test_swapped_trusted_comment_is_refused():
    lines = list(SIG_LINES)
    lines[2] = b"trusted comment: release 8"
    with pytest.raises(SignatureError) as err:
        verify_bytes(DATA, _with_lines(lines), LAB.public)
    assert err.value.code == "signature_comment_mismatch"


def test_untrusted_comment_is_not_signed():
    lines = list(SIG_LINES)
    lines[0] = b"untrusted comment: anything at all"
    assert verify_bytes(DATA, _with_lines(lines), LAB.public).signer == "lab"


@pytest.mark.parametrize(
    ("sig", "expected"),
    [
        (b"", "4 lines"),
        (b"hello world\n", "4 lines"),
        (_with_lines([b"comment", *SIG_LINES[1:]]), "line 1"),
        (_with_lines([SIG_LINES[0], SIG_LINES[1], b"comment", SIG_LINES[3]]), "line 3"),
        (_with_lines([SIG_LINES[0], b"!!!", *SIG_LINES[2:]]), "not base64"),
        (_with_lines([SIG_LINES[0], base64.b64encode(b"ED123"), *SIG_LINES[2:]]), "74 bytes"),
        (_with_lines([*SIG_LINES[:3], base64.b64encode(b"x")]), "64 bytes"),
        (b"x" * 20000, "at most"),
    ],
)
def test_malformed_signatures(sig, expected):
    with pytest.raises(SignatureError) as err:
        verify_bytes(DATA, sig, LAB.public, where="batch.parquet")
    assert err.value.code == "signature_malformed"
    assert expected in str(err.value) and "batch.parquet" in str(err.value)


def test_unknown_algorithm_is_malformed():
    blob = bytearray(base64.b64decode(SIG_LINES[1]))
    blob[:2] = b"XX"
    lines = list(SIG_LINES)
    lines[1] = base64.b64encode(bytes(blob))
    with pytest.raises(SignatureError) as err:
        verify_bytes(DATA, _with_lines(lines), LAB.public)
    assert err.value.code == "signature_malformed"
    assert "'ED'" in str(err.value)


def test_crlf_line_endings_are_accepted():
    assert verify_bytes(DATA, SIG.replace("\n", "\r\n"), LAB.public).signer == "lab"


def test_missing_signature_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"model")
    with pytest.raises(SignatureError) as err:
        verify_file(path, LAB.public)
    assert err.value.code == "signature_missing"
    assert "model.onnx.minisig" in str(err.value)


def test_missing_signed_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"model")
    sign_file(path, LAB)
    path.unlink()
    with pytest.raises(SignatureError) as err:
        verify_file(path, LAB.public)
    assert err.value.code == "signed_file_missing"


def test_tampered_file_refused_with_file_named(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_bytes(DATA)
    sign_file(path, LAB)
    path.write_bytes(DATA + b" ")
    with pytest.raises(SignatureError) as err:
        verify_file(path, LAB.public)
    assert err.value.code == "signature_mismatch"
    assert "manifest.json" in str(err.value)
    assert err.value.exit_code == 3


def test_legacy_signature_refused_unless_allowed(tmp_path):
    # A legacy signature: 'Ed', Ed25519 over the raw data.
    signature = LAB.signing_key.sign(DATA).signature
    comment = b"legacy"
    glob = LAB.signing_key.sign(signature + comment).signature
    sig = _with_lines(
        [
            b"untrusted comment: legacy",
            base64.b64encode(b"Ed" + LAB.key_id_bytes + signature),
            b"trusted comment: " + comment,
            base64.b64encode(glob),
            b"",
        ]
    )
    with pytest.raises(SignatureError) as err:
        verify_bytes(DATA, sig, LAB.public)
    assert err.value.code == "signature_legacy"
    assert verify_bytes(DATA, sig, LAB.public, allow_legacy=True).trusted_comment == "legacy"
    path = tmp_path / "f"
    path.write_bytes(DATA)
    signature_path(path).write_bytes(sig)
    with pytest.raises(SignatureError) as err:
        verify_file(path, LAB.public)
    assert err.value.code == "signature_legacy"
    assert verify_file(path, LAB.public, allow_legacy=True).signer == "lab"


# --------------------------------------------------------------------------- minisign interop


@pytest.fixture
def minisign_bin():
    found = shutil.which("minisign")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("minisign is not installed, but CI must run the interop tests")
        pytest.skip("minisign is not installed (Debian package `minisign`)")
    return found


def _run(*args, cwd):
    return subprocess.run(
        list(args),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.minisign
def test_minisign_accepts_our_signature(tmp_path, minisign_bin):
    files = write_keypair(LAB, tmp_path / "keys")
    path = tmp_path / "release.json"
    path.write_bytes(DATA)
    sign_file(path, LAB, trusted_comment="release 7\tsigner:lab")
    done = _run(minisign_bin, "-Vm", str(path), "-p", str(files.minisign_public), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Signature and comment signature verified" in done.stdout
    assert "Trusted comment: release 7\tsigner:lab" in done.stdout


@pytest.mark.minisign
def test_minisign_and_we_refuse_a_tampered_file(tmp_path, minisign_bin):
    files = write_keypair(LAB, tmp_path / "keys")
    path = tmp_path / "release.json"
    path.write_bytes(DATA)
    sign_file(path, LAB)
    path.write_bytes(DATA[:-1] + b"!")
    done = _run(minisign_bin, "-Vm", str(path), "-p", str(files.minisign_public), cwd=tmp_path)
    assert done.returncode != 0
    assert "verified" not in done.stdout
    with pytest.raises(SignatureError) as err:
        verify_file(path, load_public_key(files.public))
    assert err.value.code == "signature_mismatch"


@pytest.fixture
def minisign_key(tmp_path, minisign_bin):
    pub, sec = tmp_path / "ms.pub", tmp_path / "ms.key"
    done = _run(minisign_bin, "-G", "-W", "-p", str(pub), "-s", str(sec), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return pub, sec


@pytest.mark.minisign
def test_we_accept_a_minisign_signature(tmp_path, minisign_bin, minisign_key):
    pub, sec = minisign_key
    path = tmp_path / "data.bin"
    path.write_bytes(DATA)
    done = _run(
        minisign_bin, "-Sm", str(path), "-s", str(sec), "-t", "made by minisign", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    kid, verify_key = read_minisign_public_key(pub)
    key = PublicKey.from_verify_key("outsider", verify_key, key_id_bytes=kid)
    result = verify_file(path, key)
    assert result.signer == "outsider"
    assert result.trusted_comment == "made by minisign"
    # the id as minisign prints it (its "%X" drops leading zeros, so compare numbers)
    printed = pub.read_text().splitlines()[0].split()[-1]
    assert int(result.key_id, 16) == int(printed, 16)
    # load_public_key reads the same file into the same verify-only key
    assert load_public_key(pub, name="outsider") == key
    # and we refuse it once the file changes
    path.write_bytes(DATA + b"\0")
    with pytest.raises(SignatureError) as err:
        verify_file(path, key)
    assert err.value.code == "signature_mismatch"
    done = _run(minisign_bin, "-Vm", str(path), "-p", str(pub), cwd=tmp_path)
    assert done.returncode != 0


@pytest.mark.minisign
def test_we_refuse_minisign_legacy_signature_unless_allowed(tmp_path, minisign_bin, minisign_key):
    pub, sec = minisign_key
    path = tmp_path / "data.bin"
    path.write_bytes(DATA)
    done = _run(minisign_bin, "-S", "-l", "-m", str(path), "-s", str(sec), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    key = load_public_key(pub)
    with pytest.raises(SignatureError) as err:
        verify_file(path, key)
    assert err.value.code == "signature_legacy"
    assert verify_file(path, key, allow_legacy=True).key_id == key.key_id
