"""The shared language of every party: contracts, identifiers, calendar, records, keys,
signatures, envelopes, trust root and audit log."""

from .errors import ProtocolError

__all__ = ["ProtocolError"]
