"""Population drift: reference distributions fitted by the lab, PSI computed by a body.

The lab fits, for every model, a :class:`ReferenceDistribution` on its training rows
(:func:`fit_reference`) and ships it in the signed bundle as
``models/<model name>.reference.json`` (:func:`reference_file`). A body later compares
its own population with it (:func:`drift_report`, or :class:`DriftAccumulator` batch by
batch, so memory does not grow with the input). Only aggregates ever leave this module:
bin edges, shares, PSI values and row counts, never a row.

Binning, per input column and for the model's output probability:

- the interior bin edges come from the training deciles (:data:`MAX_BINS` bins at most).
  Each decile is an observed value ``q`` (``inverted_cdf``: at least that share of rows is
  ``<= q``); its edge is the midpoint between ``q`` and the next larger observed value, so
  no training value lies on an edge (a value equal up to rounding, say the same
  probability from scikit-learn and onnxruntime, cannot flip bin). A decile equal to the
  largest value gives no edge, repeated deciles one edge: a column with three distinct
  values has three bins, a constant one a single bin;
- bin ``i`` holds the values ``edges[i-1] <= x < edges[i]`` (the first from minus
  infinity, the last to plus infinity; infinities fall in the end bins);
- NaN (a missing value) is counted apart: ``missing_share``. The bin shares and the
  missing share of a distribution add up to 1.

The population stability index compares the expected (reference) and actual shares over
the bins and the missing cell::

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i)

with every share floored at :data:`EPSILON` first (a bin empty on one side contributes
a large but finite amount). Each term is >= 0 (both factors have the same sign), so PSI
is >= 0, and it is exactly 0 for identical shares. PSI above :data:`WATCH` (0.10) is
flagged ``watch``, above :data:`ACT` (0.25) ``act``.

>>> import numpy as np
>>> X = np.arange(100, dtype=np.float32).reshape(50, 2)
>>> ref = fit_reference("TAX.payment_discipline", X, ("a", "b"), np.linspace(0, 1, 50))
>>> len(ref.features[0].edges), ref.features[0].shares[0]
(9, 0.1)
>>> report = drift_report(ref, X, np.linspace(0, 1, 50))
>>> report.flag.value, report.score.psi
('stable', 0.0)
>>> ReferenceDistribution.from_json(ref.to_json()) == ref
True
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .errors import ValidationError
from .serde import Record

__all__ = [
    "ACT",
    "EPSILON",
    "MAX_BINS",
    "REFERENCE_SUFFIX",
    "SCORE_NAME",
    "WATCH",
    "BinnedDistribution",
    "DriftAccumulator",
    "DriftFlag",
    "DriftReport",
    "FeatureDrift",
    "ReferenceDistribution",
    "drift_flag",
    "drift_report",
    "fit_distribution",
    "fit_reference",
    "psi",
    "reference_file",
]

#: PSI above this is flagged ``watch``.
WATCH = 0.10
#: PSI above this is flagged ``act``.
ACT = 0.25
#: Floor applied to every share before the PSI formula (empty bins stay finite).
EPSILON = 1e-4
#: Most bins per distribution (from the training deciles).
MAX_BINS = 10
#: Name of the output-probability distribution in a reference and a report.
SCORE_NAME = "probability"
#: Suffix of a model's reference file (``models/<model name>.reference.json`` in a bundle).
REFERENCE_SUFFIX = ".reference.json"

_DECILES = np.arange(1, MAX_BINS, dtype=np.float64) / MAX_BINS
_SUM_TOLERANCE = 1e-9

Counts = npt.NDArray[np.int64]
Shares = npt.NDArray[np.float64]


def reference_file(model_name: str) -> str:
    """The bundle path of a model's reference: ``models/<model name>.reference.json``.

    >>> reference_file("TAX.payment_discipline")
    'models/TAX.payment_discipline.reference.json'
    """
    return f"models/{model_name}{REFERENCE_SUFFIX}"


class DriftFlag(enum.StrEnum):
    """How far a population moved: ``stable`` (PSI <= 0.10), ``watch``, ``act`` (> 0.25)."""

    STABLE = "stable"
    WATCH = "watch"
    ACT = "act"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {DriftFlag.STABLE: 0, DriftFlag.WATCH: 1, DriftFlag.ACT: 2}


def drift_flag(value: float) -> DriftFlag:
    """The flag of a PSI value.

    >>> [drift_flag(v).value for v in (0.10, 0.11, 0.25, 0.26)]
    ['stable', 'watch', 'watch', 'act']
    """
    if value > ACT:
        return DriftFlag.ACT
    if value > WATCH:
        return DriftFlag.WATCH
    return DriftFlag.STABLE


def _worst(flags: Sequence[DriftFlag]) -> DriftFlag:
    return max(flags, key=lambda f: f.rank, default=DriftFlag.STABLE)


def _check_share(where: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValidationError(
            f"{where}: expected a share in [0, 1], found {value!r}", code="bad_distribution"
        )


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class BinnedDistribution(Record):
    """One column's binned distribution: ``len(edges) + 1`` bin shares and the missing share.

    ``edges`` are the interior bin edges, strictly increasing; ``shares[i]`` is the share
    of rows in bin ``i`` (see the module docstring), ``missing_share`` that of NaN rows.
    """

    name: str
    edges: tuple[float, ...]
    shares: tuple[float, ...]
    missing_share: float

    def validate(self) -> None:
        where = f"distribution {self.name!r}"
        if not self.name:
            raise ValidationError(f"{where}: expected a name, found none", code="bad_distribution")
        if len(self.edges) > MAX_BINS - 1:
            raise ValidationError(
                f"{where}: expected at most {MAX_BINS - 1} edges, found {len(self.edges)}",
                code="bad_distribution",
            )
        if not all(math.isfinite(e) for e in self.edges) or any(
            b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)
        ):
            raise ValidationError(
                f"{where}: expected strictly increasing finite edges, found {list(self.edges)}",
                code="bad_distribution",
            )
        if len(self.shares) != len(self.edges) + 1:
            raise ValidationError(
                f"{where}: expected {len(self.edges) + 1} shares (one per bin), "
                f"found {len(self.shares)}",
                code="bad_distribution",
            )
        for i, share in enumerate(self.shares):
            _check_share(f"{where}: shares[{i}]", share)
        _check_share(f"{where}: missing_share", self.missing_share)
        total = math.fsum(self.shares) + self.missing_share
        if abs(total - 1.0) > _SUM_TOLERANCE:
            raise ValidationError(
                f"{where}: expected the shares and the missing share to add up to 1, "
                f"found {total!r}",
                code="bad_distribution",
            )

    @property
    def cells(self) -> int:
        """Number of cells PSI runs over: the bins and the missing cell."""
        return len(self.edges) + 2

    def expected(self) -> Shares:
        """The bin shares followed by the missing share (what :func:`psi` compares)."""
        return np.array((*self.shares, self.missing_share), dtype=np.float64)

    def count(self, values: npt.ArrayLike) -> Counts:
        """Rows of ``values`` per cell: one count per bin, then the NaN count."""
        x = np.asarray(values, dtype=np.float64).reshape(-1)
        missing = np.isnan(x)
        index = np.searchsorted(np.asarray(self.edges, dtype=np.float64), x[~missing], "right")
        counts = np.bincount(index, minlength=len(self.edges) + 1).astype(np.int64)
        return np.append(counts, np.int64(missing.sum()))


@dataclass(frozen=True, slots=True)
class ReferenceDistribution(Record):
    """A model's reference: each input column's distribution and its probability's.

    ``features`` follow the model's input columns, in order; ``rows`` is the number of
    training rows it was fitted on.
    """

    model: str
    rows: int
    features: tuple[BinnedDistribution, ...]
    score: BinnedDistribution

    def validate(self) -> None:
        where = f"reference of model {self.model!r}"
        if not self.model:
            raise ValidationError(
                "reference: expected a model name, found none", code="bad_reference"
            )
        if isinstance(self.rows, bool) or not isinstance(self.rows, int) or self.rows < 1:
            raise ValidationError(
                f"{where}: rows: expected at least 1, found {self.rows!r}", code="bad_reference"
            )
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValidationError(
                f"{where}: expected each feature once, found {names}", code="bad_reference"
            )
        for dist in (*self.features, self.score):
            dist.validate()

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The input column names, in model order."""
        return tuple(f.name for f in self.features)


