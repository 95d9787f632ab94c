"""The input matrix of a combiner: shared by the lab (training) and the register (combining).

A combiner ``combiner.<index>`` is one model over the preliminary indexes the bodies send
and the features of the ``direct``-mode sources the register holds. Its float32 input
columns are, in this order (:attr:`CombinerLayout.input_names`):

1. per preliminary source ``s``: ``s__<index>__log_odds``, the body's probability as
   log-odds clipped to ``±LOGIT_CLIP`` (:func:`log_odds`), NaN when ``s`` sent nothing
   for the entity;
2. per preliminary source: ``s__missing``, 1.0 when that log-odds is NaN;
3. the direct features, as the combiner's :class:`~sample_protocol.features.FeatureSpec`
   encodes them (``SOURCE__field``);
4. per direct source ``S``: ``S__missing``, 1.0 when none of ``S``'s feature columns has
   a value for the entity (:func:`present_rows`).

The lab builds this matrix on its joined training table (columns ``SOURCE__field``); the
register builds it on one table per direct source, row-aligned with its entities (columns
named by field), so that fields of the same name in two sources never collide. Both call
:func:`combiner_matrix`, so the two constructions cannot drift apart.

A release bundle ships the combiner's input names in its manifest and the direct
features' spec in ``models/combiner.<index>.features.json``; :meth:`CombinerLayout.from_model`
rebuilds the layout from them and refuses names that do not follow the order above.

A source whose rows serve many blocks of entities (the register's feeds) can be encoded
once, whole (:meth:`EncodedSource.encode`), and each block's rows gathered from it
(:meth:`EncodedSource.gather`): the matrix is the same as from the block's table.

Example::

    layout = CombinerLayout.from_model("payment_discipline", entry.input_names, spec)
    X = combiner_matrix(layout, {"TAX": p_tax}, {"UTILITIES": utilities, "COURT": court})
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from .errors import ValidationError
from .features import SEPARATOR, FeatureColumn, FeatureSpec

__all__ = [
    "LOGIT_CLIP",
    "MISSING_SUFFIX",
    "CombinerLayout",
    "EncodedSource",
    "InputGroup",
    "combiner_matrix",
    "log_odds",
    "present_rows",
]

#: Log-odds are clipped to ``[-LOGIT_CLIP, LOGIT_CLIP]``.
LOGIT_CLIP = 10.0
#: Suffix of a missing-indicator input (``SOURCE__missing``).
MISSING_SUFFIX = f"{SEPARATOR}missing"

Matrix = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]
#: A cache of encoded feature columns (and presence masks) shared by several calls on the
#: same rows: keys are ``(source, FeatureColumn)``.
ColumnCache = MutableMapping[tuple[str, FeatureColumn], Any]


def log_odds(p: Any) -> Matrix:
    """Clipped log-odds of probabilities, as float32; NaN stays NaN.

    >>> log_odds([0.5, 0.0, float("nan")]).tolist()
    [0.0, -10.0, nan]
    """
    q = np.asarray(p, dtype=np.float64)
    eps = 1.0 / (1.0 + np.exp(LOGIT_CLIP))
    q = np.clip(q, eps, 1.0 - eps)
    return np.asarray(np.log(q) - np.log1p(-q), dtype=np.float32)


def _column_values(table: pa.Table, col: FeatureColumn) -> pa.ChunkedArray | None:
    names = table.column_names
    for name in (col.name, col.field):
        if name in names:
            return table[name]
    return None


def present_rows(table: pa.Table, spec: FeatureSpec) -> Mask:
    """Rows where at least one of ``spec``'s columns is not null (the entity is in the
    source); a column absent from ``table`` counts as null everywhere."""
    present = np.zeros(table.num_rows, dtype=bool)
    for col in spec.columns:
        values = _column_values(table, col)
        if values is not None:
            present |= np.asarray(values.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    return present


@dataclass(frozen=True, slots=True)
class InputGroup:
    """The inputs of one source in a combiner: what is blanked to leave the source out.

    ``columns`` are the positions of its values (one log-odds, or its feature columns) and
    ``missing`` the position of its missing indicator.
    """

    source: str
    preliminary: bool
    columns: tuple[int, ...]
    missing: int


@dataclass(frozen=True, slots=True)
class CombinerLayout:
    """Which inputs the combiner of ``index`` takes, in order (see the module notes)."""

    index: str
    preliminary_sources: tuple[str, ...]
    direct_spec: FeatureSpec
    direct_sources: tuple[str, ...]

    @property
    def input_names(self) -> tuple[str, ...]:
        return (
            *(f"{s}{SEPARATOR}{self.index}{SEPARATOR}log_odds" for s in self.preliminary_sources),
            *(f"{s}{MISSING_SUFFIX}" for s in self.preliminary_sources),
            *self.direct_spec.names,
            *(f"{s}{MISSING_SUFFIX}" for s in self.direct_sources),
        )

    @property
    def n_inputs(self) -> int:
        return 2 * len(self.preliminary_sources) + len(self.direct_spec) + len(self.direct_sources)

    def source_spec(self, source: str) -> FeatureSpec:
        """The direct features of one source."""
        return FeatureSpec(columns=tuple(c for c in self.direct_spec.columns if c.source == source))

    def groups(self) -> tuple[InputGroup, ...]:
        """One group per source: preliminary sources first, then direct ones."""
        k = len(self.preliminary_sources)
        out = [
            InputGroup(source=s, preliminary=True, columns=(j,), missing=k + j)
            for j, s in enumerate(self.preliminary_sources)
        ]
        start = 2 * k
        end = start + len(self.direct_spec)
        for j, s in enumerate(self.direct_sources):
            cols = tuple(start + i for i, c in enumerate(self.direct_spec.columns) if c.source == s)
            out.append(InputGroup(source=s, preliminary=False, columns=cols, missing=end + j))
        return tuple(out)

    @classmethod
    def from_model(
        cls, index: str, input_names: tuple[str, ...] | list[str], direct_spec: FeatureSpec
    ) -> CombinerLayout:
        """The layout of a shipped combiner: its manifest input names and features spec.

        Raises :class:`ValidationError` (code ``combiner_layout``) when the names are not
        exactly the order the module notes describe.
        """
        names = tuple(input_names)
        suffix = f"{SEPARATOR}{index}{SEPARATOR}log_odds"
        prelim = []
        for name in names:
            if not name.endswith(suffix):
                break
            prelim.append(name[: -len(suffix)])
        sources = tuple(direct_spec.sources)
        layout = cls(
            index=index,
            preliminary_sources=tuple(prelim),
            direct_spec=direct_spec,
            direct_sources=sources,
        )
        if layout.input_names != names:
            first = next(
                (
                    i
                    for i, (a, b) in enumerate(zip(layout.input_names, names, strict=False))
                    if a != b
                ),
                min(len(names), len(layout.input_names)),
            )
            found = names[first] if first < len(names) else "end of the list"
            wanted = (
                layout.input_names[first] if first < len(layout.input_names) else "no more inputs"
            )
            raise ValidationError(
                f"combiner {index!r}: input {first}: expected {wanted!r} (preliminary log-odds, "
                f"their missing flags, the features spec, the direct sources' missing flags), "
                f"found {found!r}",
                code="combiner_layout",
            )
        return layout


def _encoded(
    table: pa.Table, source: str, col: FeatureColumn, cache: ColumnCache | None
) -> Matrix | None:
    key = (source, col)
    if cache is not None and key in cache:
        hit: Matrix | None = cache[key]
        return hit
    values = _column_values(table, col)
    out = None if values is None else FeatureSpec(columns=(col,)).transform(table)[:, 0]
    if cache is not None:
        cache[key] = out
    return out


def _present(table: pa.Table, source: str, col: FeatureColumn, cache: ColumnCache | None) -> Mask:
    key = (f"{source}{MISSING_SUFFIX}", col)
    if cache is not None and key in cache:
        hit: Mask = cache[key]
        return hit
    values = _column_values(table, col)
    if values is None:
        out = np.zeros(table.num_rows, dtype=bool)
    else:
        out = np.asarray(values.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if cache is not None:
        cache[key] = out
    return out


@dataclass(frozen=True, slots=True)
class EncodedSource:
    """One direct source's feature columns, encoded: per column its float32 values (None
    when the table lacks the column) and where it has a value (``num_rows`` rows)."""

    num_rows: int
    columns: Mapping[FeatureColumn, tuple[Matrix | None, Mask]]

    @classmethod
    def encode(cls, table: pa.Table, columns: Any) -> EncodedSource:
        """Encode ``columns`` (FeatureColumns of one source) of ``table``. Each column's
        value for a row with no value (null) is kept too, as row ``num_rows``, so that
        :meth:`gather` gives rows the table does not have exactly that."""
        out: dict[FeatureColumn, tuple[Matrix | None, Mask]] = {}
        n = table.num_rows
        for col in columns:
            values = _column_values(table, col)
            if values is None:
                out[col] = (None, np.zeros(n + 1, dtype=bool))
                continue
            padded = pa.chunked_array([*values.chunks, pa.nulls(1, type=values.type)])
            one = pa.table({col.field: padded})
            encoded = np.ascontiguousarray(FeatureSpec(columns=(col,)).transform(one)[:, 0])
            valid = np.asarray(padded.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
            out[col] = (encoded, valid)
        return cls(n, out)

    def gather(self, rows: npt.NDArray[np.int64]) -> EncodedSource:
        """The source at ``rows`` (row numbers of this source; -1: the entity has no row,
        which reads as a row of nulls)."""
        at = np.where(rows < 0, self.num_rows, rows)
        return EncodedSource(
            int(at.shape[0]),
            {
                col: (None if values is None else values[at], valid[at])
                for col, (values, valid) in self.columns.items()
            },
        )


def combiner_matrix(
    layout: CombinerLayout,
    preliminary: Mapping[str, Any],
    direct: pa.Table | Mapping[str, pa.Table | EncodedSource],
    *,
    n_rows: int | None = None,
    cache: ColumnCache | None = None,
) -> Matrix:
    """The float32 input matrix ``[n, layout.n_inputs]``.

    ``preliminary[source]`` is the probability per row (NaN, ``None`` or an absent key =
    missing). ``direct`` is one table holding every direct source's columns (``SOURCE__field``
    or ``field``), or a mapping source → its own row-aligned table or
    :class:`EncodedSource` (a source absent from the mapping is missing in every row).
    ``n_rows`` is required when neither gives it. With ``cache`` (a dict), encoded columns
    of tables are reused by later calls on the same rows.
    """
    tables: Mapping[str, pa.Table | EncodedSource] | None = (
        None if isinstance(direct, pa.Table) else direct
    )
    if n_rows is None:
        if isinstance(direct, pa.Table):
            n_rows = direct.num_rows
        elif tables:
            n_rows = next(iter(tables.values())).num_rows
        else:
            raise ValueError("combiner_matrix: n_rows is required without a direct table")
    n = int(n_rows)
    X = np.full((n, layout.n_inputs), np.nan, dtype=np.float32)
    k = len(layout.preliminary_sources)
    for j, s in enumerate(layout.preliminary_sources):
        p = preliminary.get(s)
        if p is not None:
            X[:, j] = log_odds(p)
        X[:, k + j] = np.isnan(X[:, j])
    start = 2 * k
    end = start + len(layout.direct_spec)
    absent = {s: np.ones(n, dtype=bool) for s in layout.direct_sources}
    for i, col in enumerate(layout.direct_spec.columns):
        table = direct if isinstance(direct, pa.Table) else (tables or {}).get(col.source)
        if table is None:
            continue
        if table.num_rows != n:
            raise ValidationError(
                f"combiner {layout.index!r}: direct table of {col.source}: expected {n} rows, "
                f"found {table.num_rows}",
                code="combiner_rows",
            )
        if isinstance(table, EncodedSource):
            values, present = table.columns[col]
        else:
            values = _encoded(table, col.source, col, cache)
            present = _present(table, col.source, col, cache)
        if values is not None:
            X[:, start + i] = values
        if col.source in absent:
            absent[col.source] &= ~present
    for j, s in enumerate(layout.direct_sources):
        X[:, end + j] = absent[s]
    return X
