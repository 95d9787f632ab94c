"""Combiners: per index, one model over the preliminary indexes and the direct sources.

Inputs of the combiner of index ``i`` (in this order, see :attr:`Combiner.input_names`):

1. per preliminary model of ``i``: its probability as log-odds (clipped to ±
   :data:`LOGIT_CLIP`), NaN when the body sent nothing for the entity;
2. per preliminary model of ``i``: a missing indicator (1.0 when it is missing);
3. the features of every ``direct``-mode source that informs ``i`` (business reputation,
   the summary index, is informed by every source);
4. per direct source: a missing indicator (the entity has no row there).

Training uses the out-of-fold preliminary probabilities (never a model's predictions on
its own training rows) and **random source dropout**: for each preliminary source,
:data:`DROPOUT` of the rows have its log-odds blanked and its indicator set, so that the
combiner stays sound when a body has not delivered. Family and calibration as
:mod:`.selection` documents.

Example::

    fed = train_federated(table, seed=0)
    fed.predict_proba(table, missing_sources={"CUSTOMS"})["financial_stability"]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from sample_protocol.catalogue import Catalogue, Mode
from sample_protocol.combiner_inputs import LOGIT_CLIP, CombinerLayout, combiner_matrix, log_odds
from sample_protocol.features import FeatureSpec

from ..onnx_export import to_onnx
from ..scorecard import register_converters
from .features import fit_features, outcome
from .preliminary import PreliminarySet, present_rows, train_preliminary
from .selection import Selection, fit_calibrated, select_family, threads

__all__ = [
    "DROPOUT",
    "LOGIT_CLIP",
    "Combiner",
    "FederatedModel",
    "log_odds",
    "train_combiner",
    "train_federated",
]

#: Share of training rows whose preliminary index of a source is blanked (per source).
DROPOUT = 0.2
Floats = npt.NDArray[np.float64]
Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Combiner:
    """The combiner of one index (inputs in the module notes)."""

    index: str
    preliminary_sources: tuple[str, ...]
    direct_sources: tuple[str, ...]
    direct_spec: FeatureSpec
    model: Any
    selection: Selection

    @property
    def layout(self) -> CombinerLayout:
        """The order of the inputs, shared with the register (``sample_protocol``)."""
        return CombinerLayout(
            self.index, self.preliminary_sources, self.direct_spec, self.direct_sources
        )

    @property
    def input_names(self) -> tuple[str, ...]:
        return self.layout.input_names

    def matrix(self, table: pa.Table, preliminary: Mapping[str, Any]) -> Matrix:
        """The input matrix; ``preliminary[source]`` is the probability per row (NaN or
        an absent key = missing)."""
        return combiner_matrix(self.layout, preliminary, table)

    def predict_proba(self, table: pa.Table, preliminary: Mapping[str, Any]) -> Floats:
        X = self.matrix(table, preliminary)
        with threads(1):
            p = self.model.predict_proba(X)[:, 1]
        return np.asarray(p, dtype=np.float64)

    def to_onnx(self) -> bytes:
        extra = register_converters if self.selection.family == "scorecard" else None
        return to_onnx(self.model, len(self.input_names), extra_converters=extra)


def train_combiner(
    table: pa.Table,
    index: str,
    preliminary: Mapping[str, Floats],
    catalogue: Catalogue | None = None,
    *,
    seed: int = 0,
    dropout: float = DROPOUT,
) -> Combiner:
    """Train the combiner of ``index``; ``preliminary`` maps source → out-of-fold
    probability per row (NaN where missing)."""
    cat = catalogue or Catalogue.default()
    direct_sources = tuple(
        s for s in cat.sources_informing(index) if cat.mode(s.code) is Mode.DIRECT
    )
    direct_spec = fit_features(table, direct_sources)
    present = set(direct_spec.sources)
    combiner = Combiner(
        index=index,
        preliminary_sources=tuple(preliminary),
        direct_sources=tuple(s.code for s in direct_sources if s.code in present),
        direct_spec=direct_spec,
        model=None,
        selection=Selection(family="hgb", hgb_auc=0.0, scorecard_auc=0.0, n_validation=0),
    )
    rng = np.random.default_rng(seed)
    dropped: dict[str, Floats] = {}
    for s, p in preliminary.items():
        q = np.array(p, dtype=np.float64)
        q[rng.random(q.shape[0]) < dropout] = np.nan
        dropped[s] = q
    X = combiner.matrix(table, dropped)
    y = outcome(table, index)
    where = f"combiner {index}"
    selection = select_family(X, y, seed=seed, where=where)
    fit = fit_calibrated(selection.family, X, y, seed=seed, where=where)
    return Combiner(
        index=index,
        preliminary_sources=combiner.preliminary_sources,
        direct_sources=combiner.direct_sources,
        direct_spec=direct_spec,
        model=fit.model,
        selection=selection,
    )


@dataclass(frozen=True, slots=True)
class FederatedModel:
    """Preliminary models and one combiner per index: the federated scoring as a whole."""

    preliminary: PreliminarySet
    combiners: dict[str, Combiner]

    def preliminary_probabilities(
        self, table: pa.Table, index: str, missing_sources: Iterable[str] = ()
    ) -> dict[str, Floats]:
        """What the bodies would send for ``index``: per source the probability, NaN for
        an entity absent from the source; a source in ``missing_sources`` sends nothing."""
        gone = set(missing_sources)
        out: dict[str, Floats] = {}
        for model in self.preliminary.for_index(index):
            if model.source in gone:
                continue
            rows = present_rows(model_table := table, model.spec)
            if not rows.any():
                continue
            p = model.predict_proba(model_table)
            p[~rows] = np.nan
            out[model.source] = p
        return out

    def predict_proba(
        self, table: pa.Table, *, missing_sources: Iterable[str] = ()
    ) -> dict[str, Floats]:
        """Final probability per index and row, with ``missing_sources`` not delivered."""
        gone = tuple(missing_sources)
        return {
            index: combiner.predict_proba(table, self.preliminary_probabilities(table, index, gone))
            for index, combiner in self.combiners.items()
        }


def train_federated(
    table: pa.Table,
    catalogue: Catalogue | None = None,
    *,
    indexes: Iterable[str] | None = None,
    seed: int = 0,
    dropout: float = DROPOUT,
    n_threads: int = 1,
) -> FederatedModel:
    """Train every preliminary model, then every index's combiner on their out-of-fold output."""
    cat = catalogue or Catalogue.default()
    prelim = train_preliminary(table, cat, seed=seed, n_threads=n_threads)
    combiners: dict[str, Combiner] = {}
    with threads(n_threads):
        for index in tuple(indexes) if indexes is not None else cat.index_ids():
            oof = {s: p for (s, i), p in prelim.oof.items() if i == index}
            combiners[index] = train_combiner(table, index, oof, cat, seed=seed, dropout=dropout)
    return FederatedModel(preliminary=prelim, combiners=combiners)
