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
    Benchmark(
        name="train",
        module="benchmarks.bench_train",
        issue="#6 modelling lab",
        params={"entities": 100_000},
        targets=(
            Target(
                "train_release_seconds",
                "s",
                "< 600 s: train + release, 100,000 entities, all sources",
                lambda v: v < 600,
            ),
            Target(
                "training_overhead_ratio",
                "x",
                "<= 1.5 x fitting the same scikit-learn models directly (wall clock)",
                lambda v: v <= 1.5,
            ),
            Target(
                "max_pooled_minus_federated_auc",
                "AUC",
                "<= 0.01: federated within 0.01 of pooled, every index",
                lambda v: v <= 0.01,
            ),
            Target(
                "max_oracle_minus_federated_auc",
                "AUC",
                "<= 0.03: federated within 0.03 of the oracle, every index",
                lambda v: v <= 0.03,
            ),
            Target("max_combiner_ece", "", "<= 0.02, every index", lambda v: v <= 0.02),
        ),
        units={
            "training_overhead_cpu_ratio": "x",
            "final_fit_ratio": "x",
            "training_seconds": "s",
            "direct_fit_seconds": "s",
            "train_release_cpu_seconds": "s",
            "release_seconds": "s",
            "price_of_privacy_seconds": "s",
            "peak_rss_mb": "MB",
            "load_average_1min_at_end": "",
        },
    ),
    Benchmark(
        name="train_table",
        module="benchmarks.bench_train_table",
        issue="#6 modelling lab: train-table vs a tuned HGB",
        params={"entities": 30_000},
        targets=(
            Target(
                "credit_auc_difference",
                "AUC",
                ">= -0.005: as good as a tuned HGB (nested 5-fold CV)",
                lambda v: v >= -0.005,
            ),
        ),
        units={
            "credit_train_table_cv_auc": "AUC",
            "credit_baseline_cv_auc": "AUC",
            "breast_cancer_train_table_cv_auc": "AUC",
            "breast_cancer_baseline_cv_auc": "AUC",
            "breast_cancer_auc_difference": "AUC",
        },
    ),
    Benchmark(
        name="score",
        module="benchmarks.bench_score",
        issue="#7 agency-runtime score",
        params={"rows": 1_000_000},
        targets=(
            Target("score_vs_onnxruntime", "x", ">= 0.8 x bare onnxruntime", lambda v: v >= 0.8),
            Target(
                "score_vs_sklearn", "x", ">= 1 x scikit-learn predict_proba", lambda v: v >= 1.0
            ),
            Target(
                "peak_rss_ratio_4x",
                "x",
                "peak memory for 4,000,000 rows <= 1.2 x that for 1,000,000",
                lambda v: v <= 1.2,
            ),
        ),
        units={
            "score_rows_per_second": "rows/s",
            "onnxruntime_rows_per_second": "rows/s",
            "sklearn_rows_per_second": "rows/s",
            "peak_rss_mb": "MB",
            "peak_rss_4x_mb": "MB",
            "score_seconds": "s",
            "score_import_seconds": "s",
            "onnxruntime_seconds": "s",
            "sklearn_seconds": "s",
        },
    ),
    Benchmark(
        name="register",
        module="benchmarks.bench_register",
        issue="#8 register: ingest, combine, report look-ups",
        params={"entities": 2_000_000, "bodies": 3, "clients": 32},
        targets=(
            Target(
                "combine_vs_read",
                "x",
                "combine <= 5x pyarrow's read of the same batches",
                lambda v: v <= 5,
            ),
            Target(
                "report_p99_ms",
                "ms",
                "< 20 ms, 32 concurrent clients on 127.0.0.1",
                lambda v: v < 20,
            ),
            Target(
                "orders_below_one_hour",
                "orders of magnitude",
                ">= 5 below para 34's one hour",
                lambda v: v >= 5,
            ),
        ),
        units={
            "ingest_seconds": "s",
            "ingest_rows_per_second": "rows/s",
            "feed_ingest_seconds": "s",
            "combine_seconds": "s",
            "pyarrow_read_seconds": "s",
            "report_p50_ms": "ms",
            "reports_per_second": "req/s",
            "report_single_client_p50_ms": "ms",
            "report_single_client_p99_ms": "ms",
            "server_cpu_ms_per_report": "ms",
            "report_p50_ms_1_worker": "ms",
            "report_p99_ms_1_worker": "ms",
            "reports_per_second_1_worker": "req/s",
            "server_cpu_ms_per_report_1_worker": "ms",
            "peak_rss_mb": "MB",
            "database_mb": "MB",
            "batch_rows": "rows",
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
    return summarise(bench, module.run(**bench.params), started)


def summarise(bench: Benchmark, raw: dict[str, Any], started: dt.datetime) -> dict[str, Any]:
    """Figures against targets, from what a benchmark's ``run()`` returned."""
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
    parser.add_argument(
        "--record",
        metavar="NAME=FILE",
        action="append",
        default=[],
        help="record the run() output of benchmark NAME saved as JSON in FILE (a long run "
        "made earlier on this machine, e.g. in the background) instead of running it",
    )
    args = parser.parse_args(argv)
    recorded: dict[str, Path] = {}
    for item in args.record:
        name, sep, file = item.partition("=")
        if not sep or not file:
            parser.error(f"--record: expected NAME=FILE, found {item!r}")
        recorded[name] = Path(file)
    names = list(args.names) + list(recorded)
    chosen = [b for b in BENCHMARKS if not names or b.name in names]
    unknown = set(names) - {b.name for b in BENCHMARKS}
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"benchmarks": {}}
    results = {
        "machine": machine(),
        "date": dt.date.today().isoformat(),
        "benchmarks": dict(previous.get("benchmarks", {})),
    }
    for bench in chosen:
        if bench.name in recorded:
            path = recorded[bench.name]
            raw = json.loads(path.read_text(encoding="utf-8"))
            started = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
            results["benchmarks"][bench.name] = summarise(bench, raw, started)
        else:
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
