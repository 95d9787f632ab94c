"""Verify a release bundle inside a body's perimeter, before anything of it is used.

:func:`verify_release` runs :func:`sample_protocol.bundle_verify.verify_bundle` (the
signature against the trust root or one pinned lab key, the SHA-256 of every file,
expiry, revocation, rollback against the highest sequence accepted in ``STATE``, the ONNX
gate and the parity fixture re-run here) and then what scoring needs from the signed
release, refusing a release that lacks any of it:

* each model's feature spec (``models/<name>.features.json``, hash re-checked as read)
  whose columns are exactly the model's inputs, all from the bundle's source;
* each index's score scale (``training["scale:<index>"]``) and category cut-offs;
* how the training generalised the source's quasi-identifiers
  (:func:`~agency_runtime.input_reader.generalisation_plan`).

The bundle's audience is the body's source (``--source``), or, when not given, the one
its *signed* manifest names (the signature is checked before the manifest is read). With
the body's key, the body must own that source in the trust root. Every verification and
every refusal is appended to ``STATE/audit.log`` (action ``release_verified``).

Example::

    release = verify_release("releases/rel3-.../TAX", trust=trust, state_dir="state",
                             actor="tax-body", source="TAX")
    release.models[0].gated.run(X)
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sample_protocol.bundle import BUNDLE_SIGNATURE_NAME, RELEASE_STATE_FILE, BundleError
from sample_protocol.bundle_verify import VerifiedBundle, release_counter_name, verify_bundle
from sample_protocol.catalogue import SourceSpec, get_source, index_ids
from sample_protocol.errors import (
    CatalogueError,
    SignatureError,
    TrustError,
    ValidationError,
)
from sample_protocol.features import FeatureSpec
from sample_protocol.keys import PublicKey
from sample_protocol.onnx_gate import GatedModel
from sample_protocol.records import (
    MANIFEST_NAME,
    REGISTER_AUDIENCE,
    CategoryCutoffs,
    ModelEntry,
    ReleaseManifest,
    sha256_bytes,
)
from sample_protocol.records_base import safe_join
from sample_protocol.scores import ScoreScale
from sample_protocol.signing import verify_bytes
from sample_protocol.trust import MonotonicCounter, Role, TrustRoot

from .errors import RuntimeRefused
from .input_reader import generalisation_plan
from .sample_round import audit_scope

__all__ = [
    "FEATURES_SUFFIX",
    "ScoringModel",
    "VerifiedRelease",
    "features_file",
    "verify_release",
]

#: A model's feature spec sits beside it: ``models/<name>.onnx`` -> ``models/<name>.features.json``.
FEATURES_SUFFIX = ".features.json"
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_MAX_SIG_BYTES = 64 * 1024
_MAX_FEATURES_BYTES = 16 * 1024 * 1024
_BODY_ROLES = frozenset({Role.BODY, Role.TAX_BODY})


@dataclass(frozen=True, slots=True, eq=False)
class ScoringModel:
    """One gated model of a verified release and everything needed to publish its index."""

    name: str
    index: str
    gated: GatedModel
    features: FeatureSpec
    scale: ScoreScale
    cutoffs: CategoryCutoffs


@dataclass(frozen=True, slots=True, eq=False)
class VerifiedRelease:
    """A release that passed :func:`verify_release` for ``source``."""

    bundle: VerifiedBundle
    source: SourceSpec
    models: tuple[ScoringModel, ...]
    generalisation: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def manifest(self) -> ReleaseManifest:
        return self.bundle.manifest

    @property
    def release_id(self) -> str:
        return self.bundle.manifest.release_id

    @property
    def fields(self) -> tuple[str, ...]:
        """The source fields the models read, in catalogue order."""
        used = {c.field for m in self.models for c in m.features.columns}
        return tuple(f for f in self.source.field_names() if f in used)

    def to_dict(self) -> dict[str, object]:
        """The verdict as JSON-ready data."""
        m = self.manifest
        return {
            "verdict": "verified",
            "release_id": m.release_id,
            "sequence": m.sequence,
            "audience": m.audience,
            "signer": self.bundle.signer,
            "created_at": m.created_at.isoformat(),
            "expires_at": m.expires_at.isoformat(),
            "directory": str(self.bundle.directory),
            "models": [
                {
                    "name": s.name,
                    "index": s.index,
                    "inputs": len(s.features),
                    "sha256": s.gated.sha256,
                    "parity_max_abs_diff": self.bundle.parity.get(s.name),
                    "medium_from": s.cutoffs.medium_from,
                    "high_from": s.cutoffs.high_from,
                }
                for s in self.models
            ],
            "fields": list(self.fields),
            "generalisation": {k: v[1] for k, v in sorted(self.generalisation.items())},
        }


def features_file(entry: ModelEntry) -> str:
    """The bundle path of a model's feature spec."""
    return entry.file.removesuffix(".onnx") + FEATURES_SUFFIX


