"""The sample round at a state body (issue 5): what issuing lists and preparing samples share.

A round, seen from a body (``/docs`` and the file contract of the round):

1. the lab's signed ``REQUEST.json`` arrives; :func:`verify_request` checks its signature
   against the trust root (the signer must be a LAB party, current key, not revoked)
   *before* parsing it;
2. the tax body draws the random list (:mod:`agency_runtime.issue_list`) and sends each
   recipient body a sealed ``<recipient>.ridlist``;
3. each body prepares, per source it owns, a depersonalised sample sealed to the lab
   (:mod:`agency_runtime.prepare_sample`).

Every action, and every refusal, is appended to the body's audit log
``STATE/audit.log`` (:data:`AUDIT_FILE`). Refusals are logged with their stable error
code (and, for refusals, their message, which never holds a data value).

Example::

    key, trust = load_party("tax-body.key", "trust.json", "nce-root.pub", "state/")
    request = verify_request("REQUEST.json", trust).request
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sample_protocol.audit import AuditLog
from sample_protocol.errors import ProtocolError, SerdeError, SignatureError, ValidationError
from sample_protocol.keys import PublicKey, SecretKey, load_public_key, load_secret_key
from sample_protocol.records import SampleRequest, sha256_bytes
from sample_protocol.signing import signature_path, verify_bytes
from sample_protocol.trust import Party, Role, TrustRoot, load_trust_root

from .errors import RuntimeInputError, RuntimeRefused

__all__ = [
    "AUDIT_FILE",
    "LIST_KIND",
    "MAPPINGS_DIR",
    "OUTCOME_PREFIX",
    "RID_COLUMN",
    "SAMPLE_KIND",
    "AuditScope",
    "VerifiedRequest",
    "audit_scope",
    "list_file_name",
    "load_party",
    "mapping_path",
    "require_recipient",
    "sample_file_name",
    "verify_request",
]

#: Envelope payload kind of a random-ID list.
LIST_KIND = "random-id-list"
#: Envelope payload kind of a depersonalised sample.
SAMPLE_KIND = "sample"
#: The body's audit log, inside its state directory.
AUDIT_FILE = "audit.log"
#: Where the tax body keeps its random-ID mappings, inside its state directory.
MAPPINGS_DIR = "mappings"
#: The key column of a sample: the random ID.
RID_COLUMN = "rid"
#: Prefix of the outcome columns of the tax body's TAX sample (``outcome_<index id>``).
OUTCOME_PREFIX = "outcome_"
_MAX_REQUEST_BYTES = 1 << 20
_MAX_AUDIT_REASON = 1000


def list_file_name(recipient: str) -> str:
    """``<recipient>.ridlist``: the file a recipient's list is written to."""
    return f"{recipient}.ridlist"


def sample_file_name(request_id: str, source: str) -> str:
    """``<request_id>.<SOURCE>.sample``: the sealed sample's file name."""
    return f"{request_id}.{source}.sample"


def mapping_path(state_dir: str | os.PathLike[str], request_id: str) -> Path:
    """``STATE/mappings/<request_id>.parquet``: the tax body's BIN/IIN -> random ID map."""
    return Path(state_dir) / MAPPINGS_DIR / f"{request_id}.parquet"


# -- audit ------------------------------------------------------------------------------


@dataclass
class AuditScope:
    """What an audited action has learned so far (subject and details grow as it runs)."""

    log: AuditLog
    action: str
    subject: str
    details: dict[str, object] = field(default_factory=dict)


@contextlib.contextmanager
def audit_scope(
    state_dir: str | os.PathLike[str],
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, object] | None = None,
) -> Iterator[AuditScope]:
    """Log a refusal (or an input error) of the action run inside, then re-raise it.

    The action logs its own success (``scope.log.append(...)``); a
    :class:`~sample_protocol.errors.ProtocolError` escaping the block is logged with
    outcome ``refused`` (exit 3) or ``error`` (exit 2) and its code.
    """
    log = AuditLog(Path(state_dir) / AUDIT_FILE, actor=actor)
    scope = AuditScope(log=log, action=action, subject=subject, details=dict(details or {}))
    try:
        yield scope
    except ProtocolError as exc:
        refused = exc.exit_code == 3
        facts: dict[str, object] = {**scope.details, "code": exc.code}
        if refused:  # refusal messages name checks, keys and counts, never data values
            facts["reason"] = str(exc)[:_MAX_AUDIT_REASON]
        log.append(scope.action, scope.subject, "refused" if refused else "error", facts)
        raise


