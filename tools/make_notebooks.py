"""Write the notebooks in ``notebooks/`` from the cell sources below (without outputs).

The notebooks are generated so that their code is reviewed like code; run
``python tools/make_notebooks.py`` after editing a cell here, and commit both.
``tests/test_notebooks.py`` executes every notebook on a small economy and checks that
the committed files are what this script writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"

# Every notebook reads its size from KZS_NB_ENTITIES (the test suite sets it small).
SETUP = """import os, tempfile
from pathlib import Path
ENTITIES = int(os.environ.get("KZS_NB_ENTITIES", "20000"))
SEED = 7
WORK = Path(os.environ.get("KZS_NB_WORKDIR") or tempfile.mkdtemp(prefix="kzs-"))
print(f"{ENTITIES:,} synthetic entities; working in {WORK}")"""

LAB: list[tuple[str, str]] = [
    (
        "md",
        "# The NCE data scientist: train, evaluate, and the price of privacy\n\n"
        "The lab never sees raw state data: it trains on depersonalised samples keyed by "
        "random IDs. Here a synthetic economy stands in for the state bodies, so that we "
        "also know every entity's **true** probability and can tell how good a model "
        "could possibly be (the *oracle*).\n\n"
        "Set `KZS_NB_ENTITIES` to change the size (default 20,000).",
    ),
    ("code", SETUP),
    (
        "md",
        "## 1. A synthetic economy and its training table\n\n"
        "`economy_training_table` gives the table a complete sample round of the whole "
        "economy would give (one column per source field, prefixed `SOURCE__`, plus the "
        "`outcome_<index>` targets), and the true probability per index, row-aligned. "
        "In production that table comes from `nce-lab sample ingest`.",
    ),
    (
        "code",
        """from sample_protocol.synthetic import generate_economy
from nce_model_lab.training.features import economy_training_table

economy = generate_economy(ENTITIES, seed=SEED)
table, truth = economy_training_table(economy)
print(table.num_rows, "rows,", table.num_columns, "columns")
summary = economy.summary
for index, rate in sorted(summary.outcome_rates.items()):
    print(f"{index:22s} outcome rate {rate:6.1%}   oracle AUC {summary.oracle_auc[index]:.3f}")""",
    ),
    (
        "md",
        "## 2. Federated training\n\n"
        "One **preliminary model** per (source, index) sees only that source's fields (the "
        "law: a preliminary index is computed from one body's data); one **combiner** per "
        "index merges the preliminary indexes (as log-odds) with the direct feeds. Each model "
        "is a gradient-boosting model or a monotone scorecard, chosen on validation rows, and "
        "calibrated on held-out folds.",
    ),
    (
        "code",
        """from nce_model_lab.training.combiner import train_federated

federated = train_federated(table, seed=SEED)
for (source, index), model in sorted(federated.preliminary.models.items()):
    inputs = sorted({c.source for c in model.spec.columns})
    print(f"{source:14s} {index:22s} {model.family:9s} inputs from {inputs}")""",
    ),
    (
        "md",
        "Every preliminary model's inputs come from its own source's contract; the cell "
        "below checks it, as the test suite does.",
    ),
    (
        "code",
        """assert all({c.source for c in m.spec.columns} == {m.source}
           for m in federated.preliminary.models.values())
print("no model reads another body's data")""",
    ),
    (
        "md",
        "## 3. The price of privacy\n\n"
        "On held-out entities: the federated model (what the law allows), a pooled model "
        "over all raw fields (what the law forbids, but which tells what privacy costs), and "
        "the oracle (the true probability). `nce-lab demo` and `docs/training.md` report the "
        "same table at larger sizes.",
    ),
    (
        "code",
        """from nce_model_lab.training.pooled import price_of_privacy

prices = price_of_privacy(table, truth, seed=SEED)
print(f"{'index':22s} {'federated':>9s} {'pooled':>7s} {'oracle':>7s}")
for index, price in prices.items():
    print(f"{index:22s} {price.federated_auc:9.3f} {price.pooled_auc:7.3f} {price.oracle_auc:7.3f}")
