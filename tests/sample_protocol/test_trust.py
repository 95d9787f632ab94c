"""Tests for sample_protocol.trust: the signed trust root and rollback counters."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sample_protocol.errors import SignatureError, TrustError, ValidationError
from sample_protocol.keys import SecretKey, generate_keypair
from sample_protocol.signing import sign_bytes, verify_bytes
from sample_protocol.trust import (
    TRUST_STATE_FILE,
    MonotonicCounter,
    Party,
    Role,
    TrustRoot,
    load_trust_root,
    new_trust_root,
    write_trust_root,
)

T0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)

# Key generation is cheap, but one set for the module keeps the tests fast and simple.
ROOT = generate_keypair("nce-root")
LAB = generate_keypair("nce-lab")
TAX = generate_keypair("tax-body")
STATS = generate_keypair("stats-bureau")
REGISTER = generate_keypair("register")
OUTSIDER = generate_keypair("outsider")


def parties() -> list[Party]:
    return [
        Party(name="nce-lab", role=Role.LAB, sources=(), key=LAB.public),
        Party(name="tax-body", role=Role.TAX_BODY, sources=("TAX",), key=TAX.public),
        Party(
            name="stats-bureau",
            role=Role.BODY,
            sources=("STATS", "LEGAL_ENTITY"),
            key=STATS.public,
        ),
        Party(name="register", role=Role.REGISTER, sources=(), key=REGISTER.public),
    ]


@pytest.fixture
def root() -> TrustRoot:
    return new_trust_root(ROOT, parties(), issued_at=T0)


def write(root: TrustRoot, directory: Path, secret: SecretKey = ROOT) -> Path:
    return write_trust_root(root, directory / "trust.json", secret)


# -- the record ----------------------------------------------------------------------


def test_new_root(root: TrustRoot) -> None:
    assert root.version == 1
    assert root.root_key_id == ROOT.key_id
    assert root.issued_at == T0
    assert [p.name for p in root.parties] == ["nce-lab", "tax-body", "stats-bureau", "register"]
    assert Role.TAX_BODY.value == "tax_body" and Role("register") is Role.REGISTER


def test_round_trip(root: TrustRoot) -> None:
    root = root.rotate("tax-body", OUTSIDER.public, issued_at=T0).revoke(
        "register", "key lost", issued_at=T0
    )
    again = TrustRoot.from_json(root.to_json())
    assert again == root
    assert again.canonical_bytes() == root.canonical_bytes()
    assert again.party("tax-body").previous_keys == (TAX.public,)
    assert json.loads(root.to_json())["kind"] == "TrustRoot"
    party = root.party("stats-bureau")
    assert Party.from_json(party.to_json()) == party


def test_validate_rejects_bad_roots(root: TrustRoot) -> None:
    lab, tax, *_ = parties()
    cases = {
        "listed twice": dataclasses.replace(root, parties=(lab, tax, tax)),
        "used twice": dataclasses.replace(
            root, parties=(lab, dataclasses.replace(tax, name="tax-2", key=LAB.public))
        ),
        "role 'lab'": dataclasses.replace(root, parties=(tax,)),
        "version must be >= 1": dataclasses.replace(root, version=0),
        "root_key_id": dataclasses.replace(root, root_key_id="abc"),
        "upper-case code": dataclasses.replace(
            root, parties=(lab, dataclasses.replace(tax, sources=("tax",)))
        ),
        "revoked_reason": dataclasses.replace(
            root, parties=(lab, dataclasses.replace(tax, revoked=True))
        ),
    }
    for words, bad in cases.items():
        with pytest.raises(ValidationError) as err:
            bad.validate()
        assert words in str(err.value), (words, str(err.value))
        assert err.value.code in {"trust_bad_root", "trust_bad_party"}


def test_party_keys_are_validated(root: TrustRoot) -> None:
    forged = dataclasses.replace(TAX.public, key_id=LAB.key_id)  # id of another key
    bad = dataclasses.replace(root.party("tax-body"), key=forged)
    with pytest.raises(ValidationError) as err:
        root.with_party(dataclasses.replace(bad, name="tax-2"))
    assert err.value.code == "invalid_key_id" and LAB.key_id in str(err.value)


def test_key_reuse_across_previous_keys_is_refused(root: TrustRoot) -> None:
    rotated = root.rotate("tax-body", OUTSIDER.public)
    with pytest.raises(ValidationError) as err:  # the rotated-out key cannot come back
        rotated.rotate("stats-bureau", TAX.public)
    assert TAX.key_id in str(err.value) and "used twice" in str(err.value)


# -- look-ups and trust decisions ------------------------------------------------------


def test_lookups(root: TrustRoot) -> None:
    assert root.party("tax-body").key == TAX.public
    assert root.party_for_key_id(STATS.key_id).name == "stats-bureau"
    assert root.party("tax-body").key_id == TAX.key_id
    with pytest.raises(TrustError) as err:
        root.party("customs")
    assert err.value.code == "trust_unknown_party" and "'customs'" in str(err.value)


def test_require_signer_accepts_the_right_party(root: TrustRoot) -> None:
    assert root.require_signer(TAX.key_id).name == "tax-body"
    assert root.require_signer(TAX.key_id, roles={Role.TAX_BODY, Role.BODY}, source="TAX")
    assert root.require_signer(STATS.key_id, roles=Role.BODY, source="LEGAL_ENTITY")
    assert root.require_signer(LAB.key_id, roles=[Role.LAB]).role is Role.LAB


def test_require_signer_refusals(root: TrustRoot) -> None:
    with pytest.raises(TrustError) as err:
        root.require_signer(OUTSIDER.key_id)
    assert err.value.code == "trust_unknown_signer" and OUTSIDER.key_id in str(err.value)
    with pytest.raises(TrustError) as err:
        root.require_signer(TAX.key_id, roles={Role.LAB})
    assert err.value.code == "trust_wrong_role"
    assert "'tax-body'" in str(err.value) and "'tax_body'" in str(err.value)
    assert "lab" in str(err.value)
    with pytest.raises(TrustError) as err:
        root.require_signer(TAX.key_id, roles=Role.REGISTER)
    assert err.value.code == "trust_wrong_role"
    with pytest.raises(TrustError) as err:
        root.require_signer(TAX.key_id, source="STATS")
    assert err.value.code == "trust_wrong_source"
    assert "'STATS'" in str(err.value) and "TAX" in str(err.value)
    assert err.value.exit_code == 3


def test_trusted_keys(root: TrustRoot) -> None:
    assert set(root.trusted_keys()) == {LAB.key_id, TAX.key_id, STATS.key_id, REGISTER.key_id}
    assert root.trusted_keys(roles={Role.TAX_BODY, Role.BODY}) == {
        TAX.key_id: TAX.public,
        STATS.key_id: STATS.public,
    }
    assert root.trusted_keys(Role.LAB) == {LAB.key_id: LAB.public}


# -- edits -------------------------------------------------------------------------------


def test_rotate(root: TrustRoot) -> None:
    new_tax = generate_keypair("tax-body-2027")
    rotated = root.rotate("tax-body", new_tax.public, issued_at=T0 + dt.timedelta(days=1))
    assert rotated.version == 2 and root.version == 1  # the old root is unchanged
    assert rotated.issued_at == T0 + dt.timedelta(days=1)
    party = rotated.party("tax-body")
    assert party.key == new_tax.public and party.previous_keys == (TAX.public,)
    assert rotated.require_signer(new_tax.key_id, source="TAX").name == "tax-body"
    with pytest.raises(TrustError) as err:
        rotated.require_signer(TAX.key_id, source="TAX")
    assert err.value.code == "trust_key_rotated"
    assert TAX.key_id in str(err.value) and new_tax.key_id in str(err.value)
    keys = rotated.trusted_keys()
    assert new_tax.key_id in keys and TAX.key_id not in keys
    assert rotated.party_for_key_id(TAX.key_id).name == "tax-body"  # kept on record
    with pytest.raises(ValidationError) as verr:
        rotated.rotate("tax-body", new_tax.public)
    assert verr.value.code == "trust_bad_edit"


def test_rotated_key_signatures_no_longer_verify(root: TrustRoot) -> None:
    data = b"preliminary index batch"
    old_sig = sign_bytes(data, TAX)
    assert verify_bytes(data, old_sig, root.trusted_keys()).key_id == TAX.key_id
    new_tax = generate_keypair("tax-body-2027")
    rotated = root.rotate("tax-body", new_tax.public)
    with pytest.raises(SignatureError):
        verify_bytes(data, old_sig, rotated.trusted_keys())
    new_sig = sign_bytes(data, new_tax)
    verified = verify_bytes(data, new_sig, rotated.trusted_keys(Role.TAX_BODY))
    assert rotated.require_signer(verified.key_id, roles=Role.TAX_BODY).name == "tax-body"


def test_revoke(root: TrustRoot) -> None:
    revoked = root.revoke("stats-bureau", "  key compromised  ")
    assert revoked.version == 2
    party = revoked.party("stats-bureau")
    assert party.revoked and party.revoked_reason == "key compromised"
    with pytest.raises(TrustError) as err:
        revoked.require_signer(STATS.key_id, roles=Role.BODY, source="STATS")
    assert err.value.code == "trust_revoked"
    assert "'stats-bureau'" in str(err.value) and "key compromised" in str(err.value)
    assert STATS.key_id not in revoked.trusted_keys()
    with pytest.raises(ValidationError) as verr:
        revoked.revoke("stats-bureau", "again")
    assert verr.value.code == "trust_bad_edit" and "already revoked" in str(verr.value)
    with pytest.raises(ValidationError) as verr:
        root.revoke("stats-bureau", " ")
    assert "reason" in str(verr.value)
    with pytest.raises(TrustError) as err:
        root.revoke("nobody", "x")
    assert err.value.code == "trust_unknown_party"
    # reinstating is explicit
    back = revoked.with_party(dataclasses.replace(party, revoked=False, revoked_reason=""))
    assert back.version == 3 and back.require_signer(STATS.key_id).name == "stats-bureau"


def test_revoked_party_is_refused_even_with_an_old_key(root: TrustRoot) -> None:
    edited = root.rotate("tax-body", OUTSIDER.public).revoke("tax-body", "left the federation")
    for key_id in (TAX.key_id, OUTSIDER.key_id):
        with pytest.raises(TrustError) as err:
            edited.require_signer(key_id)
        assert err.value.code == "trust_revoked"


def test_with_party(root: TrustRoot) -> None:
    customs = Party(name="customs", role=Role.BODY, sources=("CUSTOMS",), key=OUTSIDER.public)
    added = root.with_party(customs)
    assert added.version == 2 and added.party("customs") == customs
    assert added.require_signer(OUTSIDER.key_id, source="CUSTOMS").name == "customs"
    wider = added.with_party(dataclasses.replace(customs, sources=("CUSTOMS", "TRANSPORT")))
    assert wider.party("customs").sources == ("CUSTOMS", "TRANSPORT")
    assert len(wider.parties) == 5
    with pytest.raises(ValidationError) as err:
        added.with_party(dataclasses.replace(customs, key=generate_keypair("c2").public))
    assert err.value.code == "trust_bad_edit" and "rotate()" in str(err.value)


EDITS = st.lists(
    st.tuples(
        st.sampled_from(["rotate", "revoke"]),
        st.sampled_from(["nce-lab", "tax-body", "stats-bureau", "register"]),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=30, deadline=None)
@given(edits=EDITS)
def test_edits_touch_only_their_party(edits: list[tuple[str, str]]) -> None:
    current = new_trust_root(ROOT, parties(), issued_at=T0)
    for op, name in edits:
        before = current
        if op == "rotate":
            new_key = generate_keypair(f"{name}-next")
            current = current.rotate(name, new_key.public)
            if current.party(name).revoked:
                with pytest.raises(TrustError):
                    current.require_signer(new_key.key_id)
            else:
                assert current.require_signer(new_key.key_id).name == name
            assert before.party(name).key in current.party(name).previous_keys
        else:
            if before.party(name).revoked:
                with pytest.raises(ValidationError):
                    current.revoke(name, "again")
                continue
            current = current.revoke(name, "test")
            assert current.party(name).key.key_id not in current.trusted_keys()
        assert current.version == before.version + 1
        assert current.root_key_id == before.root_key_id
        assert [p.name for p in current.parties] == [p.name for p in before.parties]
        for old, new in zip(before.parties, current.parties, strict=True):
            if old.name != name:
                assert new == old
    assert TrustRoot.from_json(current.to_json()) == current


# -- files: sign, load, tamper, rollback ---------------------------------------------


def test_write_and_load(tmp_path: Path, root: TrustRoot) -> None:
    path = write(root, tmp_path)
    sig = tmp_path / "trust.json.minisig"
    assert path == tmp_path / "trust.json" and sig.exists()
    assert path.read_bytes() == root.canonical_bytes() + b"\n"
    text = sig.read_text()
    assert text.startswith("untrusted comment:") and "trust_root_version:1" in text
    loaded = load_trust_root(path, root_public=ROOT.public)
    assert loaded == root
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trust.json", "trust.json.minisig"]


def test_write_refuses_another_key(tmp_path: Path, root: TrustRoot) -> None:
    with pytest.raises(TrustError) as err:
        write(root, tmp_path, secret=LAB)
    assert err.value.code == "trust_wrong_root_key"
    assert LAB.key_id in str(err.value) and ROOT.key_id in str(err.value)
    assert not (tmp_path / "trust.json").exists()


def test_tampered_file_is_refused(tmp_path: Path, root: TrustRoot) -> None:
    path = write(root, tmp_path)
    path.write_bytes(path.read_bytes().replace(b'"tax_body"', b'"lab"'))
    with pytest.raises(SignatureError) as err:
        load_trust_root(path, root_public=ROOT.public)
    assert str(path) in str(err.value)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_any_flipped_byte_is_refused(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    directory = tmp_path_factory.mktemp("trust")
    path = write(new_trust_root(ROOT, parties(), issued_at=T0), directory)
    raw = bytearray(path.read_bytes())
    pos = data.draw(st.integers(0, len(raw) - 1), label="byte")
    raw[pos] = (raw[pos] + data.draw(st.integers(1, 255), label="delta")) % 256
    path.write_bytes(bytes(raw))
    with pytest.raises(SignatureError):
        load_trust_root(path, root_public=ROOT.public)


def test_missing_files(tmp_path: Path, root: TrustRoot) -> None:
    with pytest.raises(TrustError) as err:
        load_trust_root(tmp_path / "trust.json", root_public=ROOT.public)
    assert err.value.code == "trust_missing" and "trust.json" in str(err.value)
    path = write(root, tmp_path)
    (tmp_path / "trust.json.minisig").unlink()
    with pytest.raises(SignatureError) as serr:
        load_trust_root(path, root_public=ROOT.public)
    assert serr.value.code == "signature_missing" and "trust.json.minisig" in str(serr.value)


def test_signed_by_another_key_is_refused(tmp_path: Path) -> None:
    # a well-formed root whose own root key is the outsider's, signed by the outsider
    fake = new_trust_root(OUTSIDER, parties(), issued_at=T0)
    path = write(fake, tmp_path, secret=OUTSIDER)
    with pytest.raises(SignatureError) as err:
        load_trust_root(path, root_public=ROOT.public)
    assert str(path) in str(err.value)
    # pinning the wrong root public key refuses a genuine file just the same
    genuine = write(new_trust_root(ROOT, parties()), tmp_path / "genuine")
    with pytest.raises(SignatureError):
        load_trust_root(genuine, root_public=LAB.public)


def test_root_key_id_must_match_the_signer(tmp_path: Path) -> None:
    # signed by the real root, but the record names another root key
    record = new_trust_root(OUTSIDER, parties(), issued_at=T0)
    path = tmp_path / "trust.json"
    data = record.canonical_bytes() + b"\n"
    path.write_bytes(data)
    (tmp_path / "trust.json.minisig").write_text(sign_bytes(data, ROOT))
    with pytest.raises(TrustError) as err:
        load_trust_root(path, root_public=ROOT.public)
    assert err.value.code == "trust_wrong_root_key"
    assert OUTSIDER.key_id in str(err.value) and ROOT.key_id in str(err.value)


def test_signed_but_invalid_record_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "trust.json"
    data = b'{"kind":"TrustRoot","version":1}\n'
    path.write_bytes(data)
    (tmp_path / "trust.json.minisig").write_text(sign_bytes(data, ROOT))
    with pytest.raises(TrustError) as err:
        load_trust_root(path, root_public=ROOT.public)
    assert err.value.code == "trust_invalid" and str(path) in str(err.value)


def test_rollback_is_refused_and_state_persisted(tmp_path: Path, root: TrustRoot) -> None:
    state = tmp_path / "state"
    v2 = root.revoke("register", "replaced")
    v3 = v2.rotate("tax-body", OUTSIDER.public)
    old_path = write(root, tmp_path / "v1")
    v2_path = write(v2, tmp_path / "v2")
    v3_path = write(v3, tmp_path / "v3")

    assert load_trust_root(v2_path, root_public=ROOT.public, state_dir=state) == v2
    state_file = state / TRUST_STATE_FILE
    assert json.loads(state_file.read_text()) == {"counters": {"trust_root": 2}}
    with pytest.raises(TrustError) as err:
        load_trust_root(old_path, root_public=ROOT.public, state_dir=state)
    message = str(err.value)
    assert err.value.code == "trust_rollback"
    assert "version 1" in message and "version 2" in message
    assert str(old_path) in message and str(state_file) in message
    assert MonotonicCounter(state_file).current("trust_root") == 2  # not lowered
    # the same version again is fine (re-verification); a newer one advances
    assert load_trust_root(v2_path, root_public=ROOT.public, state_dir=state) == v2
    assert load_trust_root(v3_path, root_public=ROOT.public, state_dir=state) == v3
    assert MonotonicCounter(state_file).current("trust_root") == 3
    with pytest.raises(TrustError):
        load_trust_root(v2_path, root_public=ROOT.public, state_dir=state)
    # without a state directory no rollback check is made
    assert load_trust_root(old_path, root_public=ROOT.public) == root


def test_tampered_file_does_not_advance_the_state(tmp_path: Path, root: TrustRoot) -> None:
    state = tmp_path / "state"
    path = write(root.revoke("register", "x"), tmp_path)
    path.write_bytes(path.read_bytes().replace(b'"version":2', b'"version":9'))
    with pytest.raises(SignatureError):
        load_trust_root(path, root_public=ROOT.public, state_dir=state)
    assert MonotonicCounter(state / TRUST_STATE_FILE).current("trust_root") == 0


# -- MonotonicCounter ------------------------------------------------------------------


def test_counter(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "releases.json"
    counter = MonotonicCounter(path)
    assert counter.current("release") == 0 and counter.values() == {}
    assert counter.check_and_advance("release", 4, what="release r-4") == 4
    assert counter.check_and_advance("release", 4, what="release r-4") == 4
    assert counter.check_and_advance("batch:TAX", 1, what="batch b-1") == 1
    assert MonotonicCounter(path).values() == {"release": 4, "batch:TAX": 1}
    with pytest.raises(TrustError) as err:
        counter.check_and_advance("release", 3, what="release r-3")
    assert err.value.code == "trust_rollback"
    assert "release r-3" in str(err.value) and "version 4" in str(err.value)
    assert counter.current("release") == 4
    with pytest.raises(ValidationError):
        counter.check_and_advance("release", -1, what="release")
    with pytest.raises(ValidationError):
        counter.check_and_advance("bad name", 1, what="release")
    leftovers = [p.name for p in path.parent.iterdir() if p.name.endswith(".part")]
    assert leftovers == []


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.integers(0, 20), min_size=1, max_size=12))
def test_counter_never_goes_down(
    tmp_path_factory: pytest.TempPathFactory, values: list[int]
) -> None:
    counter = MonotonicCounter(tmp_path_factory.mktemp("c") / "state.json")
    highest = 0
    for value in values:
        if value < highest:
            with pytest.raises(TrustError):
                counter.check_and_advance("x", value, what="thing")
        else:
            counter.check_and_advance("x", value, what="thing")
            highest = value
        assert counter.current("x") == highest


@pytest.mark.parametrize(
    "content", [b"not json", b'{"counters": {"trust_root": "5"}}', b"[]", b'{"counters": 1}']
)
def test_corrupt_state_fails_closed(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / TRUST_STATE_FILE
    path.write_bytes(content)
    with pytest.raises(TrustError) as err:
        MonotonicCounter(path).check_and_advance("trust_root", 1, what="trust root")
    assert err.value.code == "trust_state_corrupt" and str(path) in str(err.value)
    assert path.read_bytes() == content  # never silently reset


@pytest.mark.parametrize("name", ["../x", "a/b", "", " lab", "x" * 65, ".hidden"])
def test_party_names_that_could_name_files_elsewhere_are_refused(name):
    from sample_protocol.keys import generate_keypair
    from sample_protocol.trust import Party, Role

    party = Party(name=name, role=Role.BODY, sources=("STATS",), key=generate_keypair("k").public)
    with pytest.raises(ValidationError) as err:
        party.validate()
    assert err.value.code == "trust_bad_party"
