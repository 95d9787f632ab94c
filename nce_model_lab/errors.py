"""The lab's exceptions: every one is a :class:`LabError`."""

from __future__ import annotations

from sample_protocol.errors import ProtocolError

__all__ = ["LabError", "ModelInputError", "SampleRefused"]


class LabError(ProtocolError, ValueError):
    """Base of every error raised by ``nce_model_lab``."""

    code = "lab_error"


class SampleRefused(LabError):
    """A sample (or a request it names) failed a check; nothing of it was stored.

    ``code`` says which check (``sample_replayed``, ``sample_identifier_leak``, ...).
    """

    code = "sample_refused"
    exit_code = 3


class ModelInputError(LabError, TypeError):
    """A model was given data it cannot use: non-numeric columns, the wrong width, a bad target.

    Also a ``TypeError`` (non-numeric data is a type error), so code that catches either
    builtin, scikit-learn's estimator checks included, sees it. ``code`` says which problem
    (``non_numeric_input``, ``wrong_width``, ``not_binary_target``, ``bad_model_input``).
    """

    code = "bad_model_input"
