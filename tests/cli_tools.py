"""Helpers the tests share to walk the three CLIs."""

from __future__ import annotations

from collections.abc import Iterator

import click
import typer

from agency_runtime.cli import app as agency_app
from nce_model_lab.cli import app as lab_app
from registry_combiner.cli import app as registry_app

APPS: dict[str, typer.Typer] = {
    "nce-lab": lab_app,
    "agency-runtime": agency_app,
    "registry-combiner": registry_app,
}


def command_paths(prog: str) -> Iterator[tuple[str, ...]]:
    """Yield every leaf command of ``prog`` as a tuple of words, e.g. ('keys', 'new')."""

    def walk(cmd: click.Command, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        if isinstance(cmd, click.Group):
            for name, sub in sorted(cmd.commands.items()):
                yield from walk(sub, (*path, name))
        else:
            yield path

    yield from walk(typer.main.get_command(APPS[prog]), ())
