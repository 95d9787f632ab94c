"""From a calibrated probability to the published value (1-99) and category.

Every model outputs a calibrated probability of the bad outcome. Two things are
published from it (DESIGN.md section 7):

* the **value**, an integer 1-99, higher is riskier, by *scorecard scaling*
  (:class:`ScoreScale`): the value grows by ``points_to_double_odds`` (PDO) points
  each time the odds ``p / (1 - p)`` double, and equals ``base_value`` at
  ``base_probability``::

      value = base_value + PDO / ln 2 * (logit(p) - logit(base_probability))

  rounded half up to an integer and clipped to ``[min_value, max_value]``. The value is
  monotone non-decreasing in ``p``, so it keeps the ranking of the probabilities, but
  because it is an integer, nearby probabilities share a value (ties). The AUC computed
  from the value is therefore slightly lower than the AUC of the probability; a scale
  fitted with :func:`fit_scale` on the index's validation probabilities spreads the bulk
  of the population over the whole 1-99 range, which keeps the loss under 0.005 on
  realistic score distributions (the tests check this).
* the **category** (``low`` / ``medium`` / ``high``) from the probability cut-offs of a
  :class:`~sample_protocol.records.CategoryCutoffs` written in the signed manifest, never
  from the model file (:func:`categorise`). The lab derives cut-offs with
  :func:`derive_cutoffs` by a documented, configurable :class:`CutoffRule`.

Example::

    >>> import numpy as np
    >>> scale = ScoreScale(base_value=50, base_probability=0.10, points_to_double_odds=8)
    >>> to_values(np.array([0.0, 0.05, 0.10, 0.20, 1.0]), scale).tolist()
    [1, 41, 50, 59, 99]
    >>> cut = CategoryCutoffs("payment_discipline", medium_from=0.1, high_from=0.3)
    >>> categorise(np.array([0.05, 0.1, 0.5]), cut).tolist()
    ['low', 'medium', 'high']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import ValidationError
from .records_base import check_index, check_types, fail
from .records_release import CategoryCutoffs
from .serde import Record

__all__ = [
    "CATEGORIES",
    "CUTOFF_METHODS",
    "DEFAULT_SCALE",
    "CutoffRule",
    "ScoreScale",
    "categorise",
    "check_probabilities",
    "derive_cutoffs",
    "fit_scale",
    "to_values",
]

#: The categories, from least to most risky.
CATEGORIES = ("low", "medium", "high")
#: The cut-off rules :func:`derive_cutoffs` knows.
CUTOFF_METHODS = ("odds", "quantile")

#: Error code of a probability array that is not usable (NaN, outside [0, 1], empty).
CODE_BAD_PROBABILITY = "bad_probability"

# Probabilities are clipped to [_EPS, 1 - _EPS] before the logit, so that 0 and 1 give
# finite numbers (they end at min_value and max_value anyway).
_EPS = 1e-12
_LN2 = math.log(2.0)


def check_probabilities(p: Any, where: str = "probabilities") -> npt.NDArray[np.float64]:
    """Return ``p`` as a float64 array, refusing NaN and values outside ``[0, 1]``.

    The message names ``where``, how many rows are bad and the first one::

        >>> check_probabilities([0.1, float("nan")], "scores.p")
        Traceback (most recent call last):
        ...
        sample_protocol.errors.ValidationError: scores.p: expected probabilities in [0, 1], \
