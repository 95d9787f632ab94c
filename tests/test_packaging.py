"""The package boundaries of DESIGN.md section 2, checked two ways.

Statically: no role package imports another, and ``sample_protocol`` imports no role
package. Dynamically: importing the agency runtime (and its CLI) in a fresh interpreter
loads no pandas, scikit-learn, skl2onnx, matplotlib or other role package.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROLE_PACKAGES = ("nce_model_lab", "agency_runtime", "registry_combiner")
HEAVY = ("pandas", "sklearn", "skl2onnx", "matplotlib", "scipy")


def imported_top_levels(package: str) -> dict[str, set[str]]:
    """Map each top-level module name imported anywhere in ``package`` to the files."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize("package", ROLE_PACKAGES)
def test_role_packages_do_not_import_each_other(package: str) -> None:
    imports = imported_top_levels(package)
    others = [p for p in ROLE_PACKAGES if p != package]
    offending = {p: sorted(imports[p]) for p in others if p in imports}
    assert offending == {}, f"{package} imports another role package: {offending}"


def test_sample_protocol_imports_no_role_package_and_nothing_heavy() -> None:
    imports = imported_top_levels("sample_protocol")
    offending = {p: sorted(imports[p]) for p in (*ROLE_PACKAGES, *HEAVY) if p in imports}
    assert offending == {}


def test_agency_runtime_source_imports_nothing_heavy() -> None:
    imports = imported_top_levels("agency_runtime")
    offending = {p: sorted(imports[p]) for p in HEAVY if p in imports}
    assert offending == {}


def _modules_after_import(*modules: str) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for m in {list(modules)!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT
    )
    return set(json.loads(out.stdout))


def test_importing_the_agency_runtime_loads_nothing_heavy() -> None:
    loaded = _modules_after_import("agency_runtime", "agency_runtime.cli")
    top = {m.split(".")[0] for m in loaded}
    forbidden = (set(HEAVY) | {"nce_model_lab", "registry_combiner"}) & top
    assert forbidden == set(), f"agency_runtime pulled in {sorted(forbidden)}"
    assert "sample_protocol" in top  # the check itself is live


def test_importing_sample_protocol_loads_no_role_package() -> None:
    top = {m.split(".")[0] for m in _modules_after_import("sample_protocol")}
    assert not ({*ROLE_PACKAGES, *HEAVY} & top)
