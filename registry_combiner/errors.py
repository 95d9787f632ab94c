"""The register's exceptions: every one is a :class:`RegistryError`.

Exit codes follow ``sample_protocol.cli_support``: :class:`RegistryInputError` is bad
input (exit 2: a feed file, an option, an unknown entity), :class:`RegistryRefused` a
refusal (exit 3: a replayed batch, an unknown or expired release, a foreign signer), and
:class:`StoreError` a database that cannot be used (exit 1: a newer schema, corruption).
"""

from __future__ import annotations

from sample_protocol.errors import ProtocolError

__all__ = ["RegistryError", "RegistryInputError", "RegistryRefused", "StoreError"]


class RegistryError(ProtocolError, ValueError):
    """Base of every error raised by ``registry_combiner``."""

    code = "registry_error"


class RegistryInputError(RegistryError):
    """A file, option or identifier given to the register is not usable (exit 2)."""

    code = "registry_input"
    exit_code = 2


class RegistryRefused(RegistryError):
    """A verification or policy check of the register said no (exit 3)."""

    code = "registry_refused"
    exit_code = 3


class StoreError(RegistryError):
    """The register's database cannot be opened or used as it is (exit 1)."""

    code = "store_error"
    exit_code = 1
