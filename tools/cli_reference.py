"""Write docs/cli.md: the --help of every command of the three tools.

Run ``python tools/cli_reference.py`` after changing a command; ``tests/test_docs.py``
fails while docs/cli.md is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path

from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.cli_tools import APPS, command_paths  # noqa: E402

DOC = ROOT / "docs" / "cli.md"


def render() -> str:
    runner = CliRunner()
    parts = [
        "# Command reference",
        "",
        "Generated from the tools themselves by `python tools/cli_reference.py`; a test keeps",
        "it current. Every command also answers `--help`.",
        "",
    ]
    for prog, app in APPS.items():
        parts += [f"## {prog}", ""]
        for path in [(), *command_paths(prog)]:
            result = runner.invoke(app, [*path, "--help"], prog_name=prog, terminal_width=100)
            title = " ".join((prog, *path))
            parts += [f"### `{title}`" if path else f"### `{prog}` (overview)", "", "```text"]
            parts += [line.rstrip() for line in result.output.strip().splitlines()]
            parts += ["```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    DOC.write_text(render(), encoding="utf-8")
    print(f"wrote {DOC.relative_to(ROOT)}")
