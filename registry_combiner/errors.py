"""The register's exceptions: every one is a :class:`RegistryError`."""

from __future__ import annotations

from sample_protocol.errors import ProtocolError

__all__ = ["RegistryError"]


class RegistryError(ProtocolError, ValueError):
    """Base of every error raised by ``registry_combiner``."""

    code = "registry_error"
