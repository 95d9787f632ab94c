"""Preliminary models: one per (source in ``preliminary`` mode, index it informs).

The law (paras 2, 14-19): a preliminary index is computed inside one body's perimeter
from that body's data only. So each model's :class:`~sample_protocol.features.FeatureSpec`
holds the columns of exactly one source contract, and :class:`PreliminaryModel` checks
that when it is built. Each model is trained on the rows present in its source (an
entity the body does not hold gets no preliminary index from it; the combiner sees it as
missing); within those rows none is dropped for a missing value. The family is chosen
and calibrated as :mod:`.selection` documents; the out-of-fold probabilities of every
training row are kept for the combiner.

Example::

    prelim = train_preliminary(table, seed=0)
    prelim.models[("TAX", "financial_stability")].predict_proba(table)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from sample_protocol.catalogue import Catalogue, SourceSpec
from sample_protocol.features import FeatureSpec

from ..errors import LabError
from ..onnx_export import to_onnx
from ..scorecard import register_converters
from .features import fit_features, outcome
from .selection import Selection, fit_calibrated, select_family, threads

__all__ = [
    "PreliminaryModel",
    "PreliminarySet",
    "present_rows",
    "train_preliminary",
]

Floats = npt.NDArray[np.float64]


def present_rows(
    table: pa.Table, spec: FeatureSpec, *, allow_missing: bool = True
) -> npt.NDArray[np.bool_]:
    """Rows where at least one of ``spec``'s columns is not null (the entity is in the source)."""
    present = np.zeros(table.num_rows, dtype=bool)
    names = table.column_names
    for col in spec.columns:
        for name in (col.name, col.field):
            if name in names:
                present |= np.asarray(table[name].is_valid().to_numpy(zero_copy_only=False))
                break
        else:
            if not allow_missing:
                raise LabError(f"table lacks column {col.name!r}", code="missing_feature_column")
    return present


@dataclass(frozen=True, slots=True)
class PreliminaryModel:
    """A calibrated model of one index from one source's columns only."""

    source: str
    index: str
    spec: FeatureSpec
    model: Any
    selection: Selection

    def __post_init__(self) -> None:
        foreign = sorted({c.source for c in self.spec.columns} - {self.source})
        if foreign or not self.spec.columns:
            raise LabError(
                f"preliminary model {self.source}/{self.index}: expected inputs from source "
                f"{self.source} only, found {', '.join(foreign) or 'no input column'}",
                code="preliminary_leakage",
            )

    @property
    def family(self) -> str:
        return self.selection.family

    def predict_proba(self, table: pa.Table) -> Floats:
        """Calibrated probability of the event per row (for every row, present or not)."""
        X = self.spec.transform(table)
        with threads(1):
            p = self.model.predict_proba(X)[:, 1]
        return np.asarray(p, dtype=np.float64)

    def to_onnx(self) -> bytes:
        """The ONNX model (float32 ``[None, len(spec)]`` in, ``label`` + ``probabilities`` out)."""
        extra = register_converters if self.family == "scorecard" else None
        return to_onnx(self.model, len(self.spec), extra_converters=extra)


@dataclass(frozen=True, slots=True)
class PreliminarySet:
    """Every preliminary model, their out-of-fold probabilities on the training rows
    (NaN where the entity is not in the source), and the models not trained, with why."""

    models: dict[tuple[str, str], PreliminaryModel]
    oof: dict[tuple[str, str], Floats]
    skipped: dict[tuple[str, str], str] = field(default_factory=dict)

    def for_index(self, index: str) -> tuple[PreliminaryModel, ...]:
        return tuple(m for (_, i), m in self.models.items() if i == index)


def train_preliminary(
    table: pa.Table,
    catalogue: Catalogue | None = None,
    *,
    sources: Iterable[SourceSpec] | None = None,
    seed: int = 0,
    n_threads: int = 1,
) -> PreliminarySet:
    """Train every (preliminary source, informed index) model on ``table``.

    A source with no column in the table, or too few events among its rows, is skipped
    and named in ``skipped``.
    """
    cat = catalogue or Catalogue.default()
    chosen = tuple(sources) if sources is not None else cat.preliminary_sources()
    models: dict[tuple[str, str], PreliminaryModel] = {}
    oof: dict[tuple[str, str], Floats] = {}
    skipped: dict[tuple[str, str], str] = {}
    with threads(n_threads):
        for source in chosen:
            spec = fit_features(table, [source])
            rows = present_rows(table, spec)
            for index in source.informs:
                key = (source.code, index)
                if not spec.columns or not rows.any():
                    skipped[key] = "no column of this source in the table"
                    continue
                sub = table.filter(pa.array(rows))
                X = spec.transform(sub)
                y = outcome(sub, index)
                where = f"preliminary model {source.code}/{index}"
                try:
                    selection = select_family(X, y, seed=seed, where=where)
                    fit = fit_calibrated(selection.family, X, y, seed=seed, where=where)
                except LabError as exc:
                    if exc.code != "bad_training_data":
                        raise
                    skipped[key] = str(exc)
                    continue
                models[key] = PreliminaryModel(source.code, index, spec, fit.model, selection)
                full = np.full(table.num_rows, np.nan)
                full[rows] = fit.oof_probability
                oof[key] = full
    return PreliminarySet(models=models, oof=oof, skipped=skipped)
