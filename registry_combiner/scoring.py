"""One index for a block of entities: probability, value, category, coverage, overrides, reasons.

Everything is vectorised over the block (numpy and one onnxruntime call per model run).

* **probability**: the combiner's calibrated output on the input matrix of
  :func:`sample_protocol.combiner_inputs.combiner_matrix`;
* **value** (1-99) by the index's :class:`~sample_protocol.scores.ScoreScale` and
  **category** by its cut-offs, both from the signed manifest;
* **coverage**: per source the combiner expects, whether it delivered for the entity
  (``present`` / ``missing`` bit masks); the entity is **partial** when a preliminary source
  is missing for it, or a direct source's feed was never ingested (an entity absent from an
  ingested feed, e.g. one without court cases, is a fact, not a gap);
* **overrides**: an entity on a state list of :data:`OVERRIDE_RULES` is ``high`` on that
  list's indexes whatever the model says (its value is raised to at least the value of the
  high cut-off; the model's probability is kept as it is);
* **reasons**: the contribution of a source is the change in log-odds when the combiner
  sees that source as missing (its inputs NaN and its missing flag set, which is how the
  combiner was trained to see a source that did not deliver). The up to 4 largest positive
  contributions (over :data:`MIN_CONTRIBUTION`) are the reason codes, after the override
  lists that applied. This costs one extra model run per source present for the entity,
  so by default (``reasons="elevated"``) only medium and high indexes are explained, the
  way adverse-action reasons are given; ``"all"`` explains every index (about 2.5 times
  the cost of ``"elevated"`` and 6 times that of ``"none"`` on the sample release).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from sample_protocol.combiner_inputs import (
    ColumnCache,
    CombinerLayout,
    EncodedSource,
    combiner_matrix,
)
from sample_protocol.onnx_gate import GatedModel
from sample_protocol.records_release import CategoryCutoffs
from sample_protocol.scores import ScoreScale, to_values

from .store import FLAG_OVERRIDDEN, FLAG_PARTIAL, OVERRIDE_LISTS

__all__ = [
    "MAX_REASONS",
    "MIN_CONTRIBUTION",
    "OVERRIDE_RULES",
    "REASON_MODES",
    "Block",
    "IndexModel",
    "IndexScores",
    "score_index",
]

#: Which indexes each override list forces to ``high``.
OVERRIDE_RULES: Mapping[str, tuple[str, ...]] = {
    "bankrupt": ("financial_stability", "payment_discipline", "business_reputation"),
    "pseudo_enterprise": ("conscientiousness", "business_reputation"),
    "invalid_registration": ("conscientiousness", "business_reputation"),
}
#: Reason codes per index and entity.
MAX_REASONS = 4
#: Smallest log-odds contribution that makes a reason.
MIN_CONTRIBUTION = 0.01
#: ``elevated`` (default): explain medium and high indexes; ``all``: every index; ``none``.
REASON_MODES: tuple[str, ...] = ("all", "elevated", "none")

Floats = npt.NDArray[np.float64]
_EPS = 1e-7


def _logit(p: Floats) -> Floats:
    q = np.clip(p, _EPS, 1.0 - _EPS)
    out: Floats = np.log(q) - np.log1p(-q)
    return out


@dataclass(frozen=True, slots=True)
class IndexModel:
    """A verified combiner with what the register publishes from it.

    ``group_codes[g]``: the reason code id of ``layout.groups()[g]``; ``override_codes[i]``:
    that of list ``OVERRIDE_LISTS[i]`` (0 when the list does not apply to this index).
    """

    index: str
    layout: CombinerLayout
    model: GatedModel
    cutoffs: CategoryCutoffs
    scale: ScoreScale
    group_codes: tuple[int, ...]
    override_codes: tuple[int, ...]

    @property
    def override_bits(self) -> int:
        return sum(1 << i for i, code in enumerate(self.override_codes) if code)

    @property
    def high_value(self) -> int:
        return self.scale.value(self.cutoffs.high_from)


@dataclass(frozen=True, slots=True)
class Block:
    """The inputs of a block of entities (row-aligned).

    ``preliminary[(source, index)]``: probabilities, NaN where the body sent nothing;
    ``direct[source]``: the source's feed rows (nulls where the entity has none); ``lists``:
    bit ``i`` set when the entity is on list ``OVERRIDE_LISTS[i]``.
    """

    ids: npt.NDArray[np.int64]
    preliminary: Mapping[tuple[str, str], Floats]
    direct: Mapping[str, pa.Table | EncodedSource]
    lists: npt.NDArray[np.int8]

    @property
    def size(self) -> int:
        return int(self.ids.shape[0])


@dataclass(frozen=True, slots=True)
class IndexScores:
    """One index's results for a block (arrays of the block's length; reasons ``[n, 4]``)."""

    probability: Floats
    value: npt.NDArray[np.int8]
    category: npt.NDArray[np.int8]
    flags: npt.NDArray[np.int8]
    overrides: npt.NDArray[np.int8]
    present: npt.NDArray[np.int32]
    missing: npt.NDArray[np.int32]
    reasons: npt.NDArray[np.int16]


def _contributions(
    model: IndexModel, X: npt.NDArray[np.float32], p: Floats, present: npt.NDArray[np.bool_],
    explain: npt.NDArray[np.bool_],
) -> Floats:  # fmt: skip
    groups = model.layout.groups()
    D = np.full((X.shape[0], len(groups)), -np.inf)
    base = _logit(p)
    for g, group in enumerate(groups):
        rows = np.flatnonzero(explain & present[:, g])
        if rows.size == 0:
            continue
        Xo = X[rows]
        Xo[:, list(group.columns)] = np.nan
        Xo[:, group.missing] = 1.0
        D[rows, g] = base[rows] - _logit(model.model.run(Xo))
    return D


def _reason_codes(
    model: IndexModel, D: Floats, overrides: npt.NDArray[np.int8]
) -> npt.NDArray[np.int16]:
    n = D.shape[0]
    k = min(MAX_REASONS, D.shape[1])
    if k:
        order = np.argsort(-D, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(D, order, axis=1)
        codes = np.asarray(model.group_codes, dtype=np.int16)[order]
        codes[~(top > MIN_CONTRIBUTION)] = 0
    else:
        codes = np.zeros((n, 0), dtype=np.int16)
    lists = np.zeros((n, len(OVERRIDE_LISTS)), dtype=np.int16)
    for i, code in enumerate(model.override_codes):
        if code:
            lists[(overrides & (1 << i)) != 0, i] = code
    both = np.concatenate([lists, codes], axis=1)
    order = np.argsort(both == 0, axis=1, kind="stable")  # non-zero first, order kept
    out = np.zeros((n, MAX_REASONS), dtype=np.int16)
    packed = np.take_along_axis(both, order, axis=1)[:, :MAX_REASONS]
    out[:, : packed.shape[1]] = packed
    return out


def score_index(
    model: IndexModel,
    block: Block,
    *,
    bits: Mapping[str, int],
    feeds_missing: frozenset[str],
    reasons: str = "elevated",
    cache: ColumnCache | None = None,
) -> IndexScores:
    """Score one index for ``block`` (see the module notes)."""
    layout = model.layout
    n = block.size
    prelim = {
        s: block.preliminary[(s, model.index)]
        for s in layout.preliminary_sources
        if (s, model.index) in block.preliminary
    }
    X = combiner_matrix(layout, prelim, block.direct, n_rows=n, cache=cache)
    p = model.model.run(X) if n else np.zeros(0)
    p = np.clip(p, 0.0, 1.0)
    value = to_values(p, model.scale).astype(np.int8)
    category = np.where(
        p >= model.cutoffs.high_from, 2, np.where(p >= model.cutoffs.medium_from, 1, 0)
    ).astype(np.int8)
    overrides = (block.lists & model.override_bits).astype(np.int8)
    forced = overrides != 0
    category[forced] = 2
    value[forced] = np.maximum(value[forced], np.int8(model.high_value))

    groups = layout.groups()
    present = np.zeros((n, len(groups)), dtype=bool)
    present_bits = np.zeros(n, dtype=np.int32)
    missing_bits = np.zeros(n, dtype=np.int32)
    partial = np.zeros(n, dtype=bool)
    for g, group in enumerate(groups):
        here = X[:, group.missing] == 0.0
        present[:, g] = here
        bit = np.int32(1 << bits[group.source])
        present_bits |= np.where(here, bit, 0).astype(np.int32)
        missing_bits |= np.where(here, 0, bit).astype(np.int32)
        if group.preliminary:
            partial |= ~here
        elif group.source in feeds_missing:
            partial[:] = True
    flags = (np.where(partial, FLAG_PARTIAL, 0) | np.where(forced, FLAG_OVERRIDDEN, 0)).astype(
        np.int8
    )
    if reasons == "none":
        explain = np.zeros(n, dtype=bool)
    elif reasons == "elevated":
        explain = category >= 1
    else:
        explain = np.ones(n, dtype=bool)
    D = _contributions(model, X, p, present, explain)
    return IndexScores(
        probability=p,
        value=value,
        category=category,
        flags=flags,
        overrides=overrides,
        present=present_bits,
        missing=missing_bits,
        reasons=_reason_codes(model, D, overrides),
    )