assert all(p.federated_auc <= p.oracle_auc + 0.02 for p in prices.values())""",
    ),
    (
        "md",
        "## 4. Evaluate one model\n\n"
        "`evaluate` gives AUC, Gini, KS, Brier, the calibration table and its expected "
        "calibration error (ECE), and the category rates under given cut-offs.",
    ),
    (
        "code",
        """import numpy as np
from sample_protocol.scores import derive_cutoffs
from nce_model_lab.evaluate import evaluate
from nce_model_lab.training.features import outcome

index = "payment_discipline"
p = federated.predict_proba(table)[index]
cutoffs = derive_cutoffs(index, p)
ev = evaluate(outcome(table, index), p, cutoffs=cutoffs)
print(f"in-sample AUC {ev.auc:.3f}  Gini {ev.gini:.3f}  KS {ev.ks:.3f}  ECE {ev.ece:.4f}")
for category, rate in ev.category_rates.items():
    observed = rate.observed_rate or 0.0
    print(f"{category:7s} {rate.share:6.1%} of entities, outcome rate {observed:6.1%}")""",
    ),
    (
        "md",
        "## 5. From here to a release\n\n"
        "The CLI does the same on a real sample round and ships signed bundles:\n\n"
        "```sh\n"
        "nce-lab train   --lab-dir lab --request req-...\n"
        "nce-lab release --lab-dir lab --request req-... --key keys/nce-lab.key \\\n"
        "    --trust trust.json --root-pub keys/nce-root.pub --out releases\n"
        "```\n\n"
        "See the README's *Training and releasing* and `docs/training.md`.",
    ),
]

# The body and register notebooks start from a whole round played by `nce-lab demo`
# (or, in the test suite, a copy of one built once: KZS_NB_DEMO_DIR).
ROUND = """import os, shutil, tempfile
from pathlib import Path
from nce_model_lab.demo import run_demo

ENTITIES = int(os.environ.get("KZS_NB_ENTITIES", "20000"))
WORK = Path(os.environ.get("KZS_NB_WORKDIR") or tempfile.mkdtemp(prefix="kzs-"))
ROUND = WORK / "round"
if os.environ.get("KZS_NB_DEMO_DIR"):
    shutil.copytree(os.environ["KZS_NB_DEMO_DIR"], ROUND)
else:
    run_demo(ROUND, entities=ENTITIES, seed=7, progress=print)
RELEASE = sorted((ROUND / "releases").iterdir())[-1]
print("release", RELEASE.name, "bundles:", sorted(p.name for p in RELEASE.iterdir()))"""

BODY: list[tuple[str, str]] = [
    (
        "md",
        "# The state body's operator: verify, score, monitor\\n\\n"
        "A body installs only `pip install '.[agency]'` (numpy, pyarrow, onnx, onnxruntime, "
        "pynacl, typer) and runs everything inside its perimeter. What leaves is one signed "
        "batch of preliminary indexes: a 1-99 value, a category and a probability per "
        "entity and index, nothing else.\\n\\n"
        "We start from a whole round played by `nce-lab demo` on a synthetic economy, and "
        "take the place of the tax body.",
    ),
    ("code", ROUND),
    (
        "md",
        "## 1. Verify the release before loading anything\\n\\n"
        "Signature against the trust root (pinned root key), every file's SHA-256, expiry, "
        "revocation, rollback, the ONNX gate (operator allowlist, exact inputs and outputs, "
        "CPU only) and the parity fixture re-run on this machine.",
    ),
    (
        "code",
        """from sample_protocol.keys import load_public_key, load_secret_key
from sample_protocol.trust import load_trust_root
from agency_runtime.verify import verify_release

keys = ROUND / "keys"
state = WORK / "tax-state"
trust = load_trust_root(ROUND / "trust.json", root_public=load_public_key(keys / "nce-root.pub"),
                        state_dir=state)
tax_key = load_secret_key(keys / "tax-body.key")
verified = verify_release(RELEASE / "TAX", state_dir=state, actor="tax-body", trust=trust,
                          source="TAX")
print(verified.release_id, "sequence", verified.manifest.sequence,
      "signed by", verified.bundle.signer)
for m in verified.manifest.models:
    print(f"  {m.name:32s} {len(m.input_names)} inputs")""",
    ),
    (
        "md",
        "A flipped byte anywhere in the bundle is refused, and nothing is loaded:",
    ),
    (
        "code",
        """import shutil
