"""``nce-lab demo``: play every party of one federated round on a synthetic economy.

Each step runs the real command-line tool of the party that does it (``nce-lab``,
``agency-runtime``, ``registry-combiner``) in its own process, exactly as an operator would,
so the demo exercises the same code paths as the CLIs and keeps the parties apart: the
lab never imports the agency runtime or the register.

What a round contains today: keys and the trust root; a synthetic economy; the signed
sample request; the tax body's random-ID lists; every body's depersonalised, sealed sample;
the lab's ingest and join; training and the signed release bundles; each preliminary
body's verification and scoring of its whole population (a batch sealed to the register);
the register's release check, ingest of the batches and of every direct feed, combining,
export and one signed report. At the end the demo process alone, standing in for the
simulator, reads the synthetic truth to measure the register's final probabilities.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sample_protocol.catalogue import Catalogue, Mode
from sample_protocol.synthetic import OUTCOMES_FILE, read_summary

from .errors import LabError
from .evaluate import auc as roc_auc

__all__ = ["DemoResult", "run_demo"]

ROOT_PARTY = "nce-root"
LAB_PARTY = "nce-lab"
TAX_PARTY = "tax-body"
REGISTER_PARTY = "register"


def body_party(code: str) -> str:
    """The demo's name for the body that owns source ``code``."""
    return TAX_PARTY if code == "TAX" else code.lower().replace("_", "-") + "-body"


@dataclass
class DemoResult:
    """What a demo run did and where it left its files."""

    out: Path
    entities: int
    seed: int
    sample_size: int
    request_id: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)
    coverage: dict[str, Any] = field(default_factory=dict)
    training_table: str = ""
    training_rows: int = 0
    training_columns: int = 0
    outcome_rates: dict[str, float] = field(default_factory=dict)
    oracle_auc: dict[str, float | None] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    release_id: str = ""
    bundles: list[str] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)
    direct_feeds: list[str] = field(default_factory=list)
    register_db: str = ""
    register_export: str = ""
    model_card: str = ""
    report: str = ""
    indexes: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "entities": self.entities,
            "seed": self.seed,
            "sample_size": self.sample_size,
            "request_id": self.request_id,
            "steps": self.steps,
            "coverage": self.coverage,
            "training_table": self.training_table,
            "training_rows": self.training_rows,
            "training_columns": self.training_columns,
            "outcome_rates": self.outcome_rates,
            "oracle_auc": self.oracle_auc,
            "models": self.models,
            "release_id": self.release_id,
            "bundles": self.bundles,
            "batches": self.batches,
            "direct_feeds": self.direct_feeds,
            "register_db": self.register_db,
            "register_export": self.register_export,
            "model_card": self.model_card,
            "report": self.report,
            "indexes": self.indexes,
            "seconds": round(self.seconds, 1),
        }


