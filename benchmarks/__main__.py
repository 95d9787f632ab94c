"""Run every benchmark and record its figures: ``python -m benchmarks [NAME ...]``.

Writes ``benchmarks/results.json`` (figure, value, unit, target, met, machine, date) and
``docs/benchmarks.md``. Speed is only ever measured here, never in a test. Each benchmark
module exposes ``run(**params) -> dict`` and is listed in ``BENCHMARKS`` with its targets.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.json"
DOC = ROOT / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Target:
    figure: str
    unit: str
    text: str
    met: Callable[[Any], bool]


@dataclass(frozen=True)
class Benchmark:
    name: str
    module: str
    issue: str
    params: dict[str, Any] = field(default_factory=dict)
    targets: tuple[Target, ...] = ()
    units: dict[str, str] = field(default_factory=dict)


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        name="synthetic",
        module="benchmarks.bench_synthetic",
        issue="#4 synthetic economy",
        params={"entities": 2_000_000},
        targets=(
            Target("total_seconds", "s", "< 120 s for 2,000,000 entities", lambda v: v < 120),
            Target("peak_rss_mb", "MB", "< 8,192 MB", lambda v: v < 8192),
        ),
        units={
            "generate_seconds": "s",
            "write_seconds": "s",
            "entities_per_second": "entities/s",
            "output_mb": "MB",
            "rows_written": "rows",
            "entities": "entities",
        },
    ),
)


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def run_one(bench: Benchmark) -> dict[str, Any]:
    module = importlib.import_module(bench.module)
    print(f"[bench] {bench.name}: running {bench.module} {bench.params}", flush=True)
    started = dt.datetime.now(dt.UTC)
    raw = module.run(**bench.params)
    figures = []
    for target in bench.targets:
        value = raw[target.figure]
        figures.append(
            {
                "figure": target.figure,
                "value": value,
                "unit": target.unit,
                "target": target.text,
                "met": bool(target.met(value)),
            }
        )
    for name, unit in bench.units.items():
        if name in raw:
            figures.append({"figure": name, "value": raw[name], "unit": unit, "target": None})
    extra = {k: v for k, v in raw.items() if k not in {f["figure"] for f in figures}}
    return {
        "issue": bench.issue,
        "params": bench.params,
        "started": started.isoformat(timespec="seconds"),
        "figures": figures,
        "details": extra,
    }


def write_doc(results: dict[str, Any]) -> None:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m benchmarks`); the same figures are in",
        "`benchmarks/results.json`. Every figure was measured on the machine below; targets come",
        "from the issues. Tests never assert speed.",
        "",
        f"Machine: {results['machine']['cpus']} CPUs, {results['machine']['platform']}, "
        f"Python {results['machine']['python']}. Date: {results['date']}.",
        "",
    ]
    for name, bench in results["benchmarks"].items():
        lines += [f"## {name} ({bench['issue']})", "", f"Parameters: `{bench['params']}`", ""]
        lines += ["| figure | value | unit | target | met |", "|---|---|---|---|---|"]
        for f in bench["figures"]:
            met = "" if f.get("target") is None else ("yes" if f["met"] else "**no**")
            lines.append(
                f"| {f['figure']} | {f['value']} | {f['unit']} | {f.get('target') or ''} | {met} |"
            )
        lines.append("")
    DOC.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    args = parser.parse_args(argv)
    chosen = [b for b in BENCHMARKS if not args.names or b.name in args.names]
    unknown = set(args.names) - {b.name for b in BENCHMARKS}
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"benchmarks": {}}
    results = {
        "machine": machine(),
        "date": dt.date.today().isoformat(),
        "benchmarks": dict(previous.get("benchmarks", {})),
    }
    for bench in chosen:
        results["benchmarks"][bench.name] = run_one(bench)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    write_doc(results)
    missed = [
        f"{name}.{f['figure']}"
        for name, b in results["benchmarks"].items()
        for f in b["figures"]
        if f.get("target") and not f["met"]
    ]
    print(f"[bench] wrote {RESULTS.relative_to(ROOT)} and {DOC.relative_to(ROOT)}")
    if missed:
        print(f"[bench] targets missed: {', '.join(missed)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