from sample_protocol.errors import ProtocolError

tampered = WORK / "tampered"
shutil.copytree(RELEASE / "TAX", tampered)
model = next((tampered / "models").glob("*.onnx"))
data = bytearray(model.read_bytes()); data[len(data) // 2] ^= 1; model.write_bytes(bytes(data))
try:
    verify_release(tampered, state_dir=WORK / "other-state", actor="tax-body", trust=trust,
                   source="TAX")
    raise AssertionError("a tampered bundle was accepted")
except ProtocolError as exc:
    print("refused:", exc.code)""",
    ),
    (
        "md",
        "## 2. Score the whole population\\n\\n"
        "The input is streamed in batches (memory does not grow with it), every row is "
        "checked against the source's contract, quasi-identifiers are generalised as the "
        "training sample was, and the batch is signed by the body and sealed to the register.",
    ),
    (
        "code",
        """import datetime as dt
from agency_runtime.score import score_population

result = score_population(
    RELEASE / "TAX", ROUND / "economy" / "sources" / "TAX.parquet", source="TAX", key=tax_key,
    out=WORK / "batch-tax", state_dir=state, trust=trust,
    seal_to=load_public_key(keys / "register.pub"), as_of=dt.date(2025, 1, 1))
print(f"{result.entities:,} entities, {result.rows:,} rows, batch {result.manifest.batch_id}")
for index, counts in result.categories.items():
    print(f"  {index:22s} {counts}")
print(sorted(p.name for p in result.out.iterdir()))""",
    ),
    (
        "md",
        "The batch carries exactly the batch schema; the register opens it with its own key:",
    ),
    (
        "code",
        """from sample_protocol.batch import BATCH_SCHEMA, open_batch

opened = open_batch(result.out, trust=trust, recipient=load_secret_key(keys / "register.key"))
assert opened.table.schema.names == BATCH_SCHEMA.names
print(opened.signer, opened.table.num_rows, "rows;", opened.table.schema.names)
print(opened.table.slice(0, 4).to_pylist())""",
    ),
    (
        "md",
        "## 3. Monitor drift\\n\\n"
        "Population stability (PSI) of every input and of the score against the training "
        "distributions carried in the bundle; only aggregates are written.",
    ),
    (
        "code",
        """from agency_runtime.monitor import monitor_population

report = monitor_population(RELEASE / "TAX", ROUND / "economy" / "sources" / "TAX.parquet",
                            source="TAX", state_dir=state, trust=trust, key=tax_key)
for drift in report.models:
    print(f"{drift.model:30s} score PSI {drift.score.psi:.4f} ({drift.flag.value})")""",
    ),
]

REGISTER: list[tuple[str, str]] = [
    (
        "md",
        "# The register: combine, query, report\\n\\n"
        "The register holds only what it may: the bodies' preliminary indexes (signed "
        "batches) and the direct feeds. It combines them into the four indexes, answers "
        "queries, and hands out reports signed with its key, logging every check (paras "
        "28-37). We start from a whole round played by `nce-lab demo`, in which the register "
        "already ingested the bodies' batches and the feeds and ran `combine`.",
    ),
    ("code", ROUND),
    (
        "md",
        "## 1. The latest combine run\\n\\n"
        "Every run is kept (that is the history behind a trend); `export` writes the current "
        "indexes of every entity.",
    ),
    (
        "code",
        """import pyarrow.compute as pc
import pyarrow.parquet as pq
from registry_combiner.query import export_current
from registry_combiner.store import open_store

store = open_store(ROUND / "register")
exported = export_current(store, WORK / "indexes.parquet")
indexes = pq.read_table(exported.path)
print(f"run {exported.run_id}, release {exported.release_id}: {exported.entities:,} entities")
for index in sorted(set(indexes["index"].to_pylist())):
    part = indexes.filter(pc.equal(indexes["index"], index))
    counts = dict(zip(*[c.to_pylist() for c in pc.value_counts(part["category"]).flatten()]))
    partial = pc.sum(part["partial"]).as_py()
    print(f"  {index:22s} {counts}  partial {partial:,}")""",
    ),
    (
        "md",
        "On the synthetic economy we can also say how good the published indexes are: the "
        "AUC of the register's probability against the outcome, over the whole population.",
    ),
    (
        "code",
        """import numpy as np
import pyarrow as pa

truth = pq.read_table(ROUND / "economy" / "truth" / "truth.parquet")

def auc(y, p):
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p)); ranks[order] = np.arange(1, len(p) + 1)
    pos = y.sum()
    return (ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * (len(y) - pos))

