"""The model card's plots: one PNG per model, drawn with matplotlib's Agg canvas.

:func:`model_figure` draws four panels from a model's recorded held-out evaluation
(nothing is recomputed): the ROC curve, the calibration plot (observed against predicted
rate per bin, the diagonal being perfect calibration), the distribution of the published
value 1-99 for entities with and without the outcome (with the category cut-offs), and
each category's share and observed outcome rate. The figure is built on a
:class:`matplotlib.figure.Figure` with its own Agg canvas: no pyplot, no global state, no
display needed. The PNG carries no timestamp, so the same evaluation gives the same bytes
with the same matplotlib; a figure takes about 0.3 s, so the last :data:`CACHE_SIZE`
figures are kept (keyed by the SHA-256 of the model's canonical JSON) for a process that
renders the same model twice. matplotlib is imported on first use only.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

from sample_protocol.scores import CATEGORIES

from .trained import TrainedModel

__all__ = ["CACHE_SIZE", "DPI", "model_figure"]

#: Resolution of the PNG (dots per inch; the figure is 9 x 6.4 inches).
DPI = 80
#: How many rendered figures are kept.
CACHE_SIZE = 64

_cache: dict[str, bytes] = {}

_NEG, _POS = "#4c72b0", "#c44e52"
_CATEGORY_COLOURS = {"low": "#55a868", "medium": "#dd8452", "high": "#c44e52"}


def _empty(ax: Any, title: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.text(0.5, 0.5, "not recorded\n(train the round again)", ha="center", va="center")
    ax.set_xticks([])
    ax.set_yticks([])


def _roc(ax: Any, model: TrainedModel) -> None:
    ev = model.evaluation
    title = f"ROC curve (AUC {ev.auc:.3f})"
    if not ev.roc:
        _empty(ax, title)
        return
    ax.plot([p.fpr for p in ev.roc], [p.tpr for p in ev.roc], color=_POS, lw=1.6, label="model")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="false positive rate", ylabel="true positive rate")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)


def _calibration(ax: Any, model: TrainedModel) -> None:
    ev = model.evaluation
    bins = ev.calibration
    top = max([b.mean_predicted for b in bins] + [b.observed_rate for b in bins] + [0.01])
    top = min(1.0, top * 1.1)
    ax.plot([0, top], [0, top], color="grey", lw=0.8, ls="--", label="perfect")
    ax.plot(
        [b.mean_predicted for b in bins],
        [b.observed_rate for b in bins],
        marker="o",
        color=_NEG,
        lw=1.2,
        label="bins of held-out rows",
    )
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="mean predicted probability")
    ax.set_ylabel("observed outcome rate")
    ax.set_title(f"Calibration (ECE {ev.ece:.3f})", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)


def _distribution(ax: Any, model: TrainedModel) -> None:
    ev = model.evaluation
    title = "Published value by outcome"
    hist = ev.value_histogram
    if not hist:
        _empty(ax, title)
        return
    neg = max(1, sum(b.negatives for b in hist))
    pos = max(1, sum(b.positives for b in hist))
    mids = [(b.lower + b.upper) / 2.0 for b in hist]
    width = [(b.upper - b.lower + 1) * 0.42 for b in hist]
    left = [m - w / 2 for m, w in zip(mids, width, strict=True)]
    right = [m + w / 2 for m, w in zip(mids, width, strict=True)]
    ax.bar(left, [b.negatives / neg for b in hist], width=width, color=_NEG, label="no outcome")
    ax.bar(right, [b.positives / pos for b in hist], width=width, color=_POS, label="outcome")
    for name, cut in (("medium", model.cutoffs.medium_from), ("high", model.cutoffs.high_from)):
        ax.axvline(model.scale.value(cut), color=_CATEGORY_COLOURS[name], lw=1.2, ls=":")
    ax.set(xlim=(model.scale.min_value - 1, model.scale.max_value + 1), xlabel="value (1-99)")
    ax.set_ylabel("share of the group")
    ax.set_title(title + "\n(dotted lines: category cut-offs)", fontsize=10)
    ax.legend(loc="upper right", fontsize=8)


def _categories(ax: Any, model: TrainedModel) -> None:
    rates = model.evaluation.category_rates
    title = "Categories on held-out rows"
    if not rates:
        _empty(ax, title)
        return
    xs = list(range(len(CATEGORIES)))
    share = [rates[c].share if c in rates else 0.0 for c in CATEGORIES]
    observed = [(rates[c].observed_rate or 0.0) if c in rates else 0.0 for c in CATEGORIES]
    colours = [_CATEGORY_COLOURS[c] for c in CATEGORIES]
    ax.bar([x - 0.2 for x in xs], share, width=0.4, color=colours, alpha=0.45, label="share")
    ax.bar([x + 0.2 for x in xs], observed, width=0.4, color=colours, label="outcome rate")
    ax.set_xticks(xs, list(CATEGORIES))
    ax.set(ylim=(0, 1), ylabel="share / observed rate")
    ax.set_title(title + "\n(light: share, dark: outcome rate)", fontsize=10)


def model_figure(model: TrainedModel) -> bytes:
    """PNG of the four panels of ``model`` (ROC, calibration, value distribution, categories)."""
    key = hashlib.sha256(model.canonical_bytes()).hexdigest()
    png = _cache.get(key)
    if png is None:
        png = _draw(model)
        if len(_cache) >= CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = png
    return png


def _draw(model: TrainedModel) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 6.4), dpi=DPI)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.08, top=0.88, wspace=0.22, hspace=0.5)
    FigureCanvasAgg(fig)
    (a, b), (c, d) = fig.subplots(2, 2)
    _roc(a, model)
    _calibration(b, model)
    _distribution(c, model)
    _categories(d, model)
    fig.suptitle(f"{model.name} ({model.family}) on held-out test rows", fontsize=11)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()
