from __future__ import annotations

import pytest
from typer.testing import CliRunner

from nce_model_lab.cli import app
from nce_model_lab.errors import LabError
from nce_model_lab.trust_admin import (
    add_party,
    create_trust_root,
    parse_party_spec,
    revoke_party,
    rotate_party_key,
)
from sample_protocol.errors import SignatureError, TrustError
from sample_protocol.keys import generate_keypair, write_keypair
from sample_protocol.trust import Role, load_trust_root

runner = CliRunner()


@pytest.fixture
def keys(tmp_path):
    out = tmp_path / "keys"
    made = {}
    for name in ("nce-root", "nce-lab", "tax-body", "stats-body", "register"):
        secret = generate_keypair(name)
        made[name] = (secret, write_keypair(secret, out))
    return made


def specs(keys):
    return [
        parse_party_spec(f"lab:{keys['nce-lab'][1].public}"),
        parse_party_spec(f"tax_body:{keys['tax-body'][1].public}:TAX"),
        parse_party_spec(f"register:{keys['register'][1].public}"),
    ]


def test_parse_party_spec_reads_role_file_and_sources():
    spec = parse_party_spec("body:keys/s.pub:stats, real_estate")
    assert spec.role is Role.BODY
    assert spec.sources == ("STATS", "REAL_ESTATE")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("lab", "expected ROLE:PUBLIC_KEY_FILE"),
        ("king:k.pub", "expected a role among"),
        ("body:k.pub:NOPE", "unknown source(s) NOPE"),
        ("body:k.pub", "must own at least one source"),
    ],
)
def test_parse_party_spec_refuses_bad_specs(text, fragment):
    with pytest.raises(LabError) as err:
        parse_party_spec(text)
    assert err.value.code == "bad_party_spec"
    assert fragment in str(err.value)


def test_create_edit_and_verify(tmp_path, keys):
    trust = tmp_path / "trust.json"
    root_key = keys["nce-root"][1].secret
    record = create_trust_root(root_key, specs(keys), trust)
    assert record.version == 1
    loaded = load_trust_root(trust, root_public=keys["nce-root"][0].public)
    assert [p.name for p in loaded.parties] == ["nce-lab", "tax-body", "register"]

    v2 = add_party(trust, root_key, parse_party_spec(f"body:{keys['stats-body'][1].public}:STATS"))
    assert v2.version == 2 and v2.party("stats-body").sources == ("STATS",)

    new = generate_keypair("stats-body-2026")
    new_files = write_keypair(new, tmp_path / "newkeys")
    v3 = rotate_party_key(trust, root_key, "stats-body", new_files.public)
    assert v3.party("stats-body").key.key_id == new.key_id
    with pytest.raises(TrustError):
        v3.require_signer(keys["stats-body"][0].key_id)

    v4 = revoke_party(trust, root_key, "tax-body", "key lost")
    assert v4.version == 4
    with pytest.raises(TrustError) as err:
        load_trust_root(trust, root_public=keys["nce-root"][0].public).require_signer(
            keys["tax-body"][0].key_id
        )
    assert err.value.code == "trust_revoked"


def test_edit_with_wrong_root_key_is_refused(tmp_path, keys):
    trust = tmp_path / "trust.json"
    create_trust_root(keys["nce-root"][1].secret, specs(keys), trust)
    before = trust.read_bytes()
    with pytest.raises(SignatureError):
        revoke_party(trust, keys["nce-lab"][1].secret, "tax-body", "x")
    assert trust.read_bytes() == before


def test_cli_init_show_and_refusals(tmp_path, keys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["trust", "init", "--root-key", str(keys["nce-root"][1].secret), "--out", "t.json"]
    for s in (
        "lab:{}".format(keys["nce-lab"][1].public),
        "tax_body:{}:TAX".format(keys["tax-body"][1].public),
    ):
        args += ["--party", s]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "version 1, 2 parties" in result.output

    shown = runner.invoke(
        app, ["trust", "show", "t.json", "--root-pub", str(keys["nce-root"][1].public)]
    )
    assert shown.exit_code == 0 and "tax-body" in shown.output

    wrong = runner.invoke(
        app, ["trust", "show", "t.json", "--root-pub", str(keys["nce-lab"][1].public)]
    )
    assert wrong.exit_code == 3
    assert "unknown key" in wrong.output

    (tmp_path / "t.json").write_text(
        (tmp_path / "t.json").read_text().replace("tax-body", "tax-bodz")
    )
    tampered = runner.invoke(
        app, ["trust", "show", "t.json", "--root-pub", str(keys["nce-root"][1].public)]
    )
    assert tampered.exit_code == 3

    bad = runner.invoke(
        app, ["trust", "init", "--root-key", str(keys["nce-root"][1].secret), "--party", "x:y"]
    )
    assert bad.exit_code == 2
    assert "bad_party_spec" in bad.output
