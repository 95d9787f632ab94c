"""The lab's exceptions: every one is a :class:`LabError`."""

from __future__ import annotations

from sample_protocol.errors import ProtocolError

__all__ = ["LabError", "SampleRefused"]


class LabError(ProtocolError, ValueError):
    """Base of every error raised by ``nce_model_lab``."""

    code = "lab_error"


class SampleRefused(LabError):
    """A sample (or a request it names) failed a check; nothing of it was stored.

    ``code`` says which check (``sample_replayed``, ``sample_identifier_leak``, ...).
    """

    code = "sample_refused"
    exit_code = 3
