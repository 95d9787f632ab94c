"""The runtime's exceptions.

:class:`RuntimeRefused` means a check said no (exit 3); :class:`RuntimeInputError` means
the operator's input is wrong (exit 2). Both derive from the protocol's base error.
"""

from __future__ import annotations

from sample_protocol.errors import ProtocolError

__all__ = ["RuntimeInputError", "RuntimeRefused"]


class RuntimeRefused(ProtocolError, ValueError):
    """A verification, gate or policy check refused the artifact or the run."""

    code = "refused"
    exit_code = 3


class RuntimeInputError(ProtocolError, ValueError):
    """The operator's input (a file, a column, an option) is not what was expected."""

    code = "bad_input"