def _refuse(code: str, message: str) -> RuntimeRefused:
    return RuntimeRefused(message, code=code)


def _read_file(path: Path, limit: int, where: str, code: str) -> bytes:
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(
                f"{where}: {path.name}: expected a regular file, found a link or other",
                code="bundle_unsafe_file",
            )
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(limit + 1)
    except FileNotFoundError:
        raise BundleError(f"{where}: expected {path.name}, found none", code=code) from None
    except OSError as exc:
        raise BundleError(f"{where}: cannot read {path.name} ({exc.strerror})", code=code) from None
    if len(data) > limit:
        raise BundleError(f"{where}: {path.name}: larger than {limit} bytes", code=code)
    return data


def _signed_audience(directory: Path, trust: TrustRoot | None, lab_public: PublicKey | None) -> str:
    """The audience named by the manifest, read only after its signature checked out."""
    where = f"release bundle {directory}"
    data = _read_file(directory / MANIFEST_NAME, _MAX_MANIFEST_BYTES, where, "bundle_missing")
    sig = _read_file(directory / BUNDLE_SIGNATURE_NAME, _MAX_SIG_BYTES, where, "bundle_signature")
    keys: PublicKey | dict[str, PublicKey]
    if trust is not None:
        keys = {k.key_id: k for p in trust.parties for k in (p.key, *p.previous_keys)}
    else:
        assert lab_public is not None
        keys = lab_public
    try:
        verified = verify_bytes(data, sig, keys, where=f"{where}: {MANIFEST_NAME}")
        if trust is not None:
            trust.require_signer(verified.key_id, roles=Role.LAB)
    except (SignatureError, TrustError) as exc:
        code = "bundle_signature"
        if isinstance(exc, TrustError) or exc.code == "signature_unknown_key":
            code = "bundle_untrusted_signer"
        raise BundleError(f"{where}: {exc} [{exc.code}]", code=code) from None
    try:
        return ReleaseManifest.from_json(data, where=f"{where}: {MANIFEST_NAME}").audience
    except ValidationError as exc:
        raise BundleError(f"{exc} [{exc.code}]", code="bundle_manifest_invalid") from None


def _features(
    bundle: VerifiedBundle,
    entry: ModelEntry,
    audience: str,
    where: str,
    parsed: dict[str, FeatureSpec],
) -> FeatureSpec:
    """The model's feature spec; ``parsed`` caches specs by hash (models often share one)."""
    name = features_file(entry)
    expected = bundle.manifest.files.get(name)
    at = f"{where}: model {entry.name!r}"
    if expected is None:
        raise _refuse(
            "release_features_missing",
            f"{at}: expected its feature spec {name} listed in the manifest, found none",
        )
    data = _read_file(
        safe_join(bundle.directory, name), _MAX_FEATURES_BYTES, where, "bundle_file_missing"
    )
    if (found := sha256_bytes(data)) != expected:
        raise BundleError(
            f"{where}: {name}: expected sha256 {expected}, found {found} (changed since verified)",
            code="bundle_file_tampered",
        )
    spec = parsed.get(found)
    if spec is None:
        try:
            spec = parsed[found] = FeatureSpec.from_json(data, where=f"{where}: {name}")
        except ValidationError as exc:
            raise _refuse("release_features_invalid", f"{at}: {exc}") from None
    if spec.names != entry.input_names:
        raise _refuse(
            "release_features_mismatch",
            f"{at}: expected feature columns equal to the model's inputs "
            f"{list(entry.input_names)[:5]}..., found {list(spec.names)[:5]}...",
        )
    if foreign := sorted({c.source for c in spec.columns} - {audience}):
        raise _refuse(
            "release_features_mismatch",
            f"{at}: expected inputs from source {audience} only, found {', '.join(foreign)}",
        )
    return spec


