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

NOTEBOOK_CELLS: dict[str, list[tuple[str, str]]] = {
    "01_nce_data_scientist.ipynb": LAB,
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