found NaN in 1 row(s) (first: row 1)
    """
    try:
        arr = np.asarray(p, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(
            f"{where}: expected an array of probabilities, found {type(p).__name__}",
            code=CODE_BAD_PROBABILITY,
        ) from None
    flat = arr.reshape(-1)
    nan = np.isnan(flat)
    if nan.any():
        first = int(np.flatnonzero(nan)[0])
        raise ValidationError(
            f"{where}: expected probabilities in [0, 1], found NaN in {int(nan.sum())} "
            f"row(s) (first: row {first})",
            code=CODE_BAD_PROBABILITY,
        )
    bad = (flat < 0.0) | (flat > 1.0)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValidationError(
            f"{where}: expected probabilities in [0, 1], found {int(bad.sum())} row(s) "
            f"outside (first: row {first}, value {float(flat[first])!r})",
            code=CODE_BAD_PROBABILITY,
        )
    return arr


def _logit(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    q = np.clip(p, _EPS, 1.0 - _EPS)
    out: npt.NDArray[np.float64] = np.log(q) - np.log1p(-q)
    return out


@dataclass(frozen=True, slots=True)
class ScoreScale(Record):
    """Scorecard scaling from a probability to the published integer value.

    ``value = base_value + points_to_double_odds / ln 2 * (logit(p) - logit(base_probability))``,
    rounded half up and clipped to ``[min_value, max_value]`` (1-99). Higher is riskier.
    Fit one per index with :func:`fit_scale`; write it next to the index's cut-offs.

    >>> ScoreScale(50, 0.10, 8).value(0.10), ScoreScale(50, 0.10, 8).value(0.1818)
    (50, 58)
    """

    base_value: float = 50.0
    base_probability: float = 0.10
    points_to_double_odds: float = 8.0
    min_value: int = 1
    max_value: int = 99

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        where = self.kind()
        check_types(self, where)
        if not 1 <= self.min_value < self.max_value <= 99:
            fail(
                f"{where}.min_value/max_value",
                "1 <= min_value < max_value <= 99",
                f"{self.min_value}..{self.max_value}",
            )
        if not self.min_value <= self.base_value <= self.max_value:
            fail(
                f"{where}.base_value",
                f"a value in [{self.min_value}, {self.max_value}]",
                self.base_value,
            )
        if not 0.0 < self.base_probability < 1.0:
            fail(
                f"{where}.base_probability",
                "a probability strictly between 0 and 1",
                self.base_probability,
            )
        if not self.points_to_double_odds > 0.0:
            fail(
                f"{where}.points_to_double_odds",
                "a positive number of points",
                self.points_to_double_odds,
            )

    @property
    def factor(self) -> float:
        """Points per unit of log-odds: ``points_to_double_odds / ln 2``."""
        return self.points_to_double_odds / _LN2

    def value(self, probability: float) -> int:
        """The published value of one probability (see :func:`to_values`)."""
        return int(to_values(np.array([probability]), self)[0])


#: A scale for an index without a fitted one: 50 at a 10% risk, 8 points to double the odds
#: (1 at p ≈ 0.0016, 99 at p ≈ 0.89).
DEFAULT_SCALE = ScoreScale()


def to_values(p: Any, scale: ScoreScale = DEFAULT_SCALE) -> npt.NDArray[np.int16]:
    """Published values (int16, ``scale.min_value``..``scale.max_value``) of probabilities.

    Vectorised, any shape; monotone non-decreasing in ``p``. ``p = 0`` gives
    ``min_value`` and ``p = 1`` gives ``max_value``. NaN or a value outside ``[0, 1]`` raises
    :class:`~sample_protocol.errors.ValidationError` (code ``bad_probability``).
    """
    arr = check_probabilities(p)
    raw = scale.base_value + scale.factor * (
        _logit(arr) - math.log(scale.base_probability / (1.0 - scale.base_probability))
    )
    rounded = np.floor(raw + 0.5)
    out: npt.NDArray[np.int16] = np.clip(rounded, scale.min_value, scale.max_value).astype(np.int16)
    return out


def fit_scale(
    probabilities: Any,
    *,
    base_value: float = 50.0,
    quantiles: tuple[float, float] = (0.01, 0.99),
    target_span: tuple[float, float] = (2.0, 98.0),
    min_value: int = 1,
    max_value: int = 99,
) -> ScoreScale:
    """Fit a :class:`ScoreScale` to an index's validation probabilities.

    Rule: take the logits of the ``quantiles`` (default the 1st and 99th percentiles) of
    the probabilities. ``base_probability`` is the probability at the middle of those two
    logits (close to the median risk when the logits are roughly symmetric), and PDO is
    the largest that maps both percentiles inside ``target_span`` (default 2..98) with
    ``base_value`` at ``base_probability``. So about 98% of the population spreads over
    the whole range, which keeps the AUC of the value within 0.005 of the AUC of the
    probability; the 1% tails share the extreme values.

    Raises :class:`~sample_protocol.errors.ValidationError` (code ``cannot_fit_scale``)
    when the probabilities do not vary between the two percentiles.

    >>> import numpy as np
    >>> p = np.linspace(0.01, 0.5, 1000)
    >>> to_values(np.quantile(p, [0.0, 0.01, 0.99, 1.0]), fit_scale(p)).tolist()
    [1, 2, 98, 98]
    """
    arr = check_probabilities(probabilities).reshape(-1)
    if arr.size < 2:
        raise ValidationError(
            f"fit_scale: expected at least 2 probabilities, found {arr.size}",
            code="cannot_fit_scale",
        )
    q_lo, q_hi = quantiles
    if not 0.0 <= q_lo < q_hi <= 1.0:
        fail("fit_scale.quantiles", "0 <= low < high <= 1", quantiles)
    lo_value, hi_value = target_span
    if not min_value <= lo_value < base_value < hi_value <= max_value:
        fail(
            "fit_scale.target_span",
            f"min_value ({min_value}) <= low < base_value ({base_value}) < high "
            f"<= max_value ({max_value})",
            target_span,
        )
    logit_lo, logit_hi = (float(v) for v in _logit(np.quantile(arr, [q_lo, q_hi])))
    if not logit_hi - logit_lo > 1e-9:
        raise ValidationError(
            f"fit_scale: expected probabilities that vary, found the {q_lo:g} and {q_hi:g} "
            f"quantiles both at {float(np.quantile(arr, q_lo))!r}",
            code="cannot_fit_scale",
        )
    middle = (logit_lo + logit_hi) / 2.0
    half = (logit_hi - logit_lo) / 2.0
    factor = min(base_value - lo_value, hi_value - base_value) / half
    base_probability = 1.0 / (1.0 + math.exp(-middle))
    if not 0.0 < base_probability < 1.0:  # logits beyond ±36 round to 0 or 1
        fail("fit_scale", "probabilities whose middle is not 0 or 1", base_probability)
    return ScoreScale(
        base_value=float(base_value),
        base_probability=base_probability,
        points_to_double_odds=factor * _LN2,
        min_value=min_value,
        max_value=max_value,
    )


def categorise(p: Any, cutoffs: CategoryCutoffs) -> npt.NDArray[np.str_]:
    """Categories (``"low"``, ``"medium"``, ``"high"``) of probabilities, vectorised.

    Same rule as :meth:`CategoryCutoffs.category`: ``p >= high_from`` is high,
    ``p >= medium_from`` medium, otherwise low. Same shape as ``p``.
    """
    arr = check_probabilities(p)
    out: npt.NDArray[np.str_] = np.where(
        arr >= cutoffs.high_from,
        "high",
        np.where(arr >= cutoffs.medium_from, "medium", "low"),
    )
    return out


@dataclass(frozen=True, slots=True)
class CutoffRule(Record):
    """How :func:`derive_cutoffs` places the category cut-offs of an index.

    * ``method="quantile"`` (the default): from the validation population's
      probabilities, ``high_from`` is the ``1 - high_share`` quantile and ``medium_from`` the
      ``1 - high_share - medium_share`` quantile. The defaults (``medium_share=0.20``,
      ``high_share=0.10``) put the cut-offs at the 70th and 90th percentiles: about 10% of
      entities are high, 20% medium, 70% low, whatever the base rate.
    * ``method="odds"``: relative to the base rate ``r`` (the outcome rate; by default the
      mean validation probability, which equals it for calibrated probabilities):
      ``medium_from`` is the probability whose odds are ``medium_odds_ratio`` times the odds
      of ``r`` (default 1: the base rate itself) and ``high_from`` the one at
      ``high_odds_ratio`` times (default 3: about 3× the base rate when it is small). Shares
      then follow the risk: a riskier population has more high entities.

    Record the rule next to the cut-offs (e.g. in the release's training notes) so that a
    reader can tell how they were chosen.
    """

    method: str = "quantile"
    medium_share: float = 0.20
    high_share: float = 0.10
    medium_odds_ratio: float = 1.0
    high_odds_ratio: float = 3.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        where = self.kind()
        check_types(self, where)
        if self.method not in CUTOFF_METHODS:
            fail(
                f"{where}.method",
                f"one of {', '.join(CUTOFF_METHODS)}",
                self.method,
                code="unknown_rule",
            )
        shares = (self.medium_share, self.high_share)
        if not (min(shares) > 0.0 and sum(shares) < 1.0):
            fail(
                f"{where}.medium_share/high_share",
                "positive shares adding up to less than 1",
                f"{self.medium_share}, {self.high_share}",
            )
        if not 0.0 < self.medium_odds_ratio < self.high_odds_ratio:
            fail(
                f"{where}.medium_odds_ratio/high_odds_ratio",
                "0 < medium_odds_ratio < high_odds_ratio",
                f"{self.medium_odds_ratio}, {self.high_odds_ratio}",
            )


def _odds_to_probability(odds: float) -> float:
    return odds / (1.0 + odds)


def derive_cutoffs(
    index: str,
    probabilities: Any,
    rule: CutoffRule | str = "quantile",
    *,
    base_rate: float | None = None,
) -> CategoryCutoffs:
    """Derive an index's category cut-offs from validation probabilities by ``rule``.

    ``rule`` is a :class:`CutoffRule` or the name of a method with its default settings
    (``"quantile"``, the default, or ``"odds"``); see :class:`CutoffRule` for both rules.
    ``base_rate`` is used by the odds rule only (default: the mean probability).

    With the quantile rule, when one tied probability spans both quantiles, ``high_from``
    moves to the next distinct probability above it (or, if none, ``medium_from`` to the
    next below). Raises :class:`~sample_protocol.errors.ValidationError` when the
    probabilities are not usable or too concentrated to separate three categories (fewer
    than two distinct values; code ``cannot_derive_cutoffs``).

    >>> import numpy as np
    >>> cut = derive_cutoffs("payment_discipline", np.linspace(0.0, 1.0, 1001))
    >>> round(cut.medium_from, 3), round(cut.high_from, 3)
    (0.7, 0.9)
    """
    check_index("derive_cutoffs.index", index)
    if isinstance(rule, str):
        rule = CutoffRule(method=rule)
    arr = check_probabilities(probabilities).reshape(-1)
    if arr.size == 0:
        fail(
            "derive_cutoffs.probabilities",
            "at least one probability",
            "none",
            code="cannot_derive_cutoffs",
        )
    if rule.method == "quantile":
        medium_q = 1.0 - rule.high_share - rule.medium_share
        high_q = 1.0 - rule.high_share
        medium_from = float(np.quantile(arr, medium_q, method="higher"))
        high_from = float(np.quantile(arr, high_q, method="higher"))
        how = f"the {medium_q:.0%} and {high_q:.0%} quantiles"
        if medium_from == high_from:
            # One tied probability spans both quantiles (a coarse model on a small
            # validation set): high starts at the next distinct probability above it,
            # or, if there is none, medium at the next one below.
            distinct = np.unique(arr)
            above, below = distinct[distinct > high_from], distinct[distinct < medium_from]
            if above.size:
                high_from = float(above[0])
            elif below.size:
                medium_from = float(below[-1])
    else:
        rate = float(arr.mean()) if base_rate is None else float(base_rate)
        if not 0.0 < rate < 1.0:
            fail(
                "derive_cutoffs.base_rate",
                "a rate strictly between 0 and 1",
                rate,
                code="cannot_derive_cutoffs",
            )
        odds = rate / (1.0 - rate)
        medium_from = _odds_to_probability(odds * rule.medium_odds_ratio)
        high_from = _odds_to_probability(odds * rule.high_odds_ratio)
        how = f"odds {rule.medium_odds_ratio:g}x and {rule.high_odds_ratio:g}x base rate {rate:g}"
    if not 0.0 < medium_from < high_from < 1.0:
        fail(
            f"derive_cutoffs({index!r})",
            f"cut-offs 0 < medium_from < high_from < 1 from {how}; the probabilities are "
            "too concentrated to separate three categories",
            f"medium_from={medium_from!r}, high_from={high_from!r}",
            code="cannot_derive_cutoffs",
        )
    cutoffs = CategoryCutoffs(index, medium_from=medium_from, high_from=high_from)
    cutoffs.validate()
    return cutoffs
