"""Model matrices from the lab's joined training table (one source's columns at a time).

The encoding itself (:class:`~sample_protocol.features.FeatureSpec`) lives in
``sample_protocol.features``, so that a body replays it inside its perimeter with numpy
and pyarrow only. This module adds what only the lab needs: the training targets, the
columns of one source, and a training table built straight from a synthetic economy
(for tests and the price-of-privacy study, without running a sample round).

>>> from sample_protocol.synthetic import generate_economy
>>> table, truth = economy_training_table(generate_economy(500, seed=1))
>>> table.num_rows, "TAX__staff_count" in table.column_names, sorted(truth)[0]
(500, True, 'business_reputation')
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from sample_protocol.catalogue import SourceSpec
from sample_protocol.features import FeatureSpec, concat_specs, fit_source_features
from sample_protocol.synthetic import Economy

from ..errors import LabError
from ..training_table import KEY, OUTCOME_PREFIX, SOURCE_SEPARATOR

__all__ = [
    "MIN_OBSERVED",
    "economy_training_table",
    "fit_features",
    "outcome",
    "source_columns",
]


def source_columns(table: pa.Table, source: str) -> tuple[str, ...]:
    """The columns of ``table`` that belong to ``source`` (``SOURCE__field``)."""
    prefix = f"{source}{SOURCE_SEPARATOR}"
    return tuple(c for c in table.column_names if c.startswith(prefix))


#: A field observed in fewer training rows than this is no feature. Besides teaching
#: nothing, a field seen in a handful of rows can be missing from every row of a
#: calibration fold, and histogram gradient boosting cannot bin a column with no value.
#: With 20 observed rows, the chance that all fall in one held-out fifth is 5 x 0.2^20.
MIN_OBSERVED = 20


def fit_features(
    table: pa.Table,
    sources: Iterable[SourceSpec],
    *,
    min_share: float = 0.01,
    min_observed: int = MIN_OBSERVED,
) -> FeatureSpec:
    """One spec over the model fields of ``sources`` observed in ``table``, source by source."""
    return concat_specs(
        fit_source_features(table, s, min_share=min_share, min_observed=min_observed)
        for s in sources
    )


def outcome(table: pa.Table, index: str) -> npt.NDArray[np.int8]:
    """The 0/1 target ``outcome_<index>`` of every row.

    Raises :class:`LabError` (``no_outcome``) when the column is absent or has nulls:
    a target cannot be imputed.
    """
    name = f"{OUTCOME_PREFIX}{index}"
    if name not in table.column_names:
        raise LabError(
            f"training table: expected an outcome column {name!r}, found none (outcomes: "
            f"{', '.join(c for c in table.column_names if c.startswith(OUTCOME_PREFIX))})",
            code="no_outcome",
        )
    column = table[name]
    if column.null_count:
        raise LabError(
            f"training table column {name!r}: expected a 0/1 outcome in every row, found "
            f"{column.null_count} null(s)",
            code="no_outcome",
        )
    return np.asarray(column.cast(pa.int8()).to_numpy(zero_copy_only=False), dtype=np.int8)


def economy_training_table(
    economy: Economy,
) -> tuple[pa.Table, dict[str, npt.NDArray[np.float64]]]:
    """The training table a complete sample round of the whole ``economy`` would give
    (without depersonalisation), and the true probability per index, row-aligned.

    Every source table is left-joined on ``bin``, columns prefixed ``SOURCE__``, the
    ``outcome_<index>`` columns added, ``bin`` replaced by a fake random ID ``rid``.
    """
    outcomes = economy.observed_outcomes()
    joined = outcomes
    for code, source in economy.sources.items():
        renamed = source.rename_columns(
            [c if c == "bin" else f"{code}{SOURCE_SEPARATOR}{c}" for c in source.column_names]
        )
        joined = joined.join(renamed, "bin", join_type="left outer", use_threads=False)
    order = pc.index_in(outcomes["bin"], value_set=joined["bin"])
    joined = joined.take(order)  # entity order, whatever the join did
    truth: dict[str, npt.NDArray[np.float64]] = {}
    for index in economy.summary.oracle_auc:
        part = economy.truth_for(index)
        at = pc.index_in(outcomes["bin"], value_set=part["bin"])
        truth[index] = np.asarray(
            part["true_probability"].take(at).to_numpy(zero_copy_only=False), dtype=np.float64
        )
    rid = pa.array([f"R{i:09d}" for i in range(joined.num_rows)], pa.string())
    keep = [c for c in joined.column_names if c != "bin"]
    return joined.select(keep).add_column(0, KEY, rid), truth
