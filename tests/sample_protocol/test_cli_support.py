from __future__ import annotations

import typer
from typer.testing import CliRunner

from sample_protocol.cli_support import (
    EXIT_FAILURE,
    EXIT_REFUSED,
    EXIT_USAGE,
    App,
    package_version,
)
from sample_protocol.errors import SignatureError, ValidationError

runner = CliRunner()


def make_app() -> App:
    app = App(prog="toy", help="A toy tool.")
    app.add_version_option()

    @app.command("bad-input")
    def bad_input() -> None:
        raise ValidationError("data.csv column 'x': expected int, found 'abc'", code="toy_code")

    @app.command("refuse")
    def refuse() -> None:
        raise SignatureError("bundle/manifest.json: signature does not match")

    @app.command("missing-file")
    def missing_file() -> None:
        open("/nonexistent/dir/file.txt")  # noqa: SIM115

    @app.command("bug")
    def bug() -> None:
        raise ZeroDivisionError("division by zero")

    @app.command("ok")
    def ok(name: str = typer.Argument("x")) -> None:
        typer.echo(f"hello {name}")

    return app


def test_ok_command_runs():
    result = runner.invoke(make_app(), ["ok", "there"])
    assert result.exit_code == 0
    assert result.output.strip() == "hello there"


def test_version_option():
    result = runner.invoke(make_app(), ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"toy {package_version()}"


def test_bad_input_is_exit_2_with_code_and_message():
    result = runner.invoke(make_app(), ["bad-input"])
    assert result.exit_code == EXIT_USAGE
    assert "toy: error [toy_code]: data.csv column 'x'" in result.output
    assert "Traceback" not in result.output


def test_refusal_is_exit_3():
    result = runner.invoke(make_app(), ["refuse"])
    assert result.exit_code == EXIT_REFUSED
    assert "[bad_signature]" in result.output


def test_os_error_names_the_file():
    result = runner.invoke(make_app(), ["missing-file"])
    assert result.exit_code == EXIT_USAGE
    assert "/nonexistent/dir/file.txt" in result.output


def test_unexpected_error_is_exit_1_without_traceback(monkeypatch):
    monkeypatch.delenv("KZS_DEBUG", raising=False)
    result = runner.invoke(make_app(), ["bug"])
    assert result.exit_code == EXIT_FAILURE
    assert "unexpected ZeroDivisionError" in result.output
    assert "Traceback" not in result.output


def test_unknown_command_is_usage_error():
    result = runner.invoke(make_app(), ["no-such-command"])
    assert result.exit_code == EXIT_USAGE
