"""Benchmark: the register at national scale: ingest, combine and report look-ups over HTTP.

Issue 8's targets, with ``entities`` entities and the preliminary-index batches of the 3
bodies that score them (TAX: 4 indexes, sealed to the register as in production;
LEGAL_STATS and CIVIL_STATUS: 2 each, so 8 rows per entity):

* a full ``combine`` at most 5x the time pyarrow takes to read the same batches' Parquet
  files (``combine_vs_read``);
* report look-ups (``GET /entities/{id}/report``: build, sign, log the check) over HTTP on
  127.0.0.1 with ``clients`` concurrent keep-alive clients: p99 under 20 ms. The server is
  ``registry-combiner serve --workers N`` with one worker per core (``workers``, default
  the machine's cores, as the README advises); one worker is measured too, for comparison
  (figures ending ``_1_worker``);
* para 34's one-hour limit for a report beaten by five orders of magnitude
  (``orders_below_one_hour`` = log10(3600 s / p99)).

Set-up (not timed): a real round from ``nce-lab demo`` (keys, trust root, the lab's signed
release bundles, ~40 s; or ``round_dir``: an existing demo output), a synthetic economy of
``entities`` entities for the direct feeds the combiners use, the bodies' batches written
with :class:`~sample_protocol.batch.BatchWriter` (probabilities drawn from a Beta
distribution, values and categories from each body bundle's scale and cut-offs; the models
are not run), and a synthetic ``TAX_LISTS`` feed. Timed: ``ingest`` of the 3 batches (full
verification, one transaction each), ``ingest-feed`` of the feeds, ``combine``, the
pyarrow read of the batches' plain Parquet files (best of 3), and the look-ups against
``registry-combiner serve`` in its own process, with a lean asyncio HTTP/1.1 client here
(warm-up first; also one client alone for the unloaded latency).

Run as a script (``python benchmarks/bench_register.py [ENTITIES [ROUND_DIR]]``) or call
:func:`run`. Only the look-ups, against a copy of an existing register (its database is
copied first, so the original is never written)::

    python benchmarks/bench_register.py --lookups-only STATE_DIR --key register.key \
        [--workers N] [--threads N] [--clients N] [--lookups N]

The server's CPU time per report (``server_cpu_ms_per_report``, from ``/proc``) is also
given: on a machine shared with other work it moves much less than the latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import random
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
BODIES = {"TAX": "tax-body", "LEGAL_STATS": "legal-stats-body", "CIVIL_STATUS": "civil-status-body"}
REGISTER = "register"
_LIST_RATES = {
    "bankrupt": 0.004, "pseudo_enterprise": 0.006, "invalid_registration": 0.003,
    "inactive": 0.03, "absent_at_address": 0.02, "illegal_reorganisation": 0.001,
    "tax_debtor": 0.05,
}  # fmt: skip


def _demo(work: Path, seed: int) -> Path:
    out = work / "round"
    subprocess.run(
        [sys.executable, "-c", "from nce_model_lab.cli import main; main()", "demo", "--out",
         str(out), "--entities", "2000", "--seed", str(seed)],
        check=True, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    return out


def _bundles(round_dir: Path) -> tuple[str, dict[str, Path]]:
    releases = sorted((round_dir / "releases").iterdir())
    release = releases[-1]
    return release.name, {p.name: p for p in release.iterdir() if p.is_dir()}


def _write_batches(
    work: Path, round_dir: Path, bins: pa.Array, seed: int
) -> tuple[dict[str, Path], dict[str, Path], int]:
    """Each body's batch (TAX sealed) and a plain Parquet copy of each data file."""
    from sample_protocol.batch import BATCH_SCHEMA, BatchWriter
    from sample_protocol.envelope import open_file
    from sample_protocol.keys import load_public_key, load_secret_key
    from sample_protocol.records_release import ReleaseManifest
    from sample_protocol.scores import ScoreScale, categorise, to_values

    release_id, bundles = _bundles(round_dir)
    keys = round_dir / "keys"
    register_pub = load_public_key(keys / f"{REGISTER}.pub")
    register_key = load_secret_key(keys / f"{REGISTER}.key")
    rng = np.random.default_rng(seed)
    n = len(bins)
    as_of = dt.date.today()
    batches: dict[str, Path] = {}
    plain: dict[str, Path] = {}
    rows = 0
    for source, party in BODIES.items():
        manifest = ReleaseManifest.from_json((bundles[source] / "manifest.json").read_bytes())
        indexes = [m.index for m in manifest.models if m.source == source]
        body_key = load_secret_key(keys / f"{party}.key")
        out = work / "batches" / source
        seal = register_pub if source == "TAX" else None
        with BatchWriter(out, body_key=body_key, source=source, release_id=release_id,
                         as_of=as_of, seal_to=seal) as writer:  # fmt: skip
            for index in indexes:
                p = np.round(np.clip(rng.beta(1.2, 14.0, n), 0.0001, 0.9999), 4)
                scale = ScoreScale.from_json(manifest.training[f"scale:{index}"])
                table = pa.table(
                    {
                        "bin": bins,
                        "source": pa.array(np.full(n, source)),
                        "index": pa.array(np.full(n, index)),
                        "value": pa.array(to_values(p, scale).astype(np.int8)),
                        "category": pa.array(categorise(p, manifest.cutoffs_for(index))),
                        "probability": pa.array(p),
                        "release_id": pa.array(np.full(n, release_id)),
                        "as_of": pa.array(np.full(n, as_of), pa.date32()),
                    }
                ).cast(BATCH_SCHEMA)
                writer.write(table)
                rows += n
        batches[source] = out
        data = out / "batch.parquet"
        if seal is not None:
            data = work / "plain" / f"{source}.parquet"
            data.parent.mkdir(parents=True, exist_ok=True)
            open_file(out / "batch.parquet.kzse", data, recipient=register_key,
                      senders=body_key.public)  # fmt: skip
        plain[source] = data
    return batches, plain, rows