def _tool(name: str) -> str:
    """The console script ``name`` installed beside this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise LabError(
            f"the command {name!r} is not installed; run `make demo` or `pip install -e '.[all]'`",
            code="demo_missing_tool",
        )
    return found


class _Runner:
    def __init__(self, cwd: Path, say: Callable[[str], None], result: DemoResult) -> None:
        self.cwd = cwd
        self.say = say
        self.result = result

    def __call__(self, party: str, step: str, argv: Sequence[str]) -> str:
        started = time.perf_counter()
        cmd = [_tool(argv[0]), *argv[1:]]
        proc = subprocess.run(cmd, cwd=self.cwd, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        shown = " ".join(argv)
        self.result.steps.append(
            {
                "party": party,
                "step": step,
                "command": shown,
                "exit": proc.returncode,
                "seconds": round(seconds, 2),
            }
        )
        if proc.returncode != 0:
            raise LabError(
                f"demo step '{step}' ({party}) failed with exit {proc.returncode}: {shown}\n"
                + (proc.stderr.strip() or proc.stdout.strip()),
                code="demo_step_failed",
            )
        self.say(f"[{party:>18}] {step} ({seconds:.1f} s)")
        return proc.stdout


def run_demo(
    out: str | os.PathLike[str] | None = None,
    *,
    entities: int = 50_000,
    seed: int = 1,
    sample_size: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run one round in ``out`` (a fresh temporary directory when ``None``)."""
    if entities < 1_000:
        raise LabError(
            f"--entities: expected at least 1,000, found {entities:,}", code="demo_bad_option"
        )
    size = sample_size or min(entities // 2, 20_000)
    if not 100 <= size <= entities:
        raise LabError(
            f"--sample-size: expected 100 to {entities:,}, found {size:,}", code="demo_bad_option"
        )
    if out is None:
        base = Path(tempfile.mkdtemp(prefix="kz-scoring-demo-"))
    else:
        base = Path(out)
        if base.exists() and any(base.iterdir()):
            raise LabError(
                f"{base}: the demo needs an empty or new directory", code="demo_out_not_empty"
            )
        base.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _m: None)
    started = time.perf_counter()
    result = DemoResult(out=base, entities=entities, seed=seed, sample_size=size)
    run = _Runner(base, say, result)

    catalogue = Catalogue.default()
    # The 13 sources of para 24; optional ones (CUSTOMS) are left to a real round.
    sources = [c for c in catalogue.source_codes() if not catalogue.source(c).optional]
    bodies = {code: body_party(code) for code in sources}
    keys = Path("keys")

    # 1. Keys: every party makes its own; the NCE also holds the root key.
    run(ROOT_PARTY, "root key", ["nce-lab", "keys", "new", ROOT_PARTY, "--out", str(keys)])
    run(LAB_PARTY, "lab key", ["nce-lab", "keys", "new", LAB_PARTY, "--out", str(keys)])
    for name in sorted(set(bodies.values())):
        run(name, "body key", ["agency-runtime", "keys", "new", name, "--out", str(keys)])
    run(
        REGISTER_PARTY,
        "register key",
        ["registry-combiner", "keys", "new", REGISTER_PARTY, "--out", str(keys)],
    )

    # 2. The trust root, signed by the NCE root key.
    parties = [f"lab:{keys}/{LAB_PARTY}.pub", f"register:{keys}/{REGISTER_PARTY}.pub"]
    owned: dict[str, list[str]] = {}
    for code, name in bodies.items():
        owned.setdefault(name, []).append(code)
    for name, codes in owned.items():
        role = "tax_body" if name == TAX_PARTY else "body"
        parties.append(f"{role}:{keys}/{name}.pub:{','.join(codes)}")
    trust_args = [
        "nce-lab",
        "trust",
        "init",
        "--root-key",
        f"{keys}/{ROOT_PARTY}.key",
        "--out",
        "trust.json",
    ]
    for p in parties:
        trust_args += ["--party", p]
    run(ROOT_PARTY, "trust root", trust_args)
    common = ["--trust", "trust.json", "--root-pub", f"{keys}/{ROOT_PARTY}.pub"]

    # 3. The synthetic economy stands in for the state bodies' data.
    run(
        "synthetic economy",
        f"{entities:,} entities",
        ["nce-lab", "synth", "--entities", str(entities), "--seed", str(seed), "--out", "economy"],
    )
    summary = read_summary(base / "economy")
    result.outcome_rates = dict(summary.outcome_rates)
    result.oracle_auc = dict(summary.oracle_auc)

    # 4. The lab's signed sample request.
    sent_on = summary.as_of + dt.timedelta(days=365)
    request_out = run(
        LAB_PARTY,
        "sample request",
        [
            "nce-lab",
            "sample",
            "request",
            "--key",
            f"{keys}/{LAB_PARTY}.key",
            *common,
            "--lab-dir",
            "lab",
            "--out",
            "outbox",
            "--size",
            str(size),
            "--as-of",
            summary.as_of.isoformat(),
            "--sent-on",
            sent_on.isoformat(),
            "--json",
        ],
    )
    request_id = json.loads(request_out)["request"]["request_id"]
    result.request_id = request_id
    request_file = f"outbox/{request_id}.json"

    # 5. The tax body draws the list and seals a copy to every body.
    run(
        TAX_PARTY,
        "random-ID lists",
        [
            "agency-runtime",
            "issue-list",
            request_file,
            *common,
            "--key",
            f"{keys}/{TAX_PARTY}.key",
            "--register",
            "economy/sources/TAX.parquet",
            "--state",
            "tax-body/state",
            "--out",
            "lists",
            "--quiet",
        ],
    )

    # 6. Every body prepares, checks, signs and seals its sample.
    samples = []
    for code, name in bodies.items():
        extra = ["--outcomes", f"economy/{OUTCOMES_FILE}"] if code == "TAX" else []
        run(
            name,
            f"{code} sample",
            [
                "agency-runtime",
                "prepare-sample",
                request_file,
                "--list",
                f"lists/{name}.ridlist",
                "--source",
                code,
                "--extract",
                f"economy/sources/{code}.parquet",
                *common,
                "--key",
                f"{keys}/{name}.key",
                "--state",
                f"{name}/state",
                "--out",
                "samples",
                "--quiet",
                *extra,
            ],
        )
        samples.append(f"samples/{request_id}.{code}.sample")

    # 7. The lab opens, checks and joins them.
    ingest_out = run(
        LAB_PARTY,
        "ingest and join",
        [
            "nce-lab",
            "sample",
            "ingest",
            *samples,
            "--key",
            f"{keys}/{LAB_PARTY}.key",
            *common,
            "--lab-dir",
            "lab",
            "--json",
        ],
    )
    ingested = json.loads(ingest_out)
    result.coverage = ingested.get("coverage") or {}
    training = base / "lab" / "rounds" / request_id / "training.parquet"
    meta = pq.read_metadata(training)
    result.training_table = str(training)
    result.training_rows = meta.num_rows
    result.training_columns = meta.num_columns
    run(
        LAB_PARTY,
        "status",
        ["nce-lab", "status", "--lab-dir", "lab", "--today", sent_on.isoformat()],
    )

    # 8. The lab trains one model per (source, index) and the combiners, then releases
    #    one signed bundle per body and one for the register.
    trained = json.loads(
        run(
            LAB_PARTY,
            "train",
            [
                "nce-lab",
                "train",
                "--lab-dir",
                "lab",
                "--request",
                request_id,
                "--seed",
                str(seed),
                "--json",
            ],
        )
    )
    result.models = _model_summary(trained)
    released = json.loads(
        run(
            LAB_PARTY,
            "release",
            [
                "nce-lab",
                "release",
                "--lab-dir",
                "lab",
                "--request",
                request_id,
                "--key",
                f"{keys}/{LAB_PARTY}.key",
                *common,
                "--out",
                "releases",
                "--json",
                # Below ~2,000 test rows the ECE's sampling noise alone can exceed the
                # quality gate: a small demo releases anyway, and the override is recorded.
                *(["--force", "demo on a small sample"] if size < 10_000 else []),
            ],
        )
    )
    result.release_id = released["release_id"]
    result.bundles = sorted(released["bundles"].values())

    # 9. Every preliminary body verifies its bundle and scores its whole population.
    as_of = summary.as_of.isoformat()
    register_pub = f"{keys}/{REGISTER_PARTY}.pub"
    for audience, bundle in sorted(released["bundles"].items()):
        if audience == "REGISTER":
            continue
        name = bodies.get(audience) or body_party(audience)
        state = ["--state", f"{name}/state"]
        key = ["--key", f"{keys}/{name}.key"]
        run(name, f"{audience} verify", ["agency-runtime", "verify", bundle, *state, *common, *key])
        batch = f"batches/{audience}"
        run(
            name,
            f"{audience} score",
            [
                "agency-runtime",
                "score",
                bundle,
                f"economy/sources/{audience}.parquet",
                "--source",
                audience,
                *key,
                *common,
                *state,
                "--seal-to",
                register_pub,
                "--as-of",
                as_of,
                "--out",
                batch,
                "--json",
                "-q",
            ],
        )
        result.batches.append(batch)

    # 10. The register checks its release, ingests the batches and the direct feeds,
    #     combines, exports and issues one signed report.
    _play_register(run, result, released["bundles"]["REGISTER"], catalogue, sources, as_of, common)
    result.indexes = _final_table(base, result)
    result.seconds = time.perf_counter() - started
    return result