@dataclass(frozen=True, slots=True)
class FeatureDrift(Record):
    """The drift of one column: PSI against the reference, its flag, the actual missing share."""

    name: str
    psi: float
    flag: DriftFlag
    missing_share: float

    def validate(self) -> None:
        if not (math.isfinite(self.psi) and self.psi >= 0.0):
            raise ValidationError(
                f"drift of {self.name!r}: expected PSI >= 0, found {self.psi!r}",
                code="bad_drift_report",
            )
        _check_share(f"drift of {self.name!r}: missing_share", self.missing_share)


@dataclass(frozen=True, slots=True)
class DriftReport(Record):
    """The drift of one model's population: per input column and for its probability.

    Aggregates only: PSI values, flags, missing shares and the row count.
    """

    model: str
    rows: int
    features: tuple[FeatureDrift, ...]
    score: FeatureDrift

    def validate(self) -> None:
        if self.rows < 1:
            raise ValidationError(
                f"drift report of {self.model!r}: rows: expected at least 1, found {self.rows}",
                code="bad_drift_report",
            )
        for item in (*self.features, self.score):
            item.validate()

    @property
    def flag(self) -> DriftFlag:
        """The worst flag of the model: its probability's or any input column's."""
        return _worst([self.score.flag, *(f.flag for f in self.features)])

    @property
    def max_feature_psi(self) -> float:
        """The largest input-column PSI (0 for a model without inputs)."""
        return max((f.psi for f in self.features), default=0.0)