def _write_feeds(
    work: Path, economy: Any, sources: list[str], bins: pa.Array, seed: int
) -> dict[str, Path]:
    from registry_combiner.feeds import LISTS
    from registry_combiner.store import LISTS_SOURCE

    feeds: dict[str, Path] = {}
    (work / "feeds").mkdir(parents=True, exist_ok=True)
    for source in sources:
        path = work / "feeds" / f"{source}.parquet"
        pq.write_table(economy.source(source), path)
        feeds[source] = path
    rng = np.random.default_rng(seed + 1)
    lists = {
        "bin": bins,
        **{name: pa.array(rng.random(len(bins)) < _LIST_RATES[name]) for name in LISTS},
    }
    path = work / "feeds" / f"{LISTS_SOURCE}.parquet"
    pq.write_table(pa.table(lists), path)
    feeds[LISTS_SOURCE] = path
    return feeds


def _read_seconds(files: list[Path], repeat: int = 3) -> float:
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for f in files:
            pq.read_table(f)
        best = min(best, time.perf_counter() - t0)
    return best


# -- HTTP look-ups ---------------------------------------------------------------------------


async def _client(
    port: int, paths: list[str], token: str, out: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for path in paths:
            request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       f"Authorization: Bearer {token}\r\n\r\n").encode()  # fmt: skip
            t0 = time.perf_counter()
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            out.append(time.perf_counter() - t0)
            status = int(head.split(b" ", 2)[1])
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


async def _load(
    port: int, token: str, bins: list[str], clients: int, per_client: int, seed: int
) -> tuple[list[float], list[int], float]:
    rng = random.Random(seed)
    lat: list[float] = []
    errors: list[int] = []
    plans = [
        [f"/entities/{rng.choice(bins)}/report" for _ in range(per_client)] for _ in range(clients)
    ]
    t0 = time.perf_counter()
    await asyncio.gather(*(_client(port, p, token, lat, errors) for p in plans))
    return lat, errors, time.perf_counter() - t0


#: Figures of the one-worker run kept beside those of the main run.
_COMPARED = ("report_p50_ms", "report_p99_ms", "reports_per_second", "server_cpu_ms_per_report")


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q) * 1000)


def _wait_healthy(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"registry-combiner serve did not start:\n{tail}")
        time.sleep(0.2)


def _cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) of process ``pid`` and its children, from ``/proc``."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        total = 0.0
        for p in [pid, *map(int, children)]:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return total


