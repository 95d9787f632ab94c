"""The model card: one self-contained HTML page a regulator can read (issue 6).

:func:`render_card` turns a trained round (``evaluation.json``, a
:class:`~nce_model_lab.trained.TrainedRound`) into HTML: per index and per model, on the
held-out test entities, AUC (with its 95% interval), Gini, KS, Brier score, the
calibration table and ECE (with the ECE sampling alone would give), each category's
share and observed outcome rate, the PSI between training and held-out scores, and a
figure (ROC curve, calibration plot, distribution of the published value, category
rates; :mod:`nce_model_lab.card_plots`); the cut-offs, the score scale and the rule that
placed the cut-offs; the training record (data hash, seed, split, library versions);
the quality gates, each model's verdict and any override. Every number comes from the
recorded evaluation (:mod:`nce_model_lab.evaluate`); nothing is recomputed from data.

The page has no JavaScript and loads nothing: styles are inline and the figures are
base64 PNG ``data:`` images. Every value written into it goes through
:func:`html.escape`.

``nce-lab release`` puts the card of each bundle into the bundle (:data:`MODEL_CARD_FILE`,
listed in the manifest, so signed); a body's card shows that body's models only.
:func:`write_card` (``nce-lab card``) writes a card for a trained round, a release
bundle or a whole release directory.

What the card leaves out: the comparison with the synthetic economy's *true* risk (the
price of privacy) needs the economy's truth, which stays outside the lab directory; it is
measured and documented in the docs, not here.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sample_protocol.catalogue import Catalogue
from sample_protocol.errors import CatalogueError
from sample_protocol.scores import CATEGORIES, CutoffRule

from .card_plots import model_figure
from .evaluate import PSI_ACT, PSI_WATCH, auc_standard_error, ece_noise_floor, psi_status
from .quality import GateFailure, QualityGates, check_models
from .trained import TrainedModel, TrainedRound

__all__ = ["MODEL_CARD_FILE", "ReleaseInfo", "render_card"]

#: File name of the card inside a release bundle.
MODEL_CARD_FILE = "model_card.html"

_STYLE = """
body{font-family:Georgia,'Times New Roman',serif;max-width:62rem;margin:2rem auto;
padding:0 1rem;color:#222;line-height:1.45}
h1,h2,h3{font-family:Helvetica,Arial,sans-serif}h2{border-bottom:1px solid #999;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0 1rem}th,td{border:1px solid #bbb;
padding:.2rem .5rem;text-align:left;font-size:.92rem}th{background:#eee}
td.n{text-align:right;font-variant-numeric:tabular-nums}.fail{color:#a00;font-weight:bold}
.over{color:#a60;font-weight:bold}.ok{color:#060}.note{color:#555;font-size:.9rem}
img{max-width:100%;border:1px solid #ddd}code{font-size:.88rem;word-break:break-all}
"""


@dataclass(frozen=True, slots=True)
class ReleaseInfo:
    """The release a card describes (``None`` in :func:`render_card` for a round)."""

    release_id: str
    sequence: int
    audiences: tuple[str, ...]
    created_at: dt.datetime
    expires_at: dt.datetime
    lab: str


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.1f}%"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """A table; every cell is escaped here (cells arrive as plain text)."""
    out = ["<table><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr>"]
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            cls = ' class="n"' if i in numeric else ""
            out.append(f"<td{cls}>{_e(cell)}</td>")
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _pairs(rows: Iterable[tuple[str, str]]) -> str:
    return _table(("item", "value"), rows)


def _verdict(
    name: str, failures: Sequence[GateFailure], overrides: Sequence[str]
) -> tuple[str, str]:
    """(text, css class) of one model's gate verdict."""
    mine = [f for f in failures if f.model == name]
    if not mine:
        return "passes", "ok"
    gates = ", ".join(f.gate for f in mine)
    if any(o.startswith(f"{name}: ") for o in overrides):
        return f"overridden ({gates})", "over"
    return f"FAILS ({gates})", "fail"


def _rule_text(rule: CutoffRule) -> str:
    if rule.method == "quantile":
        high = rule.high_share
        return (
            f"quantile rule: on the validation rows, the {100 * high:.0f}% highest "
            f"probabilities are high and the next {100 * rule.medium_share:.0f}% medium; "
            "each cut-off is then moved down to the midpoint between it and the next lower "
            "validation probability, so no entity sits exactly on a cut-off."
        )
    return (
        f"odds rule: medium from {rule.medium_odds_ratio:g} times and high from "
        f"{rule.high_odds_ratio:g} times the odds of the validation base rate; each cut-off "
        "is then moved down to the midpoint between it and the next lower validation "
        "probability."
    )


class _Card:
    """Builds the card's HTML, one section at a time."""

    def __init__(
        self,
        trained: TrainedRound,
        models: Sequence[TrainedModel],
        gates: QualityGates | None,
        overrides: Sequence[str],
        release: ReleaseInfo | None,
    ) -> None:
        self.trained = trained
        self.models = tuple(models)
        self.gates = gates
        self.overrides = tuple(overrides)
        self.release = release
        self.failures = () if gates is None else check_models(self.models, gates)
        self.catalogue = Catalogue.default()
        self.parts: list[str] = []

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def para(self, text: str, cls: str = "") -> None:
        attr = f' class="{cls}"' if cls else ""
        self.add(f"<p{attr}>{_e(text)}</p>")

    # -- sections ------------------------------------------------------------------------

    def title(self) -> str:
        if self.release is None:
            return f"Model card: trained round {self.trained.request_id} (not released)"
        who = ", ".join(self.release.audiences)
        return f"Model card: release {self.release.release_id} for {who}"

    def intro(self) -> None:
        self.add(f"<h1>{_e(self.title())}</h1>")
        self.para(
            "Each model below estimates, for one entity (a company or an entrepreneur), the "
            "probability of the adverse outcome of one index within its horizon. A body's "
            "model reads that body's data only; a combiner (the register's model) reads the "
            "bodies' preliminary probabilities and the register's direct sources. From the "
            "probability the runtime publishes a value from 1 to 99 (higher is riskier) and "
            "a category (low, medium, high) from the cut-offs below."
        )
        self.para(
            "Every measure here was computed on held-out test entities: rows of the "
            "depersonalised sample that were used neither to train the model nor to place "
            "its cut-offs. They describe the sampled population; a population that moves "
            "(see PSI) needs a new evaluation."
        )
        if self.release is not None:
            r = self.release
            self.add("<h2>Release</h2>")
            self.add(
                _pairs(
                    [
                        ("release id", r.release_id),
                        ("sequence", str(r.sequence)),
                        ("bundles (audiences)", ", ".join(r.audiences)),
                        ("created", r.created_at.isoformat()),
                        ("expires", r.expires_at.isoformat()),
                        ("signed by", r.lab),
                    ]
                )
            )

    def summary(self) -> None:
        self.add("<h2>Summary of the models</h2>")
        rows = []
        for m in self.models:
            ev = m.evaluation
            verdict, _ = _verdict(m.name, self.failures, self.overrides)
            rows.append(
                (
                    m.name,
                    m.index,
                    m.source or "register (combiner)",
                    m.family,
                    f"{ev.n:,}",
                    f"{ev.positives:,}",
                    _f(ev.auc),
                    _f(ev.gini),
                    _f(ev.ks),
                    _f(ev.brier, 4),
                    _f(ev.ece),
                    _f(ev.psi),
                    verdict if self.gates is not None else "not checked",
                )
            )
        head = ["model", "index", "source", "family", "test rows", "positives", "AUC", "Gini"]
        head += ["KS", "Brier", "ECE", "PSI", "quality gates"]
        self.add(_table(head, rows, numeric=range(4, 12)))

    def quality(self) -> None:
        self.add("<h2>Quality gates</h2>")
        g = self.gates
        if g is None:
            self.para("This release records no quality gates (it predates them).", "note")
            return
        self.para(
            "A release is refused when a model's held-out measure breaks one of these limits, "
            "unless the data scientist forces it with a written reason, which is then "
            "recorded in the signed manifest and the lab's audit log."
        )
        self.add(
            _table(
                ("gate", "limit", "why"),
                [
                    ("AUC at least", _f(g.min_auc), "below it the score barely ranks risk"),
                    ("AUC at most", _f(g.max_auc), "above it the outcome has likely leaked"),
                    ("ECE at most", _f(g.max_ece), "probabilities must match observed rates"),
                ],
            )
        )
        if not self.failures:
            self.add('<p class="ok">Every model passes every gate.</p>')
        else:
            cls = "over" if self.overrides else "fail"
            items = "".join(f"<li>{_e(f.describe())}</li>" for f in self.failures)
            self.add(f'<p class="{cls}">Gate failures:</p><ul>{items}</ul>')
        if self.overrides:
            items = "".join(f"<li>{_e(o)}</li>" for o in self.overrides)
            self.add(f'<p class="over">Overridden by the lab (forced):</p><ul>{items}</ul>')
        elif self.release is not None:
            self.para("No gate was overridden in this bundle.")

    def training(self) -> None:
        t = self.trained
        self.add("<h2>Training record</h2>")
        rows = [
            ("sample request (round)", t.request_id),
            ("trained at", t.trained_at.isoformat()),
            ("training table SHA-256", t.training_sha256),
            ("seed (split and models)", str(t.seed)),
            (
                "split (rows)",
                ", ".join(f"{k} {v:,}" for k, v in sorted(t.split.items())),
            ),
            ("cut-off rule", _rule_text(t.cutoff_rule)),
            ("cut-off rule (as recorded)", t.cutoff_rule.to_json()),
        ]
        rows += [(f"library {k}", v) for k, v in sorted(t.libraries.items())]
        rows += [(m.name + " ONNX SHA-256", m.sha256) for m in self.models]
        self.add(_pairs(rows))
        sources = {m.source for m in self.models}
        skipped = {
            name: why
            for name, why in t.skipped.items()
            if self.release is None or name.split(".")[0] in sources
        }
        if skipped:
            self.para("Models not trained:")
            self.add(_table(("model", "why"), sorted(skipped.items())))

    def index_header(self, index: str) -> None:
        try:
            spec = self.catalogue.index(index)
        except (CatalogueError, KeyError):
            self.add(f"<h2>Index {_e(index)}</h2>")
            return
        self.add(f"<h2>Index {_e(index)}: {_e(spec.name)}</h2>")
        self.add(
            _pairs(
                [
                    ("estimates", spec.estimates),
                    ("outcome (target)", spec.target),
                    ("horizon", f"{spec.horizon_months} months"),
                ]
            )
        )

    def model(self, m: TrainedModel) -> None:
        ev = m.evaluation
        self.add(f"<h3>{_e(m.name)}</h3>")
        negatives = ev.n - ev.positives
        low = high = None
        if ev.positives and negatives:
            se = auc_standard_error(ev.auc, ev.positives, negatives)
            low, high = max(0.0, ev.auc - 1.96 * se), min(1.0, ev.auc + 1.96 * se)
        status = "n/a" if ev.psi is None else psi_status(ev.psi)
        verdict, cls = _verdict(m.name, self.failures, self.overrides)
        rows = [
            ("source", m.source or "register (combiner)"),
            ("model family", m.family),
            ("held-out test rows", f"{ev.n:,}"),
            ("of which with the outcome", f"{ev.positives:,} ({_pct(ev.positives / ev.n)})"),
            ("AUC (95% interval)", f"{_f(ev.auc)} ({_f(low)} to {_f(high)})"),
            ("Gini (2 AUC - 1)", _f(ev.gini)),
            ("KS", _f(ev.ks)),
            ("Brier score", _f(ev.brier, 4)),
            ("ECE", _f(ev.ece)),
            ("ECE from sampling alone", _f(ece_noise_floor(ev.calibration))),
            ("PSI, training vs held-out scores", f"{_f(ev.psi)} ({status})"),
            ("ONNX parity (max difference)", f"{m.parity.max_abs_diff:.1e}"),
        ]
        self.add(_pairs(rows))
        if self.gates is not None:
            self.add(f'<p>Quality gates: <span class="{cls}">{_e(verdict)}</span></p>')
        self.cutoffs(m)
        self.add("<p>Calibration table (equal-frequency bins of the predicted probability):</p>")
        self.add(
            _table(
                ("bin", "probability range", "rows", "mean predicted", "observed rate"),
                [
                    (
                        str(i + 1),
                        f"{b.lower:.4f} to {b.upper:.4f}",
                        f"{b.n:,}",
                        _f(b.mean_predicted, 4),
                        _f(b.observed_rate, 4),
                    )
                    for i, b in enumerate(ev.calibration)
                ],
                numeric=(2, 3, 4),
            )
        )
        png = base64.b64encode(model_figure(m)).decode("ascii")
        alt = f"{m.name}: ROC curve, calibration plot, value distribution, category rates"
        self.add(f'<p><img alt="{_e(alt)}" src="data:image/png;base64,{_e(png)}"></p>')

    def cutoffs(self, m: TrainedModel) -> None:
        c, s = m.cutoffs, m.scale
        bounds = {
            "low": (f"below {c.medium_from:.4f}", f"{s.min_value} to {s.value(c.medium_from) - 1}"),
            "medium": (
                f"{c.medium_from:.4f} to below {c.high_from:.4f}",
                f"{s.value(c.medium_from)} to {s.value(c.high_from) - 1}",
            ),
            "high": (f"{c.high_from:.4f} or more", f"{s.value(c.high_from)} to {s.max_value}"),
        }
        rates = m.evaluation.category_rates
        rows = []
        for name in CATEGORIES:
            rate = rates.get(name)
            rows.append(
                (
                    name,
                    *bounds[name],
                    "n/a" if rate is None else _pct(rate.share),
                    "n/a" if rate is None else f"{rate.n:,}",
                    "n/a" if rate is None else _pct(rate.observed_rate),
                )
            )
        self.add("<p>Categories: cut-offs (probability and value) and held-out rates:</p>")
        head = ("category", "probability", "value", "share", "rows", "observed outcome rate")
        self.add(_table(head, rows, numeric=(3, 4, 5)))
        self.para(
            f"Score scale: value = {s.base_value:g} + {s.points_to_double_odds:g} / ln 2 x "
            f"(logit p - logit {s.base_probability:.4g}), rounded and clipped to "
            f"{s.min_value}-{s.max_value}; the value grows by {s.points_to_double_odds:g} "
            "points each time the odds double.",
            "note",
        )

    def glossary(self) -> None:
        self.add("<h2>How to read the measures</h2>")
        self.add(
            _pairs(
                [
                    ("AUC", "chance that a random entity with the outcome scores above one "
                     "without it; 0.5 is chance, 1 perfect ranking"),
                    ("Gini", "2 AUC - 1"),
                    ("KS", "largest gap between the score distributions of entities with "
                     "and without the outcome"),
                    ("Brier score", "mean squared difference between probability and outcome"),
                    ("ECE", "average gap between predicted probability and observed rate over "
                     "ten equal-size bins; 'from sampling alone' is what a perfectly "
                     "calibrated model would show on as many rows"),
                    ("PSI", f"population stability: below {PSI_WATCH:g} stable, "
                     f"{PSI_WATCH:g}-{PSI_ACT:g} watch, {PSI_ACT:g} or more act"),
                ]
            )
        )  # fmt: skip

    def left_out(self) -> None:
        self.add("<h2>Not in this card</h2>")
        self.para(
            "On a synthetic economy the models can also be compared with the true risk of "
            "every entity (the price of privacy). That truth never enters the lab, so this "
            "card cannot show it; the comparison is measured and documented in the "
            "project's documentation."
        )

    def render(self) -> str:
        self.intro()
        self.summary()
        self.quality()
        self.training()
        indexes = list(dict.fromkeys(m.index for m in self.models))
        for index in indexes:
            self.index_header(index)
            for m in self.models:
                if m.index == index:
                    self.model(m)
        self.glossary()
        self.left_out()
        body = "\n".join(self.parts)
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{_e(self.title())}</title><style>{_STYLE}</style></head>"
            f"<body>\n{body}\n</body></html>\n"
        )


def render_card(
    trained: TrainedRound,
    *,
    models: Sequence[TrainedModel] | None = None,
    gates: QualityGates | None,
    overrides: Sequence[str] = (),
    release: ReleaseInfo | None = None,
) -> str:
    """The HTML model card of ``models`` (default: every model of ``trained``).

    ``gates`` are checked against each model and shown with the verdicts (``None``: a
    release made before gates existed); ``overrides`` are the manifest's
    ``quality_overrides``; ``release`` describes the release (``None`` for a round).
    """
    chosen = trained.models if models is None else tuple(models)
    return _Card(trained, chosen, gates, overrides, release).render()