# -- loading ----------------------------------------------------------------------------


def load_party(
    key_path: str | os.PathLike[str],
    trust_path: str | os.PathLike[str],
    root_pub_path: str | os.PathLike[str],
    state_dir: str | os.PathLike[str],
    *,
    action: str = "trust_root_loaded",
) -> tuple[SecretKey, TrustRoot]:
    """Load this body's secret key and the verified trust root (rollback-checked in STATE).

    A refused trust root is logged in ``STATE/audit.log`` under ``action``.
    """
    key = load_secret_key(key_path)
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    with audit_scope(state, key.name, action, str(trust_path)):
        root_public = load_public_key(root_pub_path)
        trust = load_trust_root(trust_path, root_public=root_public, state_dir=state)
    return key, trust


def _all_keys(trust: TrustRoot) -> dict[str, PublicKey]:
    """Every key ever held by a party (current and rotated out), by key id."""
    return {k.key_id: k for p in trust.parties for k in (p.key, *p.previous_keys)}


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    """A sample request whose signature checked out, with its signer and hash."""

    request: SampleRequest
    signer: Party
    sha256: str
    path: Path


def verify_request(path: str | os.PathLike[str], trust: TrustRoot) -> VerifiedRequest:
    """Verify ``REQUEST.json`` against ``REQUEST.json.minisig`` then parse it.

    The signer must be a LAB party of ``trust``, with its current key, not revoked, and
    the request's ``lab`` must name it. Raises :class:`SignatureError` (missing,
    tampered, unknown key), :class:`~sample_protocol.errors.TrustError` (wrong role,
    revoked, rotated), :class:`RuntimeRefused` ``request_lab_mismatch``, or
    :class:`RuntimeInputError` (``missing_request``, an unreadable record).
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(_MAX_REQUEST_BYTES + 1)
    except FileNotFoundError:
        raise RuntimeInputError(f"request {path}: file not found", code="missing_request") from None
    if len(data) > _MAX_REQUEST_BYTES:
        raise RuntimeInputError(
            f"request {path}: expected at most {_MAX_REQUEST_BYTES} bytes, found more",
            code="bad_request",
        )
    sig_path = signature_path(path)
    try:
        sig_text = sig_path.read_bytes()
    except FileNotFoundError:
        raise SignatureError(
            f"request {path} is not signed: signature file {sig_path} not found "
            "(an unsigned request is never acted on)",
            code="signature_missing",
        ) from None
    verified = verify_bytes(data, sig_text, _all_keys(trust), where=f"request {path}")
    signer = trust.require_signer(verified.key_id, roles={Role.LAB})
    try:
        request = SampleRequest.from_json(data, where=f"request {path}")
    except SerdeError:
        raise
    except ValidationError as exc:
        raise RuntimeInputError(f"request {path}: {exc}", code=exc.code) from None
    if request.lab != signer.name:
        raise RuntimeRefused(
            f"request {path}: names lab {request.lab!r} but is signed by {signer.name!r}",
            code="request_lab_mismatch",
        )
    return VerifiedRequest(request=request, signer=signer, sha256=sha256_bytes(data), path=path)


def require_recipient(trust: TrustRoot, name: str, *, what: str) -> Party:
    """A non-revoked BODY / TAX_BODY party called ``name`` that can receive envelopes."""
    party = trust.party(name)
    trust.require_signer(party.key.key_id, roles={Role.BODY, Role.TAX_BODY})
    if not party.key.can_receive:
        raise RuntimeRefused(
            f"{what}: recipient {name!r} has a verify-only key in the trust root; "
            "nothing can be sealed to it",
            code="recipient_no_box_key",
        )
    return party
