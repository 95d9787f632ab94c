"""Tests of agency_runtime/verify.py and ``agency-runtime verify``: the lab's real release.

The checks of ``sample_protocol.bundle_verify`` and of the ONNX gate are tested on their
own in tests/sample_protocol; here every kind of refusal goes through the command line (and
the library) of the runtime, with its exit code, verdict, audit entry and state.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from typer.testing import CliRunner, Result

from agency_runtime.cli import app
from agency_runtime.sample_round import AUDIT_FILE
from agency_runtime.verify import features_file, verify_release
from sample_protocol.audit import AuditLog
from sample_protocol.bundle import BUNDLE_SIGNATURE_NAME, RELEASE_STATE_FILE, BundleError
from sample_protocol.bundle_verify import release_counter_name
from sample_protocol.keys import generate_keypair, write_keypair
from sample_protocol.records import MANIFEST_NAME, ReleaseManifest
from sample_protocol.trust import MonotonicCounter, write_trust_root
from tests.sample_protocol.test_onnx_gate import _model

from .release_fixtures import ReleaseWorld, read_bundle, release_world, resign
from .round_fixtures import LAB, ROOT

runner = CliRunner()


@pytest.fixture(scope="module")
def rw(tmp_path_factory: pytest.TempPathFactory) -> ReleaseWorld:
    return release_world(tmp_path_factory)


def verify(rw: ReleaseWorld, bundle: Path, state: Path, *extra: str) -> Result:
    return runner.invoke(
        app, ["verify", str(bundle), "--state", str(state), *rw.trust_args(), *extra]
    )


def entries(state: Path) -> list[dict[str, object]]:
    return [e.to_dict() for e in AuditLog(state / AUDIT_FILE, actor="t").entries()]


def refused(result: Result, code: str) -> str:
    assert result.exit_code == 3, result.output
    assert f"REFUSED [{code}]" in result.stdout, result.stdout
    assert f"[{code}]" in result.stderr
    return result.stdout


def sequence_seen(state: Path, audience: str = "TAX") -> int:
    return MonotonicCounter(state / RELEASE_STATE_FILE).current(release_counter_name(audience))


# --------------------------------------------------------------------------- accepted


def test_verify_prints_a_verdict_and_records_the_sequence(rw: ReleaseWorld, tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = verify(rw, rw.bundle("TAX"), state, "--key", str(rw.world.key("tax-body")))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(
        f"VERIFIED: release {rw.release_id} (sequence 1) for TAX, signed by nce-lab"
    )
    assert "4 model(s) passed the ONNX gate" in out
    manifest, _ = read_bundle(rw.bundle("TAX"))
    width = len(manifest.models[0].input_names)
    assert f"TAX.payment_discipline: {width} inputs" in out
    assert "tax_office_code -> prefix2" in out  # the lab trained on 2-digit office codes
    assert sequence_seen(state) == 1
    (entry,) = entries(state)
    assert entry["action"] == "release_verified" and entry["outcome"] == "ok"
    assert entry["actor"] == "tax-body" and entry["subject"] == rw.release_id


def test_verify_json_and_audience_from_the_signed_manifest(
    rw: ReleaseWorld, tmp_path: Path
) -> None:
    result = verify(rw, rw.bundle("LEGAL_STATS"), tmp_path / "state", "--json")
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)
    assert verdict["verdict"] == "verified" and verdict["audience"] == "LEGAL_STATS"
    assert [m["index"] for m in verdict["models"]] == ["conscientiousness", "business_reputation"]
    assert all(m["parity_max_abs_diff"] < 1e-5 for m in verdict["models"])
    (entry,) = entries(tmp_path / "state")
    assert entry["actor"] == "agency-runtime"


def test_verify_with_a_single_pinned_lab_key(rw: ReleaseWorld, tmp_path: Path) -> None:
    args = ["verify", str(rw.bundle("TAX")), "--state", str(tmp_path / "s")]
    result = runner.invoke(app, [*args, "--lab-pub", str(rw.world.pub(LAB))])
    assert result.exit_code == 0, result.output
    rogue = generate_keypair("nce-lab")
    write_keypair(rogue, tmp_path / "rogue")
    result = runner.invoke(app, [*args, "--lab-pub", str(tmp_path / "rogue" / "nce-lab.pub")])
    refused(result, "bundle_untrusted_signer")


def test_trust_options_are_checked(rw: ReleaseWorld, tmp_path: Path) -> None:
    base = ["verify", str(rw.bundle("TAX")), "--state", str(tmp_path / "s")]
    for extra in ([], ["--trust", str(rw.world.trust)], [*rw.trust_args(), "--lab-pub", "x"]):
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 2 and "[bad_option]" in result.stderr, result.output


# --------------------------------------------------------------------------- refused


def test_source_and_body_must_match(rw: ReleaseWorld, tmp_path: Path) -> None:
    refused(
        verify(rw, rw.bundle("TAX"), tmp_path / "a", "--source", "LEGAL_STATS"),
        "bundle_wrong_audience",
    )
    key = str(rw.world.key(rw.body("LEGAL_STATS")))
    refused(verify(rw, rw.bundle("TAX"), tmp_path / "b", "--key", key), "trust_wrong_source")
    refused(verify(rw, rw.bundle("REGISTER"), tmp_path / "c"), "release_not_for_body")
    assert sequence_seen(tmp_path / "b") == 0
    (entry,) = entries(tmp_path / "b")
    assert entry["outcome"] == "refused" and entry["details"]["code"] == "trust_wrong_source"


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_flipped_byte_is_refused(
    rw: ReleaseWorld, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    src = rw.bundle("TAX")
    manifest, _ = read_bundle(src)
    name = data.draw(
        st.sampled_from(sorted([*manifest.files, MANIFEST_NAME, BUNDLE_SIGNATURE_NAME]))
    )
    content = (src / name).read_bytes()
    # the signature's first line, its untrusted comment, is not signed (see test_bundle)
    start = content.index(b"\n") + 1 if name == BUNDLE_SIGNATURE_NAME else 0
    position = data.draw(st.integers(start, len(content) - 1))
    bundle = tmp_path_factory.mktemp("flip") / "TAX"
    shutil.copytree(src, bundle)
    raw = bytearray((bundle / name).read_bytes())
    raw[position] ^= 1 << data.draw(st.integers(0, 7))
    (bundle / name).write_bytes(bytes(raw))
    state = bundle.parent / "state"
    result = verify(rw, bundle, state)
    assert result.exit_code == 3, (name, position, result.output)
    assert "REFUSED [" in result.stdout
    assert sequence_seen(state) == 0
    assert entries(state)[-1]["outcome"] == "refused"


def test_unknown_and_revoked_signers(rw: ReleaseWorld, tmp_path: Path) -> None:
    rogue = resign(rw.bundle("TAX"), tmp_path / "rogue", generate_keypair("nce-lab"))
    refused(verify(rw, rogue, tmp_path / "s1"), "bundle_untrusted_signer")
    # The root revokes the lab: its releases are refused from then on.
    revoked = rw.world.trust_root.revoke(LAB, "key compromised")
    trust = write_trust_root(revoked, tmp_path / "trust.json", rw.world.secret(ROOT))
    args = ["verify", str(rw.bundle("TAX")), "--state", str(tmp_path / "s2"), "--trust", str(trust)]
    result = runner.invoke(app, [*args, "--root-pub", str(rw.world.root_pub)])
    refused(result, "bundle_untrusted_signer")
    assert "revoked" in result.stdout


def test_expired_release_refused(rw: ReleaseWorld, tmp_path: Path) -> None:
    past = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

    def expire(m: ReleaseManifest) -> ReleaseManifest:
        return dataclasses.replace(m, created_at=past, expires_at=past + dt.timedelta(days=30))

    bundle = resign(rw.bundle("TAX"), tmp_path / "old", rw.world.secret(LAB), edit=expire)
    refused(verify(rw, bundle, tmp_path / "s"), "bundle_expired")


def test_rollback_refused_and_refusals_do_not_advance(rw: ReleaseWorld, tmp_path: Path) -> None:
    lab = rw.world.secret(LAB)

    def seq(n: int):
        return lambda m: dataclasses.replace(m, sequence=n)

    newer = resign(rw.bundle("TAX"), tmp_path / "seq5", lab, edit=seq(5))
    broken = resign(rw.bundle("TAX"), tmp_path / "seq9", lab, edit=seq(9))
    (broken / "parity.json").write_bytes(b"{}")  # seq 9 but tampered: refused
    state = tmp_path / "state"
    refused(verify(rw, broken, state), "bundle_file_tampered")
    assert verify(rw, newer, state).exit_code == 0
    assert sequence_seen(state) == 5
    out = refused(verify(rw, rw.bundle("TAX"), state), "bundle_rollback")
    assert "highest accepted" in out
    assert verify(rw, newer, state).exit_code == 0  # the same release again is fine
    assert sequence_seen(state) == 5
    assert [e["outcome"] for e in entries(state)] == ["refused", "ok", "refused", "ok"]


def _swap_model(rw: ReleaseWorld, dest: Path, model: bytes) -> Path:
    manifest, _ = read_bundle(rw.bundle("TAX"))
    name = manifest.models[0].file
    return resign(rw.bundle("TAX"), dest, rw.world.secret(LAB), files={name: model})


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("operator", "gate_operator"),
        ("extra_output", "gate_output"),
        ("input_type", "gate_input"),
        ("input_width", "gate_input"),
    ],
)
def test_gate_refusals_on_the_cli_path(
    rw: ReleaseWorld, tmp_path: Path, case: str, code: str
) -> None:
    """A lab-signed bundle whose model breaks the gate's contract is still refused."""
    manifest, _ = read_bundle(rw.bundle("TAX"))
    n = len(manifest.models[0].input_names)
    models = {
        "operator": _model(
            width=n, extra_nodes=(helper.make_node("Loop", ["logits"], ["x"], name="bad"),)
        ),
        "extra_output": _model(
            width=n,
            extra_nodes=(helper.make_node("Identity", ["logits"], ["leak"], name="leak"),),
            extra_outputs=(helper.make_tensor_value_info("leak", TensorProto.FLOAT, ["N", 2]),),
        ),
        "input_type": _model(width=n, input_type=TensorProto.DOUBLE),
        "input_width": _model(width=n + 1),
    }
    bundle = _swap_model(rw, tmp_path / "bad", models[case].SerializeToString())
    result = verify(rw, bundle, tmp_path / "state")
    refused(result, code)
    assert "TAX.conscientiousness" in result.stdout


