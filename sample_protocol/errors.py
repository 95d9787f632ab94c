"""The protocol's exceptions.

Every error raised by :mod:`sample_protocol` derives from :class:`ProtocolError`
and also from the builtin it refines, so callers may catch either. Each error has a
stable ``code`` string (tests assert it) and a message that says what was wrong,
what was expected, what was found and where.
"""

from __future__ import annotations

__all__ = [
    "AuditLogError",
    "CalendarError",
    "CatalogueError",
    "EnvelopeError",
    "IdentifierError",
    "KeyFileError",
    "ProtocolError",
    "SerdeError",
    "SignatureError",
    "TrustError",
    "ValidationError",
]


class ProtocolError(Exception):
    """Base of every error raised by ``sample_protocol``."""

    code: str = "protocol_error"
    #: Exit status a CLI uses for this error: 2 for bad input (a user mistake),
    #: 3 for a refusal (a verification or a gate said no). See ``cli_support``.
    exit_code: int = 2

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class ValidationError(ProtocolError, ValueError):
    """A value does not meet its contract (identifier, field, record)."""

    code = "invalid_value"


class IdentifierError(ValidationError):
    """An IIN or BIN is malformed or fails its check digit."""

    code = "invalid_identifier"


class CalendarError(ValidationError):
    """A calendar input (date, extra-days file) is not usable."""

    code = "invalid_calendar"


class CatalogueError(ProtocolError, KeyError):
    """An unknown source, field or index was named."""

    code = "unknown_name"

    def __str__(self) -> str:  # KeyError quotes its message; we do not want that
        return str(self.args[0]) if self.args else ""


class SerdeError(ValidationError):
    """A serialised record could not be decoded into its typed form."""

    code = "bad_record"


class KeyFileError(ProtocolError, OSError):
    """A key file is missing, corrupt, of the wrong kind, or readable by others."""

    code = "bad_key_file"


class SignatureError(ProtocolError, ValueError):
    """A signature is missing, malformed, or does not match the signed bytes."""

    code = "bad_signature"
    exit_code = 3


class TrustError(ProtocolError, ValueError):
    """A signer is unknown, revoked, not allowed for a role, or a trust root rolled back."""

    code = "untrusted"
    exit_code = 3


class EnvelopeError(ProtocolError, ValueError):
    """A sealed envelope cannot be opened (wrong recipient, tampered, truncated)."""

    code = "bad_envelope"
    exit_code = 3


class AuditLogError(ProtocolError, ValueError):
    """The hash chain of an audit log is broken."""

    code = "audit_chain_broken"
    exit_code = 3
