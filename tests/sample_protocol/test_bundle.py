"""Tests of sample_protocol.bundle (writing) and sample_protocol.bundle_verify (verifying).

Real PyNaCl keys, a real signed-by-root trust root, and a real ONNX model converted by
skl2onnx (logistic regression, float32 input named "input", zipmap off).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sample_protocol.bundle import (
    BUNDLE_SIGNATURE_NAME,
    RELEASE_STATE_FILE,
    BundleError,
    build_manifest_files,
    build_parity_fixture,
    write_bundle,
)
from sample_protocol.bundle_verify import VerifiedBundle, release_counter_name, verify_bundle
from sample_protocol.errors import ProtocolError, TrustError, ValidationError
from sample_protocol.keys import SecretKey, generate_keypair
from sample_protocol.onnx_gate import GateError
from sample_protocol.records import (
    MANIFEST_NAME,
    REGISTER_AUDIENCE,
    CategoryCutoffs,
    ModelEntry,
    ReleaseManifest,
)
from sample_protocol.trust import MonotonicCounter, Party, Role, TrustRoot, new_trust_root

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
CREATED = NOW - dt.timedelta(days=1)
EXPIRES = NOW + dt.timedelta(days=90)
MODEL_FILE = "models/tax_payment_discipline.onnx"
MODEL_NAME = "tax_payment_discipline"
FEATURES = ("overdue_days", "arrears_kzt", "filings_late")
FIXTURE_FILE = "parity.json"
CARD_FILE = "MODEL_CARD.md"


# --------------------------------------------------------------------------- fixtures


@dataclasses.dataclass
class World:
    lab: SecretKey
    root: SecretKey
    tax: SecretKey
    rogue: SecretKey
    trust: TrustRoot
    onnx: bytes
    X: npt.NDArray[np.float32]
    proba: npt.NDArray[np.float64]


@pytest.fixture(scope="module")
def world() -> World:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, len(FEATURES))).astype(np.float32)
    y = (X[:, 0] - 0.5 * X[:, 1] + rng.normal(size=300) > 0).astype(np.int64)
    clf = LogisticRegression().fit(X, y)
    model = to_onnx(
        clf,
        initial_types=[("input", FloatTensorType([None, len(FEATURES)]))],
        options={id(clf): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    lab, root, tax, rogue = (generate_keypair(n) for n in ("nce-lab", "nce-root", "tax", "rogue"))
    trust = new_trust_root(
        root,
        [
            Party("nce-lab", Role.LAB, (), lab.public),
            Party("tax", Role.TAX_BODY, ("TAX",), tax.public),
        ],
    )
    rows = X[:20]
    return World(
        lab,
        root,
        tax,
        rogue,
        trust,
        model.SerializeToString(),
        rows,
        clf.predict_proba(rows)[:, 1],
    )


def make_bundle(
    world: World,
    out: Path,
    *,
    sequence: int = 1,
    audience: str = "TAX",
    key: SecretKey | None = None,
    shift: float = 0.0,
    input_names: tuple[str, ...] = FEATURES,
    created: dt.datetime = CREATED,
    expires: dt.datetime = EXPIRES,
    fixture_models: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write a real signed bundle with one model, its parity fixture and a model card."""
    inputs = [[float(v) for v in row] for row in world.X]
    expected = world.proba
    per_model = fixture_models or {
        MODEL_NAME: {
            "inputs": inputs,
            "expected_probabilities": [float(p) + shift for p in expected],
            "tolerance": 1e-5,
        }
    }
    files = {
        MODEL_FILE: world.onnx,
        FIXTURE_FILE: build_parity_fixture(per_model),
        CARD_FILE: b"# Model card\n\nLogistic regression, three features.\n",
    }
    digests = build_manifest_files(files)
    manifest = ReleaseManifest(
        release_id=f"rel-20261123-seq{sequence}",
        sequence=sequence,
        audience=audience,
        created_at=created,
        expires_at=expires,
        lab="nce-lab",
        models=(
            ModelEntry(
                name=MODEL_NAME,
                source=None if audience == REGISTER_AUDIENCE else audience,
                index="payment_discipline",
                file=MODEL_FILE,
                sha256=digests[MODEL_FILE],
                input_names=input_names,
                input_types=("float32",) * len(input_names),
                output_names=("label", "probabilities"),
                opset={"": 17, "ai.onnx.ml": 3},
            ),
        ),
        cutoffs=(CategoryCutoffs("payment_discipline", 0.2, 0.6),),
        files=digests,
        parity_fixture=FIXTURE_FILE,
        model_card=CARD_FILE,
        training={"seed": "7"},
    )
    return write_bundle(out, manifest, files, key or world.lab)