def _play_register(
    run: _Runner,
    result: DemoResult,
    bundle: str,
    catalogue: Catalogue,
    sources: Sequence[str],
    as_of: str,
    common: Sequence[str],
) -> None:
    """The register's steps, each through ``registry-combiner``, all on ``register/``."""
    state = ["--state", "register"]
    key = ["--key", f"keys/{REGISTER_PARTY}.key"]
    run(
        REGISTER_PARTY,
        "verify release",
        ["registry-combiner", "verify-release", bundle, *state, *common],
    )
    run(
        REGISTER_PARTY,
        f"ingest {len(result.batches)} batches",
        ["registry-combiner", "ingest", *result.batches, *state, *common, *key],
    )
    for code in sources:
        if catalogue.mode(code) is not Mode.DIRECT:
            continue
        run(
            REGISTER_PARTY,
            f"{code} direct feed",
            [
                "registry-combiner",
                "ingest-feed",
                code,
                f"economy/sources/{code}.parquet",
                *state,
                "--as-of",
                as_of,
            ],
        )
        result.direct_feeds.append(code)
    run(
        REGISTER_PARTY,
        "combine",
        ["registry-combiner", "combine", "--release", bundle, *state, *common, "-q"],
    )
    export = "register/indexes.parquet"
    run(REGISTER_PARTY, "export", ["registry-combiner", "export", "--out", export, *state])
    base = run.cwd
    result.register_export = str(base / export)
    result.register_db = str(base / "register" / "register.sqlite")
    card = base / bundle / "model_card.html"
    result.model_card = str(card) if card.exists() else ""
    # One signed report, for the entity the register rates riskiest on the first index.
    table = pq.read_table(base / export, columns=["bin", "index", "probability"])
    first = table.filter(pc.equal(table["index"], table["index"][0]))
    riskiest = str(first["bin"][int(np.argmax(first["probability"].to_numpy()))])
    shown = json.loads(
        run(
            REGISTER_PARTY,
            "signed report",
            ["registry-combiner", "report", riskiest, *state, *key, "--out", "reports", "--json"],
        )
    )
    html = [f for f in shown.get("files", []) if str(f).endswith(".html")]
    result.report = str(base / (html[0] if html else shown["files"][0]))


