"""Helpers the tests share to walk the three CLIs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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

    def walk(cmd: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        # Typer vendors its own click: test for a group by its sub-commands.
        if getattr(cmd, "commands", None):
            for name, sub in sorted(cmd.commands.items()):
                yield from walk(sub, (*path, name))
        else:
            yield path

    paths = list(walk(typer.main.get_command(APPS[prog]), ()))
    assert paths and () not in paths, f"{prog}: no sub-commands found"
    yield from paths