def verify(world: World, bundle: Path, state: Path | None, **kw: Any) -> VerifiedBundle:
    kw.setdefault("trust", world.trust)
    kw.setdefault("audience", "TAX")
    kw.setdefault("now", NOW)
    return verify_bundle(bundle, state_dir=state, **kw)


def refused(code: str, fn: Callable[..., object], *args: Any, **kw: Any) -> BundleError:
    with pytest.raises(BundleError) as info:
        fn(*args, **kw)
    assert info.value.code == code, str(info.value)
    assert info.value.exit_code == 3
    return info.value


def counter(state: Path) -> int:
    return MonotonicCounter(state / RELEASE_STATE_FILE).current(release_counter_name("TAX"))


# --------------------------------------------------------------------------- happy paths


def test_write_then_verify_with_trust_root(world: World, tmp_path: Path) -> None:
    bundle = make_bundle(world, tmp_path / "rel")
    assert sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()) == [
        CARD_FILE,
        MANIFEST_NAME,
        BUNDLE_SIGNATURE_NAME,
        MODEL_FILE,
        FIXTURE_FILE,
    ]
    state = tmp_path / "state"
    vb = verify(world, bundle, state)
    assert vb.signer == "nce-lab"
    assert vb.signature.key_id == world.lab.key_id
    assert vb.manifest.sequence == 1 and vb.release_id == "rel-20261123-seq1"
    assert vb.directory == bundle.resolve()
    assert set(vb.models) == {MODEL_NAME}
    got = vb.models[MODEL_NAME].run(world.X)
    np.testing.assert_allclose(got, world.proba, atol=1e-5)
    assert 0 <= vb.parity[MODEL_NAME] <= 1e-5
    assert counter(state) == 1
    fields = vb.signature.fields
    assert fields["sequence"] == "1" and fields["audience"] == "TAX"


def test_verify_with_single_pinned_lab_key(world: World, tmp_path: Path) -> None:
    bundle = make_bundle(world, tmp_path / "rel")
    vb = verify(world, bundle, None, trust=None, lab_public=world.lab.public)
    assert vb.signer == "nce-lab"
    assert set(vb.models) == {MODEL_NAME}


def test_register_audience(world: World, tmp_path: Path) -> None:
    bundle = make_bundle(world, tmp_path / "rel", audience=REGISTER_AUDIENCE)
    vb = verify(world, bundle, tmp_path / "state", audience=REGISTER_AUDIENCE)
    assert vb.manifest.models[0].source is None
    state = MonotonicCounter(tmp_path / "state" / RELEASE_STATE_FILE)
    assert state.values() == {"release:REGISTER": 1}


def test_gate_false_loads_nothing_and_runs_no_parity(world: World, tmp_path: Path) -> None:
    bundle = make_bundle(world, tmp_path / "rel", shift=0.5)  # parity would fail
    vb = verify(world, bundle, None, gate=False)
    assert vb.models == {} and vb.parity == {}


def test_write_into_empty_existing_directory(world: World, tmp_path: Path) -> None:
    (tmp_path / "rel").mkdir()
    bundle = make_bundle(world, tmp_path / "rel")
    assert verify(world, bundle, None).manifest.sequence == 1


# --------------------------------------------------------------------------- writer refusals


def test_write_refuses_non_empty_directory(world: World, tmp_path: Path) -> None:
    out = tmp_path / "rel"
    out.mkdir()
    (out / "old.txt").write_text("x")
    with pytest.raises(ValidationError) as info:
        make_bundle(world, out)
    assert info.value.code == "bundle_exists" and str(out) in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rel"]  # no partial sibling left
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]


def test_write_refuses_manifest_files_mismatch(world: World, tmp_path: Path) -> None:
    bundle = make_bundle(world, tmp_path / "good")
    manifest = verify(world, bundle, None, gate=False).manifest
    files = {name: (bundle / name).read_bytes() for name in manifest.files}
    files[CARD_FILE] = b"a different card"
    with pytest.raises(ValidationError) as info:
        write_bundle(tmp_path / "bad", manifest, files, world.lab)
    assert info.value.code == "bundle_manifest_mismatch"
    assert CARD_FILE in str(info.value)
    assert not (tmp_path / "bad").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["good"]


