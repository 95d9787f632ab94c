"""A state body installs nothing but ``kz-federated-scoring[agency]``, and it is enough.

A fresh virtual environment gets the project with its ``agency`` extra only (from PyPI:
numpy, pyarrow, pynacl, typer, holidays, onnx, onnxruntime); pandas, scikit-learn and
skl2onnx must be absent, and the installed ``agency-runtime`` must verify the lab's release
and score the tax body's population. It takes a minute or two (a venv and a pip install)
and runs in the default suite, so CI checks it on every change.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sample_protocol.batch import open_batch

from .release_fixtures import N_ENTITIES, ReleaseWorld, release_world
from .round_fixtures import TAX_BODY

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sample_protocol", "nce_model_lab", "agency_runtime", "registry_combiner")

def _source_copy(dest: Path) -> Path:
    """The project's source tree without build or cache debris (pip builds inside it)."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, dest / package, ignore=ignore)
    return dest


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=1200
    )


def test_the_agency_extra_alone_verifies_and_scores(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    rw: ReleaseWorld = release_world(tmp_path_factory)
    src = _source_copy(tmp_path / "src")
    venv = tmp_path / "venv"
    made = _run(sys.executable, "-m", "venv", venv)
    assert made.returncode == 0, made.stderr
    python, tool = venv / "bin" / "python", venv / "bin" / "agency-runtime"
    installed = _run(python, "-m", "pip", "install", "--quiet", f"{src}[agency]")
    assert installed.returncode == 0, installed.stderr[-3000:]

    probe = _run(
        python,
        "-c",
        "import importlib.util, json; print(json.dumps({m: importlib.util.find_spec(m) is not "
        "None for m in ['onnxruntime', 'pyarrow', 'nacl', 'pandas', 'sklearn', 'skl2onnx', "
        "'matplotlib', 'scipy']}))",
    )
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout) == {
        "onnxruntime": True, "pyarrow": True, "nacl": True, "pandas": False,
        "sklearn": False, "skl2onnx": False, "matplotlib": False, "scipy": False,
    }  # fmt: skip

    state = tmp_path / "state"
    common = [*rw.trust_args(), "--key", str(rw.world.key(TAX_BODY)), "--state", str(state)]
    verified = _run(tool, "verify", rw.bundle("TAX"), *common, cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("VERIFIED")
    out = tmp_path / "batch"
    scored = _run(
        tool, "score", rw.bundle("TAX"), rw.world.extract("TAX"), "--source", "TAX",
        *common, "--out", out, "--json", cwd=tmp_path,
    )  # fmt: skip
    assert scored.returncode == 0, scored.stdout + scored.stderr
    assert json.loads(scored.stdout)["entities"] == N_ENTITIES
    assert open_batch(out, trust=rw.world.trust_root).manifest.body == TAX_BODY
