"""The business partners register: ingest preliminary indexes, combine, serve, log checks."""

from .errors import RegistryError

__all__ = ["RegistryError"]
