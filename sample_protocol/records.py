"""The frozen typed records that cross party boundaries, in one import.

* sample flow (:mod:`~sample_protocol.records_sample`): :class:`SampleRequest` with its
  :class:`SourceRequest` items, :class:`RandomIdList`, :class:`SampleManifest` with its
  :class:`DepersonalisationReport`;
* release and batch flows (:mod:`~sample_protocol.records_release`):
  :class:`ReleaseManifest` with its :class:`ModelEntry` and :class:`CategoryCutoffs`
  items, :class:`BatchManifest`;
* helpers (:mod:`~sample_protocol.records_base`): random IDs, record IDs, SHA-256,
  :func:`write_record` / :func:`read_record`, :func:`safe_join`.

Trust-root and audit-log records live in :mod:`~sample_protocol.trust` and
:mod:`~sample_protocol.audit`.

Example::

    >>> cut = CategoryCutoffs("financial_stability", medium_from=0.1, high_from=0.4)
    >>> CategoryCutoffs.from_json(cut.to_json()) == cut
    True
"""

from __future__ import annotations

from .records_base import (
    RANDOM_ID_BITS,
    RANDOM_ID_PREFIX,
    is_random_id,
    new_random_id,
    new_random_ids,
    new_record_id,
    read_record,
    safe_join,
    sha256_bytes,
    sha256_file,
    write_record,
)
from .records_release import (
    BATCH_COLUMNS,
    MANIFEST_NAME,
    MODEL_INPUT_TYPES,
    REGISTER_AUDIENCE,
    BatchManifest,
    CategoryCutoffs,
    ModelEntry,
    ReleaseManifest,
)
from .records_sample import (
    DepersonalisationReport,
    RandomIdList,
    SampleManifest,
    SampleRequest,
    SourceRequest,
)

__all__ = [
    "BATCH_COLUMNS",
    "MANIFEST_NAME",
    "MODEL_INPUT_TYPES",
    "RANDOM_ID_BITS",
    "RANDOM_ID_PREFIX",
    "REGISTER_AUDIENCE",
    "BatchManifest",
    "CategoryCutoffs",
    "DepersonalisationReport",
    "ModelEntry",
    "RandomIdList",
    "ReleaseManifest",
    "SampleManifest",
    "SampleRequest",
    "SourceRequest",
    "is_random_id",
    "new_random_id",
    "new_random_ids",
    "new_record_id",
    "read_record",
    "safe_join",
    "sha256_bytes",
    "sha256_file",
    "write_record",
]