def _lookups(
    work: Path, key: Path, bins: list[str], clients: int, lookups: int, seed: int,
    workers: int, threads: int,
) -> dict[str, Any]:  # fmt: skip
    from registry_combiner.tokens import add_user

    tokens = work / "tokens.json"
    token, _ = add_user(tokens, "bench", replace_existing=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = work / "serve.log"
    with open(log, "wb") as log_fh:
        server = subprocess.Popen(
            [sys.executable, "-c", "from registry_combiner.cli import main; main()", "serve",
             "--state", str(work / "state"), "--key", str(key), "--tokens", str(tokens),
             "--port", str(port), "--workers", str(workers), "--threads", str(threads),
             "--no-access-log"],
            cwd=ROOT, stdout=log_fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_healthy(port, server, log)
        asyncio.run(_load(port, token, bins, clients, 10, seed))  # warm-up: threads, caches
        single, err1, _ = asyncio.run(_load(port, token, bins, 1, 300, seed + 1))
        cpu0 = _cpu_seconds(server.pid)
        lat, errors, seconds = asyncio.run(
            _load(port, token, bins, clients, max(1, lookups // clients), seed + 2)
        )
        cpu1 = _cpu_seconds(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
    p99 = _pct(lat, 99)
    cpu = None if cpu0 is None or cpu1 is None else round((cpu1 - cpu0) / len(lat) * 1000, 3)
    return {
        "server_cpu_ms_per_report": cpu,
        "report_p50_ms": round(_pct(lat, 50), 2),
        "report_p99_ms": round(p99, 2),
        "reports_per_second": round(len(lat) / seconds, 1),
        "report_single_client_p50_ms": round(_pct(single, 50), 2),
        "report_single_client_p99_ms": round(_pct(single, 99), 2),
        "lookups": len(lat),
        "lookup_errors": len(errors) + len(err1),
        "orders_below_one_hour": round(math.log10(3600.0 / (p99 / 1000.0)), 2),
    }


def run(
    entities: int = 2_000_000,
    bodies: int = 3,
    clients: int = 32,
    lookups: int = 6_400,
    seed: int = 7,
    workers: int | None = None,
    threads: int = 8,
    round_dir: str | None = None,
    work_dir: str | None = None,
) -> dict[str, Any]:
    """Build, ingest, combine and serve ``entities`` entities; return the figures."""
    workers = workers or os.cpu_count() or 1
    from registry_combiner.combine import combine
    from registry_combiner.feeds import ingest_feed
    from registry_combiner.ingest import ingest_batch, verify_release
    from registry_combiner.store_sqlite import SqliteStore
    from sample_protocol.catalogue import Catalogue, Mode
    from sample_protocol.keys import load_public_key, load_secret_key
    from sample_protocol.synthetic import generate_economy
    from sample_protocol.trust import load_trust_root

    if bodies != len(BODIES):
        raise ValueError(f"bodies: the demo round has {len(BODIES)} preliminary bodies")
    tmp = tempfile.TemporaryDirectory(prefix="bench-register-", dir=work_dir)
    work = Path(tmp.name)
    try:
        t0 = time.perf_counter()
        rdir = Path(round_dir) if round_dir else _demo(work, seed)
        _, bundles = _bundles(rdir)
        cat = Catalogue.default()
        direct = [s for s in cat.source_codes() if cat.mode(s) is Mode.DIRECT]
        economy = generate_economy(entities, seed, direct)
        bins = pc.unique(economy.truth["bin"])
        batches, plain, rows = _write_batches(work, rdir, bins, seed)
        feeds = _write_feeds(work, economy, direct, bins, seed)
        del economy
        setup = time.perf_counter() - t0

        keys = rdir / "keys"
        trust = load_trust_root(
            rdir / "trust.json", root_public=load_public_key(keys / "nce-root.pub")
        )
        state = work / "state"
        state.mkdir()
        store = SqliteStore(state / "register.sqlite")
        verify_release(bundles["REGISTER"], store=store, trust=trust, state_dir=state)
        register_key = load_secret_key(keys / f"{REGISTER}.key")
        t0 = time.perf_counter()
        for path in batches.values():
            ingest_batch(path, store=store, trust=trust, recipient=register_key)
        ingest = time.perf_counter() - t0
        t0 = time.perf_counter()
        for source, path in feeds.items():
            ingest_feed(store, source, path)
        feed_ingest = time.perf_counter() - t0
        done = combine(store, bundles["REGISTER"], trust=trust, state_dir=state)
        combine_s = done.seconds
        store.close()
        read = _read_seconds(list(plain.values()))
        sample = [
            str(b) for b in random.Random(seed).sample(bins.to_pylist(), min(20_000, len(bins)))
        ]
        http = _lookups(
            work, keys / f"{REGISTER}.key", sample, clients, lookups, seed, workers, threads
        )
        if workers != 1:
            one = _lookups(
                work, keys / f"{REGISTER}.key", sample, clients, lookups, seed, 1, threads
            )
            http.update({f"{k}_1_worker": one[k] for k in _COMPARED})
        batch_mb = sum(p.stat().st_size for p in plain.values()) / 1e6
        db_mb = sum(p.stat().st_size for p in state.glob("register.sqlite*")) / 1e6
    finally:
        tmp.cleanup()
    return {
        "entities": len(bins),
        "batch_rows": rows,
        "batch_mb": round(batch_mb, 1),
        "database_mb": round(db_mb, 1),
        "setup_seconds": round(setup, 1),
        "ingest_seconds": round(ingest, 2),
        "ingest_rows_per_second": round(rows / ingest),
        "feed_ingest_seconds": round(feed_ingest, 2),
        "combine_seconds": round(combine_s, 2),
        "pyarrow_read_seconds": round(read, 3),
        "combine_vs_read": round(combine_s / read, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "clients": clients,
        "server_workers": workers,
        "server_threads": threads,
        **http,
    }


def run_lookups(
    state: str | Path,
    key: str | Path,
    *,
    clients: int = 32,
    lookups: int = 6_400,
    seed: int = 7,
    workers: int | None = None,
    threads: int = 8,
    work_dir: str | None = None,
) -> dict[str, Any]:
    """Only the HTTP look-ups, against a copy of the register in ``state`` (a state
    directory or its ``register.sqlite``), signed with ``key`` (``workers``: default one
    per core)."""
    workers = workers or os.cpu_count() or 1
    src = Path(state)
    if src.is_dir():
        src = src / "register.sqlite"
    with tempfile.TemporaryDirectory(prefix="bench-lookups-", dir=work_dir) as tmp:
        work = Path(tmp)
        (work / "state").mkdir()
        dest = work / "state" / "register.sqlite"
        if Path(f"{src}-wal").exists():  # in use: SQLite's online backup, a consistent copy
            source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
            with contextlib.closing(source), contextlib.closing(sqlite3.connect(dest)) as copy:
                source.backup(copy)
        else:  # closed: copy the file (opening it, even read only, adds files beside it)
            shutil.copyfile(src, dest)
        with contextlib.closing(sqlite3.connect(dest)) as copy:
            bins = [r[0] for r in copy.execute("SELECT bin FROM entities")]
        sample = random.Random(seed).sample(bins, min(20_000, len(bins)))
        http = _lookups(work, Path(key).resolve(), sample, clients, lookups, seed, workers, threads)
    return {
        "entities": len(bins),
        "clients": clients,
        "server_workers": workers,
        "server_threads": threads,
        **http,
    }


def _main(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("entities", nargs="?", type=int, default=2_000_000)
    parser.add_argument("round_dir", nargs="?", default=None)
    parser.add_argument("--lookups-only", metavar="STATE", help="only the look-ups, on a copy")
    parser.add_argument("--key", help="the register's secret key (with --lookups-only)")
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--lookups", type=int, default=6_400)
    args = parser.parse_args(argv)
    common = {"clients": args.clients, "lookups": args.lookups, "workers": args.workers,
              "threads": args.threads}  # fmt: skip
    if args.lookups_only:
        if not args.key:
            parser.error("--lookups-only needs --key")
        return run_lookups(args.lookups_only, args.key, **common)
    return run(entities=args.entities, round_dir=args.round_dir, **common)


if __name__ == "__main__":
    print(json.dumps(_main(sys.argv[1:]), indent=2))
