"""The lab's exceptions: every one is a :class:`LabError`."""

from __future__ import annotations

from sample_protocol.errors import ProtocolError

__all__ = ["LabError"]


class LabError(ProtocolError, ValueError):
    """Base of every error raised by ``nce_model_lab``."""

    code = "lab_error"