for index in sorted(set(indexes["index"].to_pylist())):
    part = indexes.filter(pc.equal(indexes["index"], index))
    t = truth.filter(pc.equal(truth["index"], index))
    joined = part.join(t, "bin")
    y = np.asarray(joined["outcome"].to_pylist(), dtype=int)
    p = joined["probability"].to_numpy()
    oracle = joined["true_probability"].to_numpy()
    print(f"  {index:22s} AUC {auc(y, p):.3f}   oracle {auc(y, oracle):.3f}")""",
    ),
    (
        "md",
        "## 2. One entity: indexes, coverage, reasons, trend",
    ),
    (
        "code",
        """import json
from registry_combiner.query import entity_view

risky = indexes.filter(pc.equal(indexes["category"], "high"))
some_bin = risky["bin"][0].as_py() if risky.num_rows else indexes["bin"][0].as_py()
view = entity_view(store, some_bin)
print(json.dumps(view, indent=1, default=str)[:2500])""",
    ),
    (
        "md",
        "## 3. Search (para 32): by BIN/IIN, by name and legal form, by the head's name",
    ),
    (
        "code",
        """from registry_combiner.search import search

named = [e for e in (store.entity(b) for b in indexes["bin"].to_pylist()[:400]) if e and e.name]
if named:
    word = named[0].name.split()[0]
    print(f"search {word!r}:", [(e.bin, e.name) for e in search(store, word, limit=5)])
print(search(store, some_bin)[0].bin == some_bin)""",
    ),
    (
        "md",
        "## 4. A signed report, and anyone can check it later\\n\\n"
        "The report is canonical JSON (and HTML) signed in minisign's format by the register; "
        "issuing it records the check (user, time, report hash) in the check log.",
    ),
    (
        "code",
        """from sample_protocol.keys import load_public_key, load_secret_key
from registry_combiner.report import issue_report, verify_report, write_report

keys = ROUND / "keys"
issued = issue_report(store, some_bin, user="analyst-1", key=load_secret_key(keys / "register.key"))
paths = write_report(issued, WORK / "reports")
print([p.name for p in paths])
checked = verify_report(paths[0], [load_public_key(keys / "register.pub")])
print("signed by", checked.signature.signer, "for", checked.report.entity.bin)
print("who checked this entity:", [(c.user_name, str(c.checked_at)[:19])
                                   for c in store.checks_of_entity(store.entity(some_bin).id)])""",
    ),
    (
        "md",
        "A report changed after signing is refused:",
    ),
    (
        "code",
        """from sample_protocol.errors import SignatureError

forged = WORK / "reports" / "forged.json"
forged.write_bytes(paths[0].read_bytes().replace(b"analyst-1", b"analyst-2"))
(WORK / "reports" / "forged.json.minisig").write_bytes(
    Path(str(paths[0]) + ".minisig").read_bytes())
try:
    verify_report(forged, [load_public_key(keys / "register.pub")])
    raise AssertionError("a forged report was accepted")
except SignatureError as exc:
    print("refused:", exc.code)""",
    ),
]

NOTEBOOK_CELLS: dict[str, list[tuple[str, str]]] = {
    "01_nce_data_scientist.ipynb": LAB,
    "02_state_body_operator.ipynb": BODY,
    "03_register.ipynb": REGISTER,
}


def build(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [new_markdown_cell(s) if kind == "md" else new_code_cell(s) for kind, s in cells]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


def render(name: str) -> str:
    return nbformat.writes(build(NOTEBOOK_CELLS[name])) + "\n"


def main() -> int:
    NOTEBOOKS.mkdir(exist_ok=True)
    for name in NOTEBOOK_CELLS:
        (NOTEBOOKS / name).write_text(render(name), encoding="utf-8")
        print(f"wrote notebooks/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
