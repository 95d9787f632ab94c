"""The notebooks run, on a small economy, so that they never rot; and they are committed
exactly as ``tools/make_notebooks.py`` writes them (without outputs)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _tool():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import make_notebooks
    finally:
        sys.path.pop(0)
    return make_notebooks


def test_there_is_one_notebook_per_user():
    assert len(NOTEBOOKS) >= 1
    assert {p.name for p in NOTEBOOKS} == set(_tool().NOTEBOOK_CELLS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs_and_current(path):
    assert path.read_text(encoding="utf-8") == _tool().render(path.name), (
        "run `python tools/make_notebooks.py`"
    )
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """One small round played by ``nce-lab demo``, copied by the notebooks that need one."""
    from nce_model_lab.demo import run_demo

    out = tmp_path_factory.mktemp("nb") / "demo"
    run_demo(out, entities=2_000, seed=7)
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, monkeypatch, request):
    monkeypatch.setenv("KZS_NB_ENTITIES", "3000")
    monkeypatch.setenv("KZS_NB_WORKDIR", str(tmp_path / "work"))
    if "KZS_NB_DEMO_DIR" in path.read_text(encoding="utf-8"):
        monkeypatch.setenv("KZS_NB_DEMO_DIR", str(request.getfixturevalue("demo_dir")))
    bindir = Path(sys.executable).parent
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, when one fails
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "Traceback" not in text