def _final_table(base: Path, result: DemoResult) -> list[dict[str, Any]]:
    """Per index: the register's AUC on the synthetic truth beside the lab's and the oracle's.

    The register's final probability of every entity in the economy is joined to the truth
    (``economy/truth/truth.parquet``); an entity the register never saw would count as
    unscored (``unscored``), which a whole-population round should never have. Entities
    of the training sample (the tax body's random-ID mapping) are left out, so the AUC is
    measured on entities no model saw (``entities`` counts the rest).
    """
    truth = pq.read_table(base / "economy" / "truth" / "truth.parquet")
    mappings = sorted((base / TAX_PARTY / "state" / "mappings").glob("*.parquet"))
    if mappings:
        sampled = pa.concat_arrays(
            [pq.read_table(m, columns=["bin"])["bin"].combine_chunks() for m in mappings]
        )
        truth = truth.filter(pc.invert(pc.is_in(truth["bin"], value_set=sampled)))
    scored = pq.read_table(
        result.register_export, columns=["bin", "index", "probability", "category"]
    )
    joined = truth.join(scored, keys=["bin", "index"], join_type="left outer")
    lab_auc = {
        m["name"].split(".", 1)[1]: m["auc"]
        for m in result.models
        if m["name"].startswith("combiner.")
    }
    rows = []
    for index in sorted(set(truth["index"].to_pylist())):
        part = joined.filter(pc.equal(joined["index"], index))
        unscored = part["probability"].null_count
        part = part.filter(pc.is_valid(part["probability"]))
        outcome = part["outcome"].to_numpy(zero_copy_only=False).astype(np.int8)
        probability = part["probability"].to_numpy()
        both = 0 < int(outcome.sum()) < outcome.size
        counts = pc.value_counts(part["category"]).to_pylist()
        rows.append(
            {
                "index": index,
                "entities": part.num_rows,
                "unscored": unscored,
                "federated_auc": round(roc_auc(outcome, probability), 4) if both else None,
                "lab_auc": lab_auc.get(index),
                "oracle_auc": result.oracle_auc.get(index),
                "outcome_rate": result.outcome_rates.get(index),
                "categories": {
                    str(c["values"]): round(c["counts"] / max(part.num_rows, 1), 4)
                    for c in sorted(counts, key=lambda c: _CATEGORY_ORDER.get(c["values"], 9))
                },
            }
        )
    return rows


_CATEGORY_ORDER = {"low": 0, "medium": 1, "high": 2}


def _model_summary(trained: dict[str, Any]) -> list[dict[str, Any]]:
    """Name, family, held-out AUC and ECE of every trained model (from ``train --json``)."""
    out = []
    for model in trained["round"]["models"]:
        evaluation = model["evaluation"]
        out.append(
            {
                "name": model["name"],
                "family": model["family"],
                "auc": round(evaluation["auc"], 4),
                "ece": round(evaluation["ece"], 4),
            }
        )
    return out