def test_release_must_carry_features_and_scales(rw: ReleaseWorld, tmp_path: Path) -> None:
    lab = rw.world.secret(LAB)
    manifest, content = read_bundle(rw.bundle("TAX"))
    entry = manifest.models[0]
    spec = json.loads(content[features_file(entry)])
    spec["columns"] = spec["columns"][::-1]
    swapped = resign(
        rw.bundle("TAX"), tmp_path / "order", lab,
        files={features_file(entry): json.dumps(spec).encode()},
    )  # fmt: skip
    refused(verify(rw, swapped, tmp_path / "s1"), "release_features_mismatch")
    missing = resign(rw.bundle("TAX"), tmp_path / "nofeat", lab, files={features_file(entry): None})
    refused(verify(rw, missing, tmp_path / "s2"), "release_features_missing")

    def no_scale(m: ReleaseManifest) -> ReleaseManifest:
        training = {k: v for k, v in m.training.items() if k != f"scale:{entry.index}"}
        return dataclasses.replace(m, training=training)

    unscaled = resign(rw.bundle("TAX"), tmp_path / "noscale", lab, edit=no_scale)
    refused(verify(rw, unscaled, tmp_path / "s3"), "release_no_scale")
    for state in ("s1", "s2", "s3"):
        assert sequence_seen(tmp_path / state) == 0

    def bad_levels(m: ReleaseManifest) -> ReleaseManifest:
        notes = {**m.training, "generalisation:TAX": '{"tax_office_code": "district"}'}
        return dataclasses.replace(m, training=notes)

    odd = resign(rw.bundle("TAX"), tmp_path / "levels", lab, edit=bad_levels)
    refused(verify(rw, odd, tmp_path / "s4"), "release_generalisation")


def test_library_refusals_raise_and_are_logged(rw: ReleaseWorld, tmp_path: Path) -> None:
    with pytest.raises(BundleError) as err:
        verify_release(
            tmp_path / "nothing",
            state_dir=tmp_path / "s",
            actor="tax-body",
            trust=rw.world.trust_root,
        )
    assert err.value.code == "bundle_missing"
    with pytest.raises(TypeError):
        verify_release(rw.bundle("TAX"), state_dir=tmp_path / "s", actor="tax-body")
    release = verify_release(
        rw.bundle("TAX"), state_dir=tmp_path / "s", actor="tax-body", trust=rw.world.trust_root,
        source="TAX", body_key_id=rw.world.secret("tax-body").key_id,
    )  # fmt: skip
    assert release.source.code == "TAX" and release.release_id == rw.release_id
    assert release.generalisation == {"tax_office_code": ("code", "prefix2")}
    assert "tax_office_code" in release.fields and "taxpayer_name" not in release.fields
    assert [e["outcome"] for e in entries(tmp_path / "s")] == ["refused", "ok"]
