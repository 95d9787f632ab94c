"""The shared language of every party.

Identifiers and the business-day calendar, the catalogue of sources and indexes, the typed
records that cross party boundaries, keys, minisign-format signatures, sealed envelopes,
the signed trust root and the hash-chained audit log. The three role packages import this
package and never each other.

The names most callers need are re-exported here; each submodule documents the rest.
"""

from .audit import AuditEntry, AuditLog, verify_log
from .calendar import BusinessCalendar, deadline
from .catalogue import Catalogue, FieldSpec, IndexSpec, Mode, SourceSpec, get_index, get_source
from .envelope import OpenedEnvelope, open_envelope, open_file, seal, seal_file
from .errors import (
    AuditLogError,
    CalendarError,
    CatalogueError,
    EnvelopeError,
    IdentifierError,
    KeyFileError,
    ProtocolError,
    SerdeError,
    SignatureError,
    TrustError,
    ValidationError,
)
from .identifiers import (
    is_valid_bin,
    is_valid_identifier,
    is_valid_iin,
    parse_identifier,
    validate_bin,
    validate_identifier,
    validate_iin,
)
from .keys import PublicKey, SecretKey, generate_keypair, load_public_key, load_secret_key
from .records import (
    BatchManifest,
    CategoryCutoffs,
    DepersonalisationReport,
    ModelEntry,
    RandomIdList,
    ReleaseManifest,
    SampleManifest,
    SampleRequest,
    SourceRequest,
)
from .serde import Record
from .signing import VerifiedSignature, sign_file, verify_file
from .trust import Party, Role, TrustRoot, load_trust_root

__all__ = [
    "AuditEntry",
    "AuditLog",
    "AuditLogError",
    "BatchManifest",
    "BusinessCalendar",
    "CalendarError",
    "Catalogue",
    "CatalogueError",
    "CategoryCutoffs",
    "DepersonalisationReport",
    "EnvelopeError",
    "FieldSpec",
    "IdentifierError",
    "IndexSpec",
    "KeyFileError",
    "Mode",
    "ModelEntry",
    "OpenedEnvelope",
    "Party",
    "ProtocolError",
    "PublicKey",
    "RandomIdList",
    "Record",
    "ReleaseManifest",
    "Role",
    "SampleManifest",
    "SampleRequest",
    "SecretKey",
    "SerdeError",
    "SignatureError",
    "SourceRequest",
    "SourceSpec",
    "TrustError",
    "TrustRoot",
    "ValidationError",
    "VerifiedSignature",
    "deadline",
    "generate_keypair",
    "get_index",
    "get_source",
    "is_valid_bin",
    "is_valid_identifier",
    "is_valid_iin",
    "load_public_key",
    "load_secret_key",
    "load_trust_root",
    "open_envelope",
    "open_file",
    "parse_identifier",
    "seal",
    "seal_file",
    "sign_file",
    "validate_bin",
    "validate_identifier",
    "validate_iin",
    "verify_file",
    "verify_log",
]
