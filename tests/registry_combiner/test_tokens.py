"""``registry_combiner.tokens`` and ``registry-combiner tokens add | list | remove``."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from registry_combiner.cli import app
from registry_combiner.errors import RegistryInputError
from registry_combiner.tokens import (
    TOKEN_PREFIX,
    add_user,
    hash_token,
    list_users,
    load_tokens,
    remove_user,
)
from sample_protocol.errors import IdentifierError

BIN = "030840109559"  # a valid BIN
runner = CliRunner()


def test_tokens_are_stored_as_hashes_in_a_private_file(tmp_path: Path):
    path = tmp_path / "tokens.json"
    token, user = add_user(path, "alice")
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert token not in text and hash_token(token) in text
    assert json.loads(text)["users"]["alice"]["access"] == "full"
    other, _ = add_user(path, "ent", access="basic", entity=BIN)
    tokens = load_tokens(path)
    assert len(tokens) == 2
    found = tokens.authenticate(token)
    assert found is not None and found.name == "alice" and found.full and found.entity is None
    bound = tokens.authenticate(other)
    assert bound is not None and bound.entity == BIN and not bound.full
    for wrong in (None, "", token[:-1], token + "x", "kzr_" + "x" * 300, hash_token(token)):
        assert tokens.authenticate(wrong) is None
    assert [u.name for u in list_users(path)] == ["alice", "ent"]
    assert user.created_at is not None


def test_replacing_and_removing_users(tmp_path: Path):
    path = tmp_path / "tokens.json"
    old, _ = add_user(path, "alice")
    with pytest.raises(RegistryInputError) as err:
        add_user(path, "alice")
    assert err.value.code == "token_user_exists"
    new, _ = add_user(path, "alice", replace_existing=True)
    tokens = load_tokens(path)
    assert tokens.authenticate(old) is None and tokens.authenticate(new) is not None
    remove_user(path, "alice")
    assert load_tokens(path).authenticate(new) is None
    with pytest.raises(RegistryInputError) as err2:
        remove_user(path, "alice")
    assert err2.value.code == "token_user_unknown"


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"name": "-x"}, "token_bad_user"),
        ({"name": "a b"}, "token_bad_user"),
        ({"name": "x" * 65}, "token_bad_user"),
        ({"name": "ok", "access": "root"}, "token_bad_access"),
    ],
)
def test_bad_users_are_refused(tmp_path: Path, kwargs, code):
    name = kwargs.pop("name")
    with pytest.raises(RegistryInputError) as err:
        add_user(tmp_path / "t.json", name, **kwargs)
    assert err.value.code == code
    assert not (tmp_path / "t.json").exists()


def test_a_bad_entity_or_file_is_refused(tmp_path: Path):
    path = tmp_path / "tokens.json"
    with pytest.raises(IdentifierError):
        add_user(path, "ent", entity="123456789012")
    with pytest.raises(RegistryInputError) as err:
        load_tokens(path)
    assert err.value.code == "tokens_missing"
    add_user(path, "alice")
    os.chmod(path, 0o640)
    with pytest.raises(RegistryInputError) as err2:
        load_tokens(path)
    assert err2.value.code == "tokens_permissions"
    zeros = "0" * 64
    for text in (
        "{",
        '{"kind": "TokenFile", "version": 2, "users": {}}',
        '{"users": {"alice": {"sha256": "XYZ"}}}',
        '{"users": {"a b": {"sha256": "' + zeros + '"}}}',
        '{"users": {"alice": {"sha256": "' + zeros + '", "access": "god"}}}',
    ):
        path.write_text(text)
        os.chmod(path, 0o600)
        with pytest.raises(RegistryInputError) as err3:
            load_tokens(path)
        assert err3.value.code == "tokens_corrupt" and str(path) in str(err3.value), text


def test_tokens_on_the_command_line(tmp_path: Path):
    path = str(tmp_path / "tokens.json")
    result = runner.invoke(app, ["tokens", "add", "alice", "--tokens", path])
    assert result.exit_code == 0, result.stderr
    token = result.stdout.strip().splitlines()[-1]
    assert load_tokens(path).authenticate(token) is not None
    result = runner.invoke(
        app, ["tokens", "add", "ent", "--tokens", path, "--access", "basic", "--entity", BIN,
              "--json"],
    )  # fmt: skip
    assert result.exit_code == 0 and json.loads(result.stdout)["entity"] == BIN
    listed = runner.invoke(app, ["tokens", "list", "--tokens", path])
    assert listed.exit_code == 0 and "alice" in listed.stdout and token not in listed.stdout
    assert runner.invoke(app, ["tokens", "add", "alice", "--tokens", path]).exit_code == 2
    assert runner.invoke(app, ["tokens", "remove", "alice", "--tokens", path]).exit_code == 0
    assert runner.invoke(app, ["tokens", "remove", "alice", "--tokens", path]).exit_code == 2
    for command in ("add", "list", "remove"):
        helped = runner.invoke(app, ["tokens", command, "--help"])
        assert helped.exit_code == 0 and "--tokens" in helped.stdout