# --------------------------------------------------------------------------- fitting


def fit_distribution(name: str, values: npt.ArrayLike) -> BinnedDistribution:
    """Bin ``values`` (NaN = missing) at their deciles; see the module docstring.

    >>> d = fit_distribution("x", [0.0, 0.0, 1.0, 2.0, float("nan")])
    >>> d.edges, d.shares, d.missing_share
    ((0.5, 1.5), (0.4, 0.2, 0.2), 0.2)
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValidationError(
            f"distribution {name!r}: expected at least one row, found none",
            code="bad_distribution",
        )
    finite = x[np.isfinite(x)]
    edges: tuple[float, ...] = ()
    if finite.size:
        distinct = np.unique(finite)
        deciles = np.quantile(finite, _DECILES, method="inverted_cdf")
        at = np.unique(np.searchsorted(distinct, deciles))
        at = at[at < distinct.size - 1]
        # np.unique: midpoints of adjacent float64 values may round onto each other
        edges = tuple(float(e) for e in np.unique((distinct[at] + distinct[at + 1]) / 2.0))
    probe = BinnedDistribution(name, edges, (1.0,) * (len(edges) + 1), 0.0)
    counts = probe.count(x)
    shares = counts / float(x.size)
    dist = BinnedDistribution(
        name=name,
        edges=edges,
        shares=tuple(float(s) for s in shares[:-1]),
        missing_share=float(shares[-1]),
    )
    dist.validate()
    return dist


def _as_matrix(X: npt.ArrayLike, k: int, where: str) -> npt.NDArray[np.float64]:
    m = np.asarray(X)
    if m.ndim != 2 or m.shape[1] != k:
        raise ValidationError(
            f"{where}: expected a matrix [n, {k}], found shape {list(m.shape)}",
            code="bad_drift_input",
        )
    if not np.issubdtype(m.dtype, np.floating):
        raise ValidationError(
            f"{where}: expected floating-point rows, found {m.dtype}", code="bad_drift_input"
        )
    return m.astype(np.float64, copy=False)


def _as_vector(p: npt.ArrayLike, n: int, where: str) -> npt.NDArray[np.float64]:
    v = np.asarray(p, dtype=np.float64)
    if v.ndim != 1 or v.shape[0] != n:
        raise ValidationError(
            f"{where}: expected one probability per row ({n}), found shape {list(v.shape)}",
            code="bad_drift_input",
        )
    return v


def fit_reference(
    model_name: str,
    X: npt.ArrayLike,
    names: Sequence[str],
    probability: npt.ArrayLike,
) -> ReferenceDistribution:
    """The reference of a model: ``X`` its training rows (float32 ``[n, k]``, NaN =
    missing), ``names`` its ``k`` input columns, ``probability`` its class-1 probability
    on those rows."""
    names = tuple(names)
    where = f"reference of model {model_name!r}"
    matrix = _as_matrix(X, len(names), where)
    p = _as_vector(probability, matrix.shape[0], where)
    features = tuple(fit_distribution(n, matrix[:, j]) for j, n in enumerate(names))
    ref = ReferenceDistribution(
        model=model_name,
        rows=int(matrix.shape[0]),
        features=features,
        score=fit_distribution(SCORE_NAME, p),
    )
    ref.validate()
    return ref


# --------------------------------------------------------------------------- PSI


def psi(expected_shares: npt.ArrayLike, actual_shares: npt.ArrayLike) -> float:
    """Population stability index of ``actual_shares`` against ``expected_shares``.

    Both are shares over the same cells (each in [0, 1]). Every share is floored at
    :data:`EPSILON` before ``sum((a - e) * ln(a / e))``; the result is >= 0, and 0 for
    identical shares.

    >>> psi([0.5, 0.5], [0.5, 0.5])
    0.0
    >>> round(psi([0.5, 0.5], [0.9, 0.1]), 4)
    0.8789
    """
    e = np.asarray(expected_shares, dtype=np.float64).reshape(-1)
    a = np.asarray(actual_shares, dtype=np.float64).reshape(-1)
    if e.shape != a.shape or e.size == 0:
        raise ValidationError(
            f"psi: expected two share vectors of the same non-zero length, found "
            f"{e.size} and {a.size}",
            code="bad_psi_input",
        )
    for label, v in (("expected", e), ("actual", a)):
        if not (np.isfinite(v).all() and (v >= 0.0).all() and (v <= 1.0).all()):
            raise ValidationError(
                f"psi: {label} shares: expected values in [0, 1], found {v.tolist()[:12]}",
                code="bad_psi_input",
            )
    e = np.maximum(e, EPSILON)
    a = np.maximum(a, EPSILON)
    terms = (a - e) * np.log(a / e)
    return float(max(math.fsum(terms.tolist()), 0.0))


# --------------------------------------------------------------------------- reports


class DriftAccumulator:
    """Bin counts of a population fed batch by batch; :meth:`report` gives its drift.

    Holds one count per cell per column, never a row::

        acc = DriftAccumulator(reference)
        for X, p in batches:
            acc.add(X, p)
        report = acc.report()
    """

    def __init__(self, reference: ReferenceDistribution) -> None:
        self.reference = reference
        self.rows = 0
        self._features = [np.zeros(d.cells, dtype=np.int64) for d in reference.features]
        self._score = np.zeros(reference.score.cells, dtype=np.int64)

    def __repr__(self) -> str:
        return f"DriftAccumulator(model={self.reference.model!r}, rows={self.rows})"

    def add(self, X: npt.ArrayLike, probability: npt.ArrayLike) -> None:
        """Count rows ``X`` (``[n, k]``, the model's input columns) and their probabilities."""
        where = f"drift of model {self.reference.model!r}"
        matrix = _as_matrix(X, len(self.reference.features), where)
        p = _as_vector(probability, matrix.shape[0], where)
        for j, dist in enumerate(self.reference.features):
            self._features[j] += dist.count(matrix[:, j])
        self._score += self.reference.score.count(p)
        self.rows += int(matrix.shape[0])

    def report(self) -> DriftReport:
        """The drift so far; refuses (``drift_no_rows``) when no row was added."""
        if self.rows == 0:
            raise ValidationError(
                f"drift of model {self.reference.model!r}: expected at least one row, found none",
                code="drift_no_rows",
            )
        features = tuple(
            _drift(d, c, self.rows)
            for d, c in zip(self.reference.features, self._features, strict=True)
        )
        report = DriftReport(
            model=self.reference.model,
            rows=self.rows,
            features=features,
            score=_drift(self.reference.score, self._score, self.rows),
        )
        report.validate()
        return report


def _drift(dist: BinnedDistribution, counts: Counts, rows: int) -> FeatureDrift:
    actual = counts / float(rows)
    value = psi(dist.expected(), actual)
    return FeatureDrift(
        name=dist.name, psi=value, flag=drift_flag(value), missing_share=float(actual[-1])
    )


def drift_report(
    reference: ReferenceDistribution, X: npt.ArrayLike, probability: npt.ArrayLike
) -> DriftReport:
    """The drift of the population ``X`` (with the model's ``probability``) from ``reference``."""
    acc = DriftAccumulator(reference)
    acc.add(X, probability)
    return acc.report()
