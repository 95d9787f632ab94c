"""A whole sample round through the real command-line tools, as the parties would run it.

On a synthetic economy of 20,000 entities with all 13 sources of para 24: the lab
requests a sample of 5,000 (``nce-lab sample request``), the tax body draws the random
list (``agency-runtime issue-list``), each of the 13 owners prepares its depersonalised
sample (``agency-runtime prepare-sample``, the tax body with the outcomes), the lab
ingests them all (``nce-lab sample ingest``) and checks its status (``nce-lab status``).
The joined training table has one row per drawn entity, random IDs only, the outcomes,
and no identifier.

The world (keys, signed trust root, economy, outcomes file) is set up by the shared test
fixture; every step of the round itself is a subprocess of the installed console scripts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from nce_model_lab.sample_request import default_sources
from sample_protocol.catalogue import index_ids
from sample_protocol.records import is_random_id
from tests.agency_runtime.round_fixtures import LAB, TAX_BODY, build_round_world
from tests.nce_model_lab.test_sample_ingest import assert_no_identifiers

BIN = Path(sys.executable).parent
ENTITIES = 20_000
SIZE = 5_000


def run(*args: str | Path, expect: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(BIN / str(args[0])), *map(str, args[1:])], capture_output=True, text=True
    )
    assert result.returncode == expect, (
        f"{' '.join(map(str, args[:3]))}... exited {result.returncode}:\n"
        f"{result.stdout}\n{result.stderr}"
    )
    return result


def test_whole_round_through_the_clis(tmp_path):
    sources = default_sources()
    assert len(sources) == 13
    world = build_round_world(tmp_path, n_entities=ENTITIES, seed=7, sources=sources)
    common = ("--trust", world.trust, "--root-pub", world.root_pub)
    lab = tmp_path / "lab"

    # 1. The lab requests a sample of every required source.
    out = run(
        "nce-lab", "sample", "request", "--key", world.key(LAB), *common,
        "--lab-dir", lab, "--out", tmp_path / "outbox", "--size", SIZE,
        "--as-of", "2024-01-01", "--sent-on", "2025-03-03", "--json",
    )  # fmt: skip
    sent = json.loads(out.stdout)
    request = Path(sent["file"])
    request_id = sent["request"]["request_id"]
    assert [s["source"] for s in sent["request"]["sources"]] == list(sources)
    assert len(sent["request"]["recipients"]) == 13
    assert sent["request"]["due_date"] == "2025-03-18"

    # 2. The tax body draws the list and seals one copy per recipient.
    lists = tmp_path / "lists"
    run(
        "agency-runtime", "issue-list", request, *common, "--key", world.key(TAX_BODY),
        "--register", world.extract("TAX"), "--state", world.state(TAX_BODY), "--out", lists,
        "-q",
    )  # fmt: skip

    # 3. Every owner prepares its depersonalised sample, sealed to the lab.
    samples = tmp_path / "samples"
    for source in sources:
        body = world.body_of[source]
        extra = ("--outcomes", world.outcomes) if source == "TAX" else ()
        run(
            "agency-runtime", "prepare-sample", request, "--list", lists / f"{body}.ridlist",
            "--source", source, "--extract", world.extract(source), *common,
            "--key", world.key(body), "--state", world.state(body), "--out", samples, *extra,
            "-q",
        )  # fmt: skip
    files = sorted(samples.glob("*.sample"))
    assert len(files) == 13

    # 4. The lab ingests them all and prints the coverage.
    out = run("nce-lab", "sample", "ingest", *files, "--key", world.key(LAB), *common,
              "--lab-dir", lab)  # fmt: skip
    assert out.stdout.count("accepted ") == 13
    assert f"training table rounds/{request_id}/training.parquet: {SIZE:,} rows" in out.stdout
    for source in sources:
        assert f"  {source} " in out.stdout
    assert "entities with all 13 received sources" in out.stdout

    training = pq.read_table(lab / "rounds" / request_id / "training.parquet")
    assert training.num_rows == SIZE
    rids = training["rid"].to_pylist()
    assert len(set(rids)) == SIZE and all(is_random_id(r) for r in rids)
    for index in index_ids():
        column = training[f"outcome_{index}"]
        assert column.null_count == 0 and 0 < sum(column.to_pylist()) < SIZE
    prefixes = {c.split("__")[0] for c in training.column_names if "__" in c}
    assert prefixes == set(sources)
    mapping = pq.read_table(world.state(TAX_BODY) / "mappings" / f"{request_id}.parquet")
    bin_of = dict(zip(mapping["rid"].to_pylist(), mapping["bin"].to_pylist(), strict=True))
    assert set(bin_of) == set(rids)
    assert_no_identifiers(training, bin_of)

    coverage = json.loads((lab / "rounds" / request_id / "coverage.json").read_text())
    rows = {s["source"]: s["rows"] for s in coverage["sources"]}
    assert rows["TAX"] == SIZE and coverage["missing"] == []
    assert all(0 < n <= SIZE for n in rows.values())

    # 5. Status: every body answered; a replay of the whole batch is refused (exit 3).
    status = json.loads(
        run("nce-lab", "status", "--lab-dir", lab, "--today", "2025-03-10", "--json").stdout
    )
    [req] = status["requests"]
    assert req["state"] == "complete" and len(req["answered"]) == 13
    assert status["next_refit_due"] is not None
    replay = run("nce-lab", "sample", "ingest", files[0], "--key", world.key(LAB), *common,
                 "--lab-dir", lab, expect=3)  # fmt: skip
    assert "sample_replayed" in replay.stderr
    run("nce-lab", "audit", "verify", lab / "audit.log")