def test_build_manifest_files_refuses_reserved_and_conflicting_names() -> None:
    with pytest.raises(ValidationError) as info:
        build_manifest_files({MANIFEST_NAME: b"{}"})
    assert info.value.code == "bundle_reserved_name"
    with pytest.raises(ValidationError) as info:
        build_manifest_files({"models": b"x", "models/a.onnx": b"y"})
    assert info.value.code == "unsafe_path" and "'models'" in str(info.value)
    with pytest.raises(ValidationError) as info:
        build_manifest_files({"../escape.onnx": b"x"})
    assert info.value.code == "unsafe_path"


# --------------------------------------------------------------------------- tampering


def _template(world: World) -> Path:
    base = Path(tempfile.mkdtemp(prefix="bundle-template-"))
    return make_bundle(world, base / "rel")


@pytest.fixture(scope="module")
def template(world: World) -> Iterator[Path]:
    bundle = _template(world)
    yield bundle
    shutil.rmtree(bundle.parent, ignore_errors=True)


def _flippable(bundle: Path, name: str) -> range:
    """Byte positions a flip must be refused at (the untrusted comment is not signed)."""
    data = (bundle / name).read_bytes()
    if name != BUNDLE_SIGNATURE_NAME:
        return range(len(data))
    return range(data.index(b"\n"), len(data))  # line 1 = "untrusted comment: ..."


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(
        [MANIFEST_NAME, BUNDLE_SIGNATURE_NAME, MODEL_FILE, FIXTURE_FILE, CARD_FILE]
    ),
    where=st.floats(0, 1, exclude_max=True),
    xor=st.integers(1, 255),
    prefix_bytes=st.booleans(),
)
def test_any_flipped_byte_is_refused(
    world: World, template: Path, name: str, where: float, xor: int, prefix_bytes: bool
) -> None:
    positions = _flippable(template, name)
    # half the time aim at the first bytes (headers), otherwise anywhere
    pos = positions[int(where * min(len(positions), 64 if prefix_bytes else len(positions)))]
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "rel"
        shutil.copytree(template, bundle)
        path = bundle / name
        data = bytearray(path.read_bytes())
        data[pos] ^= xor
        path.write_bytes(bytes(data))
        state = Path(tmp) / "state"
        with pytest.raises(ProtocolError) as info:
            verify(world, bundle, state)
        assert isinstance(info.value, BundleError | GateError)
        assert info.value.exit_code == 3
        assert counter(state) == 0


def test_untrusted_comment_is_not_signed(world: World, template: Path, tmp_path: Path) -> None:
    """minisign's first line is free text: changing it is not tampering (by design)."""
    bundle = tmp_path / "rel"
    shutil.copytree(template, bundle)
    sig = bundle / BUNDLE_SIGNATURE_NAME
    lines = sig.read_bytes().split(b"\n")
    lines[0] = b"untrusted comment: anything at all"
    sig.write_bytes(b"\n".join(lines))
    assert verify(world, bundle, None).signer == "nce-lab"