def _scoring_models(bundle: VerifiedBundle, where: str) -> tuple[ScoringModel, ...]:
    manifest = bundle.manifest
    order = {index: i for i, index in enumerate(index_ids())}
    out = []
    parsed: dict[str, FeatureSpec] = {}
    for entry in sorted(manifest.models, key=lambda e: (order.get(e.index, 99), e.name)):
        raw = manifest.training.get(f"scale:{entry.index}")
        try:
            scale = ScoreScale.from_json(raw or "", where=f"{where}: scale:{entry.index}")
        except ValidationError as exc:
            raise _refuse(
                "release_no_scale",
                f"{where}: expected the score scale of index {entry.index!r} in the manifest's "
                f"training notes (scale:{entry.index}), found {'none' if raw is None else exc}",
            ) from None
        out.append(
            ScoringModel(
                name=entry.name,
                index=entry.index,
                gated=bundle.models[entry.name],
                features=_features(bundle, entry, manifest.audience, where, parsed),
                scale=scale,
                cutoffs=manifest.cutoffs_for(entry.index),
            )
        )
    return tuple(out)


def _record_sequence(state: Path, audience: str, sequence: int, where: str) -> None:
    counter = MonotonicCounter(state / RELEASE_STATE_FILE)
    name = release_counter_name(audience)
    seen = counter.current(name)
    if seen > sequence:
        raise BundleError(
            f"{where}: expected sequence >= {seen} (highest accepted for {audience}, recorded "
            f"in {counter.path}), found {sequence}; refusing a rollback",
            code="bundle_rollback",
        )
    try:
        counter.check_and_advance(name, sequence, what=where)
    except TrustError as exc:
        if exc.code != "trust_rollback":
            raise
        raise BundleError(str(exc), code="bundle_rollback") from None


def verify_release(
    bundle_dir: str | os.PathLike[str],
    *,
    state_dir: str | os.PathLike[str],
    actor: str,
    trust: TrustRoot | None = None,
    lab_public: PublicKey | None = None,
    source: str | None = None,
    body_key_id: str | None = None,
    now: dt.datetime | None = None,
) -> VerifiedRelease:
    """Verify ``bundle_dir`` for this body's ``source`` and load what scoring needs.

    Give exactly one of ``trust`` and ``lab_public``. ``actor`` names this body in the
    audit log; ``body_key_id`` (with ``trust``) makes the body prove it owns the source.
    Refusals raise :class:`~sample_protocol.bundle.BundleError`,
    :class:`~sample_protocol.onnx_gate.GateError`,
    :class:`~sample_protocol.errors.TrustError` or :class:`RuntimeRefused` (all exit 3).
    """
    if (trust is None) == (lab_public is None):
        raise TypeError("verify_release: give exactly one of trust= or lab_public=")
    directory = Path(bundle_dir)
    where = f"release bundle {directory}"
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    with audit_scope(state, actor, "release_verified", str(directory)) as scope:
        if not directory.is_dir():
            raise BundleError(f"{where}: expected a directory, found none", code="bundle_missing")
        audience = source or _signed_audience(directory, trust, lab_public)
        scope.details["audience"] = audience
        if audience == REGISTER_AUDIENCE:
            raise _refuse(
                "release_not_for_body",
                f"{where}: is the register's bundle (combiners); a body scores with the "
                "bundle of its own source",
            )
        try:
            spec = get_source(audience)
        except CatalogueError as exc:
            if source is not None:
                raise  # the operator's typo (exit 2)
            raise _refuse("release_unknown_source", f"{where}: {exc}") from None
        if trust is not None and body_key_id is not None:
            trust.require_signer(body_key_id, roles=_BODY_ROLES, source=audience)
        # No state here: the sequence is recorded below, once the checks of this module
        # passed too, so that no refused bundle ever advances it.
        bundle = verify_bundle(
            directory,
            trust=trust,
            lab_public=lab_public,
            audience=audience,
            state_dir=None,
            now=now,
        )
        m = bundle.manifest
        scope.subject = m.release_id
        scope.details.update(sequence=m.sequence, signer=bundle.signer)
        where = f"{where} (release {m.release_id}, sequence {m.sequence})"
        models = _scoring_models(bundle, where)
        plan = generalisation_plan(spec, (s.features for s in models), m.training)
        _record_sequence(state, audience, m.sequence, where)
        release = VerifiedRelease(bundle=bundle, source=spec, models=models, generalisation=plan)
        scope.log.append(
            scope.action,
            m.release_id,
            "ok",
            {
                **scope.details,
                "models": len(models),
                "indexes": ",".join(s.index for s in models),
                "parity_max_abs_diff": max(bundle.parity.values(), default=0.0),
                "expires_at": m.expires_at.isoformat(),
                "directory": str(directory),
            },
        )
    return release
