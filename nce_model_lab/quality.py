"""Quality gates: the held-out quality a model needs before the lab may release it.

Every model of a round (each preliminary model and each combiner) is checked on its
held-out *test* rows, with the measures ``nce-lab train`` recorded in ``evaluation.json``
(:class:`~nce_model_lab.evaluate.Evaluation`). A release is refused
(:class:`QualityRefused`, exit 3, nothing written) when any model fails a gate of
:class:`QualityGates`:

* ``auc < min_auc`` (default **0.60**, a Gini of 0.20): below it a score ranks entities
  barely better than chance, and publishing it as a risk index would mislead.
* ``auc > max_auc`` (default **0.98**): real risk outcomes are never predicted that
  well from administrative data; an AUC this high almost always means the outcome
  leaked into the features (a column written after the fact, a copy of the target).
* ``ece > max_ece`` (default **0.05**): the probabilities must mean what they say,
  because the categories come from probability cut-offs and the register combines
  probabilities. 0.05 is five percentage points between predicted and observed rates,
  on average over ten equal-size bins.

How the defaults were chosen (``nce-lab demo``, measured November 2026): with 4,000 test
rows (the default 50,000-entity demo) every model has AUC 0.65-0.83 and ECE 0.007-0.018;
with 2,000 test rows (20,000 entities) AUC 0.62-0.85 and ECE 0.005-0.022; with 1,000
(10,000 entities) AUC 0.65-0.85 and ECE 0.008-0.044. The ECE a *perfectly* calibrated
model shows from sampling alone (:func:`~nce_model_lab.evaluate.ece_noise_floor`) is
0.01-0.03 on 1,000-4,000 test rows, so 0.05 leaves room for noise and still catches a
model that is off. On 200 test rows (a 2,000-entity demo: 20 rows a bin) noise alone
gives about 0.05 and single-source AUCs fall to 0.55: a sample that small cannot show a
model's quality, and its release has to be forced.

The gates use the point estimates, so that a reader can check a verdict from the card.
When the data scientist decides to release anyway, ``force`` (``--force REASON``)
turns each failure into an override note (:func:`override_notes`) that the release
writes into every affected bundle's signed manifest (``quality_overrides``) and into the
lab's audit log. The gates themselves are written into each manifest's ``training``
notes (``quality_gates``).

Example::

    failures = check_models(trained.models, QualityGates())
    enforce(failures, force=None)          # raises QualityRefused if any
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sample_protocol.records_base import check_types, fail
from sample_protocol.serde import Record

from .errors import LabError
from .evaluate import ece_noise_floor
from .labdir import LabDir
from .trained import TrainedModel, TrainedRound

__all__ = [
    "DEFAULT_GATES",
    "MAX_REASON_CHARS",
    "GateFailure",
    "QualityGates",
    "QualityRefused",
    "check_model",
    "check_models",
    "check_reason",
    "enforce",
    "gate_release",
    "override_notes",
    "shorten",
]

#: Longest ``--force`` reason (an override note must fit the manifest's 200 characters).
MAX_REASON_CHARS = 100

_NOTE_CHARS = 200  # ReleaseManifest.quality_overrides entries are names: 200 at most
_LABELS = {
    "min_auc": ("AUC", "below the floor", "--min-auc"),
    "max_auc": ("AUC", "above the ceiling", "--max-auc"),
    "max_ece": ("ECE", "above the ceiling", "--max-ece"),
}


@dataclass(frozen=True, slots=True)
class QualityGates(Record):
    """The limits a model's held-out AUC and ECE must respect (see the module docstring).

    >>> QualityGates().min_auc, QualityGates().max_auc, QualityGates().max_ece
    (0.6, 0.98, 0.05)
    """

    min_auc: float = 0.60
    max_auc: float = 0.98
    max_ece: float = 0.05

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        where = self.kind()
        check_types(self, where)
        if not 0.0 <= self.min_auc < self.max_auc <= 1.0:
            fail(
                f"{where}.min_auc/max_auc",
                "0 <= min_auc < max_auc <= 1",
                f"{self.min_auc}, {self.max_auc}",
                code="bad_option",
            )
        if not 0.0 < self.max_ece <= 1.0:
            fail(f"{where}.max_ece", "0 < max_ece <= 1", self.max_ece, code="bad_option")


#: The default gates.
DEFAULT_GATES = QualityGates()


@dataclass(frozen=True, slots=True)
class GateFailure(Record):
    """One model failing one gate: ``gate`` is ``min_auc``, ``max_auc`` or ``max_ece``.

    ``n`` and ``positives`` are its held-out test rows; ``noise`` is the ECE a perfectly
    calibrated model would show on them (for the ECE gate; 0 otherwise).
    """

    model: str
    gate: str
    value: float
    limit: float
    n: int
    positives: int
    noise: float = 0.0

    def describe(self) -> str:
        """One line naming the model, the measure, its value and the limit."""
        metric, how, option = _LABELS[self.gate]
        text = (
            f"{self.model}: {metric} {self.value:.3f} {how} {self.limit:.3f} ({option}; "
            f"{self.n:,} test rows, {self.positives:,} positive"
        )
        if self.gate == "max_ece":
            text += f"; sampling noise alone gives about {self.noise:.3f}"
        return text + ")"

    def note(self, reason: str) -> str:
        """The override note written into the manifest (at most 200 characters).

        A reason too long for the rest of the note is cut (ending in ``...``); the audit
        log keeps it whole.
        """
        metric, how, _ = _LABELS[self.gate]
        head = f"{self.model}: {metric} {self.value:.3f} {how} {self.limit:.3f}; forced: "
        room = _NOTE_CHARS - len(head)
        if len(reason) > room:
            reason = reason[: max(0, room - 3)] + "..."
        return (head + reason)[:_NOTE_CHARS]


class QualityRefused(LabError):
    """A release refused because models failed quality gates; nothing was written.

    ``failures`` lists every failing (model, gate).
    """

    code = "quality_gate_failed"
    exit_code = 3

    def __init__(self, message: str, failures: Sequence[GateFailure]) -> None:
        super().__init__(message)
        self.failures = tuple(failures)


def check_model(model: TrainedModel, gates: QualityGates) -> tuple[GateFailure, ...]:
    """Every gate ``model`` fails on its held-out evaluation (empty when it passes)."""
    ev = model.evaluation
    out: list[GateFailure] = []

    def failed(gate: str, value: float, limit: float, noise: float = 0.0) -> None:
        out.append(GateFailure(model.name, gate, value, limit, ev.n, ev.positives, noise))

    if ev.auc < gates.min_auc:
        failed("min_auc", ev.auc, gates.min_auc)
    if ev.auc > gates.max_auc:
        failed("max_auc", ev.auc, gates.max_auc)
    if ev.ece > gates.max_ece:
        failed("max_ece", ev.ece, gates.max_ece, ece_noise_floor(ev.calibration))
    return tuple(out)


def check_models(models: Iterable[TrainedModel], gates: QualityGates) -> tuple[GateFailure, ...]:
    """Every gate failure of ``models``, in model order."""
    return tuple(f for m in models for f in check_model(m, gates))


def check_reason(reason: str) -> str:
    """A ``--force`` reason, stripped; refuses (``bad_option``) an empty, long or odd one."""
    text = reason.strip()
    if not text or len(text) > MAX_REASON_CHARS or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise LabError(
            f"--force: expected a reason of 1 to {MAX_REASON_CHARS} printable characters, "
            f"found {len(text)} characters{' with control characters' if text else ''}",
            code="bad_option",
        )
    return text


def enforce(failures: Sequence[GateFailure], *, force: str | None) -> None:
    """Raise :class:`QualityRefused` naming every failure, unless ``force`` is given."""
    if not failures or force is not None:
        return
    lines = "\n".join(f"  {f.describe()}" for f in failures)
    models = len({f.model for f in failures})
    raise QualityRefused(
        f"release refused: {models} model(s) failed the quality gates on their held-out "
        f"test rows:\n{lines}\nImprove the models or the sample, change the limits, or "
        "release anyway with --force REASON (recorded in the manifests and the audit log).",
        failures,
    )


def gate_release(
    lab: LabDir,
    actor: str,
    trained: TrainedRound,
    gates: QualityGates,
    *,
    force: str | None,
) -> tuple[GateFailure, ...]:
    """Check every model of ``trained``; refuse, and audit the refusal, unless forced.

    Returns the failures (empty when every model passes, or the ones ``force`` overrides).
    A refusal appends ``release_refused`` (outcome ``refused``) to the lab's audit log as
    ``actor``, then raises :class:`QualityRefused`.
    """
    failures = check_models(trained.models, gates)
    try:
        enforce(failures, force=force)
    except QualityRefused as exc:
        lab.audit(actor).append(
            "release_refused",
            trained.request_id,
            "refused",
            details={
                "code": exc.code,
                "quality_gates": gates.to_json(),
                "failures": shorten("; ".join(f.describe() for f in failures)),
            },
        )
        raise
    return failures


def shorten(text: str, limit: int = 3000) -> str:
    """``text`` cut to ``limit`` characters (ending in ``...`` when cut), for the audit log."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def override_notes(failures: Iterable[GateFailure], reason: str) -> tuple[str, ...]:
    """The manifest's ``quality_overrides`` for ``failures`` forced with ``reason``."""
    return tuple(dict.fromkeys(f.note(reason) for f in failures))
