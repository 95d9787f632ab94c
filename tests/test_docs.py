"""The README and docs cover every command, and the README's examples run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_tools import APPS, command_paths

ROOT = Path(__file__).resolve().parents[1]


def documentation() -> str:
    parts = [(ROOT / "README.md").read_text(encoding="utf-8")]
    parts += [p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md"))]
    return "\n".join(parts)


@pytest.mark.parametrize(
    "command",
    [f"{prog} {' '.join(path)}" for prog in APPS for path in command_paths(prog)],
)
def test_every_command_is_documented(command):
    assert command in documentation(), f"`{command}` is not in README.md or docs/"


def console_blocks(text: str) -> list[list[str]]:
    """The ```console blocks of a Markdown text: each a list of '$ ' command lines."""
    blocks = re.findall(r"```console\n(.*?)```", text, flags=re.S)
    return [[line[2:] for line in block.splitlines() if line.startswith("$ ")] for block in blocks]


def test_readme_console_examples_run(tmp_path):
    """Run every ```console block of the README, in order, in one scratch directory."""
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    blocks = console_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert blocks, "the README has no runnable examples"
    for block in blocks:
        for command in block:
            result = subprocess.run(
                ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True
            )
            assert result.returncode == 0, f"README example failed: {command}\n{result.stderr}"


def test_cli_reference_is_current():
    """docs/cli.md is what `python tools/cli_reference.py` writes today."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import cli_reference
    finally:
        sys.path.pop(0)
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == cli_reference.render(), "run `python tools/cli_reference.py`"


def test_formats_page_lists_every_field_of_every_record():
    """docs/formats.md is what another implementation follows: no record field missing."""
    import dataclasses

    from sample_protocol import audit, envelope, keys, records, scores, trust

    text = (ROOT / "docs" / "formats.md").read_text(encoding="utf-8")
    recs = [
        records.SampleRequest, records.SourceRequest, records.RandomIdList,
        records.SampleManifest, records.DepersonalisationReport, records.ReleaseManifest,
        records.ModelEntry, records.CategoryCutoffs, records.BatchManifest, trust.TrustRoot,
        trust.Party, audit.AuditEntry, keys.PublicKey, envelope.EnvelopeHeader,
        scores.ScoreScale,
    ]  # fmt: skip
    for rec in recs:
        assert f"`{rec.__name__}`" in text, rec.__name__
        for f in dataclasses.fields(rec):
            assert f"`{f.name}`" in text, f"{rec.__name__}.{f.name} is not in docs/formats.md"
    for column in records.BATCH_COLUMNS:
        assert f"`{column}`" in text