def test_tampered_model_names_file_and_hashes(world: World, template: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "rel"
    shutil.copytree(template, bundle)
    (bundle / MODEL_FILE).write_bytes(world.onnx + b"\0")
    err = refused("bundle_file_tampered", verify, world, bundle, tmp_path / "state")
    assert MODEL_FILE in str(err) and "expected sha256" in str(err)


def test_tampered_manifest_is_a_signature_error(
    world: World, template: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "rel"
    shutil.copytree(template, bundle)
    path = bundle / MANIFEST_NAME
    path.write_bytes(path.read_bytes().replace(b'"sequence":1', b'"sequence":9'))
    err = refused("bundle_signature", verify, world, bundle, None)
    assert "signature_mismatch" in str(err) and MANIFEST_NAME in str(err)


# --------------------------------------------------------------------------- signer


def test_unknown_signer_refused(world: World, tmp_path: Path) -> None:
    bundle = make_bundle(world, tmp_path / "rel", key=world.rogue)
    err = refused("bundle_untrusted_signer", verify, world, bundle, tmp_path / "state")
    assert world.rogue.key_id in str(err)
    assert counter(tmp_path / "state") == 0
    refused(
        "bundle_untrusted_signer",
        verify,
        world,
        bundle,
        None,
        trust=None,
        lab_public=world.lab.public,
    )


def test_signer_with_wrong_role_refused(world: World, tmp_path: Path) -> None:
    bundle = make_bundle(world, tmp_path / "rel", key=world.tax)
    err = refused("bundle_untrusted_signer", verify, world, bundle, None)
    assert "trust_wrong_role" in str(err) and "'tax'" in str(err)


def test_revoked_lab_refused(world: World, tmp_path: Path) -> None:
    bundle = make_bundle(world, tmp_path / "rel")
    revoked = world.trust.revoke("nce-lab", "key compromised")
    err = refused("bundle_untrusted_signer", verify, world, bundle, None, trust=revoked)
    assert "trust_revoked" in str(err) and "key compromised" in str(err)


def test_missing_signature_refused(world: World, template: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "rel"
    shutil.copytree(template, bundle)
    (bundle / BUNDLE_SIGNATURE_NAME).unlink()
    err = refused("bundle_signature", verify, world, bundle, None)
    assert BUNDLE_SIGNATURE_NAME in str(err)


def test_exactly_one_of_trust_or_pinned_key(world: World, template: Path) -> None:
    with pytest.raises(TypeError):
        verify(world, template, None, lab_public=world.lab.public)
    with pytest.raises(TypeError):
        verify(world, template, None, trust=None)


# --------------------------------------------------------------------------- manifest


def test_wrong_audience_refused(world: World, template: Path, tmp_path: Path) -> None:
    err = refused(
        "bundle_wrong_audience", verify, world, template, tmp_path / "s", audience=REGISTER_AUDIENCE
    )
    assert "'REGISTER'" in str(err) and "'TAX'" in str(err)
    assert not (tmp_path / "s" / RELEASE_STATE_FILE).exists()


def test_expired_refused(world: World, template: Path) -> None:
    err = refused("bundle_expired", verify, world, template, None, now=EXPIRES)
    assert EXPIRES.isoformat() in str(err)
    refused("bundle_expired", verify, world, template, None, now=EXPIRES + dt.timedelta(days=1))
    assert verify(world, template, None, now=EXPIRES - dt.timedelta(seconds=1), gate=False)


def test_created_in_the_future_refused(world: World, template: Path) -> None:
    early = CREATED - dt.timedelta(hours=1)
    err = refused("bundle_not_yet_valid", verify, world, template, None, now=early)
    assert CREATED.isoformat() in str(err)
    within_skew = CREATED - dt.timedelta(minutes=1)
    assert verify(world, template, None, now=within_skew, gate=False)


def test_naive_now_refused(world: World, template: Path) -> None:
    with pytest.raises(ValidationError):
        verify(world, template, None, now=NOW.replace(tzinfo=None))


# --------------------------------------------------------------------------- files


def test_extra_file_refused(world: World, template: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "rel"
    shutil.copytree(template, bundle)
    (bundle / "models" / "smuggled.onnx").write_bytes(world.onnx)
    err = refused("bundle_extra_file", verify, world, bundle, tmp_path / "state")
    assert "models/smuggled.onnx" in str(err)
    assert counter(tmp_path / "state") == 0


def test_hidden_extra_file_refused(world: World, template: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "rel"
    shutil.copytree(template, bundle)
    (bundle / ".hidden").write_bytes(b"x")
    assert ".hidden" in str(refused("bundle_extra_file", verify, world, bundle, None))


@pytest.mark.parametrize("name", [MODEL_FILE, FIXTURE_FILE, CARD_FILE])
def test_missing_file_refused(world: World, template: Path, tmp_path: Path, name: str) -> None:
    bundle = tmp_path / "rel"
    shutil.copytree(template, bundle)
    (bundle / name).unlink()
    err = refused("bundle_file_missing", verify, world, bundle, None)
    assert name in str(err)


def test_missing_manifest_or_directory(world: World, template: Path, tmp_path: Path) -> None:
    refused("bundle_missing", verify, world, tmp_path / "nowhere", None)
    bundle = tmp_path / "rel"
    shutil.copytree(template, bundle)
    (bundle / MANIFEST_NAME).unlink()
    assert MANIFEST_NAME in str(refused("bundle_missing", verify, world, bundle, None))


def test_symlinked_file_refused(world: World, template: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "rel"
    shutil.copytree(template, bundle)
    outside = tmp_path / "card-copy.md"
    shutil.copy(bundle / CARD_FILE, outside)
    (bundle / CARD_FILE).unlink()
    os.symlink(outside, bundle / CARD_FILE)
    err = refused("bundle_unsafe_file", verify, world, bundle, None)
    assert CARD_FILE in str(err) and "symlink" in str(err)


def test_symlinked_directory_refused(world: World, template: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "rel"
    shutil.copytree(template, bundle)
    shutil.move(bundle / "models", tmp_path / "models-outside")
    os.symlink(tmp_path / "models-outside", bundle / "models")
    err = refused("bundle_unsafe_file", verify, world, bundle, None)
    assert "models" in str(err)


def test_symlinked_manifest_refused(world: World, template: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "rel"
    shutil.copytree(template, bundle)
    shutil.move(bundle / MANIFEST_NAME, tmp_path / "m.json")
    os.symlink(tmp_path / "m.json", bundle / MANIFEST_NAME)
    refused("bundle_unsafe_file", verify, world, bundle, None)


# --------------------------------------------------------------------------- rollback


def test_rollback_refused_and_refusals_do_not_advance(world: World, tmp_path: Path) -> None:
    state = tmp_path / "state"
    two = make_bundle(world, tmp_path / "two", sequence=2)
    one = make_bundle(world, tmp_path / "one", sequence=1)
    verify(world, two, state)
    assert counter(state) == 2
    err = refused("bundle_rollback", verify, world, one, state)
    assert "found 1" in str(err) and ">= 2" in str(err)
    assert verify(world, two, state).manifest.sequence == 2  # equal: re-verify allowed
    # a later bundle that fails parity (after the gate) is refused and does not advance
    five = make_bundle(world, tmp_path / "five", sequence=5, shift=0.25)
    refused("bundle_parity", verify, world, five, state)
    assert counter(state) == 2
    # nor does one refused for its audience or expiry
    refused("bundle_expired", verify, world, five, state, now=EXPIRES)
    assert counter(state) == 2
    three = make_bundle(world, tmp_path / "three", sequence=3)
    verify(world, three, state)
    assert counter(state) == 3
    refused("bundle_rollback", verify, world, two, state)


# --------------------------------------------------------------------------- gate, parity


def test_parity_mismatch_refused_even_when_signed(world: World, tmp_path: Path) -> None:
    bundle = make_bundle(world, tmp_path / "rel", shift=1e-3)
    err = refused("bundle_parity", verify, world, bundle, tmp_path / "state")
    assert MODEL_NAME in str(err) and "parity" in str(err)
    assert counter(tmp_path / "state") == 0


def test_verifier_tolerance_is_a_ceiling(world: World, tmp_path: Path) -> None:
    loose = {
        MODEL_NAME: {
            "inputs": [[float(v) for v in row] for row in world.X],
            "expected_probabilities": [float(p) + 1e-3 for p in world.proba],
            "tolerance": 0.5,  # the lab cannot loosen the verifier's tolerance
        }
    }
    bundle = make_bundle(world, tmp_path / "rel", fixture_models=loose)
    refused("bundle_parity", verify, world, bundle, None)
    assert verify(world, bundle, None, tolerance=1e-2).parity[MODEL_NAME] < 1e-2


def test_fixture_must_cover_every_model(world: World, tmp_path: Path) -> None:
    other = {"other_model": {"inputs": [[0.0, 0.0, 0.0]], "expected_probabilities": [0.5]}}
    bundle = make_bundle(world, tmp_path / "rel", fixture_models=other)
    err = refused("bundle_parity", verify, world, bundle, None)
    assert "other_model" in str(err)


def test_gate_refusal_passes_through(world: World, tmp_path: Path) -> None:
    bundle = make_bundle(world, tmp_path / "rel", input_names=(*FEATURES, "extra_feature"))
    with pytest.raises(GateError) as info:
        verify(world, bundle, tmp_path / "state")
    assert info.value.code == "gate_input" and MODEL_FILE in str(info.value)
    assert counter(tmp_path / "state") == 0


def test_bundle_error_is_a_value_error() -> None:
    err = BundleError("x", code="bundle_parity")
    assert isinstance(err, ValueError) and isinstance(err, ProtocolError)
    assert err.code == "bundle_parity" and BundleError.exit_code == 3


def test_run_parity_false_gates_but_skips_parity(world: World, tmp_path: Path) -> None:
    bundle = make_bundle(world, tmp_path / "rel", shift=0.5)
    vb = verify(world, bundle, None, run_parity=False)
    assert set(vb.models) == {MODEL_NAME} and vb.parity == {}


def test_corrupt_state_file_is_refused_not_reset(
    world: World, template: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / RELEASE_STATE_FILE).write_text("{not json")
    with pytest.raises(TrustError) as info:
        verify(world, template, state)
    assert info.value.code == "trust_state_corrupt"
    assert (state / RELEASE_STATE_FILE).read_text() == "{not json"
