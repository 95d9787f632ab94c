"""Benchmark: generate and write a national-scale synthetic economy.

The work runs in a fresh subprocess so that its peak memory (``ru_maxrss``) is its own.
Run as a script (``python benchmarks/bench_synthetic.py [ENTITIES]``) or call
:func:`run`. Targets (issue 4): 2,000,000 entities with every source in under 2 minutes
and under 8 GB on 2 cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from sample_protocol.synthetic import generate_economy, write_economy
n, seed, out = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
t0 = time.perf_counter()
economy = generate_economy(n, seed)
t1 = time.perf_counter()
write_economy(economy, out)
t2 = time.perf_counter()
size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
print(json.dumps({
    "generate_s": t1 - t0,
    "write_s": t2 - t1,
    "rows": sum(economy.summary.rows.values()) + economy.truth.num_rows,
    "output_bytes": size,
    "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "oracle_auc": economy.summary.oracle_auc,
    "outcome_rates": economy.summary.outcome_rates,
}))
"""


def run(entities: int = 2_000_000, seed: int = 1) -> dict[str, Any]:
    """Generate and write ``entities`` entities; return the figures (units in the names)."""
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        out = Path(tmp) / "economy"
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(entities), str(seed), str(out)],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    total = child["generate_s"] + child["write_s"]
    return {
        "entities": entities,
        "generate_seconds": round(child["generate_s"], 2),
        "write_seconds": round(child["write_s"], 2),
        "total_seconds": round(total, 2),
        "entities_per_second": round(entities / total),
        "rows_written": child["rows"],
        "output_mb": round(child["output_bytes"] / 2**20, 1),
        "peak_rss_mb": round(child["peak_rss_kb"] / 1024, 1),
        "oracle_auc": child["oracle_auc"],
        "outcome_rates": child["outcome_rates"],
    }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
    print(json.dumps(run(n), indent=2, sort_keys=True))
