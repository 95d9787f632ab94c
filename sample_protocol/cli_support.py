"""What the three command-line tools share: exit codes, error handling, version, JSON.

Every CLI is a thin :class:`App` (a ``typer.Typer``) over the library. Its commands are
guarded so that a user mistake never ends in a traceback:

========  =====================================================================
exit       meaning
========  =====================================================================
0          done
1          failure: something broke that is not the user's input (a bug, a full disk)
2          bad input or usage: a file, column, row or option is wrong (the message says which)
3          refused: a signature, trust, gate, quality or policy check said no
========  =====================================================================

Set ``KZS_DEBUG=1`` to see the traceback of an unexpected failure.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from collections.abc import Callable
from importlib import metadata
from typing import Any, TypeVar

import typer

from .errors import ProtocolError
from .serde import encode_value

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "App",
    "echo_error",
    "emit_json",
    "package_version",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3

F = TypeVar("F", bound=Callable[..., Any])

DISTRIBUTION = "kz-federated-scoring"


def package_version() -> str:
    """The installed distribution's version (``0+unknown`` when run from a bare tree)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def echo_error(prog: str, message: str, code: str | None = None) -> None:
    """Print one error line to standard error."""
    tag = f" [{code}]" if code else ""
    typer.echo(f"{prog}: error{tag}: {message}", err=True)


def emit_json(obj: Any) -> None:
    """Print ``obj`` as indented JSON on standard output (dates and records encoded)."""
    typer.echo(json.dumps(encode_value(obj), indent=2, sort_keys=True, ensure_ascii=False))


def _guard(prog: str, func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except ProtocolError as exc:
            echo_error(prog, str(exc), exc.code)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            echo_error(prog, f"{exc.strerror or exc}{where}", "os_error")
            raise typer.Exit(EXIT_USAGE) from None
        except Exception as exc:  # a bug: say so plainly, keep the traceback opt-in
            if os.environ.get("KZS_DEBUG"):
                traceback.print_exc()
            echo_error(
                prog,
                f"unexpected {type(exc).__name__}: {exc} (set KZS_DEBUG=1 for the traceback)",
                "internal",
            )
            raise typer.Exit(EXIT_FAILURE) from None

    return wrapper  # type: ignore[return-value]


class App(typer.Typer):
    """A Typer app whose commands turn library errors into clean messages and exit codes."""

    def __init__(self, *, prog: str, help: str, **kwargs: Any) -> None:
        kwargs.setdefault("no_args_is_help", True)
        kwargs.setdefault("add_completion", False)
        kwargs.setdefault("pretty_exceptions_enable", False)
        kwargs.setdefault("rich_markup_mode", None)
        super().__init__(help=help, **kwargs)
        self.prog = prog

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        register = super().command(*args, **kwargs)

        def decorator(func: F) -> F:
            register(_guard(self.prog, func))
            return func

        return decorator

    def add_version_option(self) -> None:
        """Add ``--version`` to the top-level command."""

        def show_version(value: bool) -> None:
            if value:
                typer.echo(f"{self.prog} {package_version()}")
                raise typer.Exit(EXIT_OK)

        @self.callback()
        def _root(
            version: bool = typer.Option(
                False,
                "--version",
                help="Show the version and exit.",
                callback=show_version,
                is_eager=True,
            ),
        ) -> None:
            pass

    def main(self, argv: list[str] | None = None) -> None:
        """Console-script entry point."""
        self(args=argv if argv is not None else sys.argv[1:], prog_name=self.prog)
