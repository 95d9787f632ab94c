"""Every CLI and every command has --help and --version that work."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from sample_protocol.cli_support import package_version
from tests.cli_tools import APPS, command_paths

runner = CliRunner()
ALL_COMMANDS = [(prog, path) for prog in APPS for path in command_paths(prog)]


@pytest.mark.parametrize("prog", sorted(APPS))
def test_top_level_help_explains_exit_codes(prog):
    result = runner.invoke(APPS[prog], ["--help"])
    assert result.exit_code == 0
    assert "Exit codes" in result.output


@pytest.mark.parametrize("prog", sorted(APPS))
def test_version(prog):
    result = runner.invoke(APPS[prog], ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"{prog} {package_version()}"


@pytest.mark.parametrize(
    ("prog", "path"), ALL_COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else v
)
def test_every_command_has_help_text(prog, path):
    result = runner.invoke(APPS[prog], [*path, "--help"])
    assert result.exit_code == 0, result.output
    # A one-line summary beyond the usage line.
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) >= 3


@pytest.mark.parametrize("prog", sorted(APPS))
def test_console_scripts_are_installed(prog):
    exe = __import__("pathlib").Path(sys.executable).parent / prog
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"{prog} {package_version()}"
