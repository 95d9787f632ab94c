"""Verify a release bundle before anything of it is loaded (DESIGN section 8).

The agency runtime and the register both call :func:`verify_bundle`; the checks run in
this order and the first failure refuses the whole bundle (fail closed):

1. the signature of the exact bytes of ``manifest.json``, before they are parsed: the
   signer must be a non-revoked ``lab`` party of the trust root (or the one pinned lab key);
2. the manifest parses and validates, and names the caller's audience;
3. not expired, not created in the future (beyond ``clock_skew``);
4. every listed file exists with its SHA-256; nothing unlisted, no symlink, no special
   file; paths stay inside the bundle;
5. rollback, read only: the sequence is not below the highest accepted for the audience;
6. the ONNX gate on each model (bytes re-hashed as read, so a swap after step 4 is caught);
7. the parity fixture re-run on this machine;

and only then is the sequence recorded in ``state_dir/release_state.json``, so a refused
bundle never advances it. Refusals raise :class:`~sample_protocol.bundle.BundleError`
(gate refusals :class:`~sample_protocol.onnx_gate.GateError`).

Example::

    trust = load_trust_root("trust.json", root_public=root, state_dir=state)
    bundle = verify_bundle("release-7", trust=trust, audience="TAX", state_dir=state)
    p = bundle.models["tax_payment_discipline"].run(X_float32)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bundle import BUNDLE_SIGNATURE_NAME, PARITY_FIXTURE_KIND, RELEASE_STATE_FILE, BundleError
from .errors import SignatureError, TrustError, ValidationError
from .keys import PublicKey
from .onnx_gate import (
    DEFAULT_ALLOWED_OPS,
    DEFAULT_MAX_BYTES,
    GatedModel,
    GateError,
    GateSpec,
    gate_model,
    run_parity_fixture,
)
from .records_base import safe_join, sha256_bytes, sha256_file
from .records_release import MANIFEST_NAME, ModelEntry, ReleaseManifest
from .signing import VerifiedSignature, verify_bytes
from .trust import MonotonicCounter, Role, TrustRoot

__all__ = [
    "DEFAULT_CLOCK_SKEW",
    "DEFAULT_PARITY_TOLERANCE",
    "MODEL_INPUT_NAME",
    "VerifiedBundle",
    "release_counter_name",
    "verify_bundle",
]

#: How far in the future a bundle's ``created_at`` may be (clocks differ a little).
DEFAULT_CLOCK_SKEW = dt.timedelta(minutes=5)
#: Largest max-abs difference accepted when re-running the parity fixture.
DEFAULT_PARITY_TOLERANCE = 1e-5
#: The single ONNX input every bundled model takes (float32 ``[N, len(input_names)]``).
MODEL_INPUT_NAME = "input"

_MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_MAX_SIG_BYTES = 64 * 1024
_MAX_FIXTURE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True, eq=False)
class VerifiedBundle:
    """A bundle that passed every check: its manifest, who signed it, its gated models.

    ``models`` maps each model name of the manifest to its gated CPU session (empty
    when verified with ``gate=False``); ``parity`` the max abs difference found per
    model (empty when parity was not run).
    """

    manifest: ReleaseManifest
    signer: str
    signature: VerifiedSignature
    directory: Path
    models: Mapping[str, GatedModel] = field(default_factory=dict)
    parity: Mapping[str, float] = field(default_factory=dict)

    @property
    def release_id(self) -> str:
        return self.manifest.release_id


def release_counter_name(audience: str) -> str:
    """The rollback counter of an audience in ``release_state.json``: ``release:<audience>``."""
    return f"release:{audience}"


def _refuse(code: str, message: str) -> BundleError:
    return BundleError(message, code=code)


# --------------------------------------------------------------------------- reading


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None


def _read_regular(path: Path, *, limit: int, where: str, missing_code: str) -> bytes:
    """Read at most ``limit`` bytes of a regular file that is not a symlink."""
    st = _lstat(path)
    if st is None:
        raise _refuse(missing_code, f"{where}: expected file {path.name}, found none")
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(
            "bundle_unsafe_file",
            f"{where}: {path.name}: expected a regular file, found a symlink or special file",
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as fh:
            return fh.read(limit)
    except OSError as exc:
        raise _refuse(missing_code, f"{where}: cannot read {path.name} ({exc.strerror})") from None


# --------------------------------------------------------------------------- signature


def _all_keys(trust: TrustRoot) -> dict[str, PublicKey]:
    # Every key the root knows (revoked and rotated too), so that the error can say *why*
    # a signer is refused; the trust decision is require_signer's.
    return {k.key_id: k for p in trust.parties for k in (p.key, *p.previous_keys)}


def _check_signature(
    data: bytes,
    sig: bytes,
    where: str,
    trust: TrustRoot | None,
    lab_public: PublicKey | None,
) -> tuple[str, VerifiedSignature]:
    """The signer's name and signature, or refuse (``bundle_signature`` / ``_untrusted_signer``)."""
    keys: PublicKey | dict[str, PublicKey]
    if trust is not None:
        keys = _all_keys(trust)
    elif lab_public is not None:
        keys = lab_public
    else:  # verify_bundle checks this first
        raise TypeError("verify_bundle: give exactly one of trust= or lab_public=")
    try:
        verified = verify_bytes(data, sig, keys, where=f"{where}: {MANIFEST_NAME}")
    except SignatureError as exc:
        if exc.code == "signature_unknown_key":
            raise _refuse("bundle_untrusted_signer", f"{where}: {exc}") from None
        raise _refuse("bundle_signature", f"{where}: {exc} [{exc.code}]") from None
    if trust is None:
        return verified.signer, verified
    try:
        party = trust.require_signer(verified.key_id, roles=Role.LAB)
    except TrustError as exc:
        raise _refuse(
            "bundle_untrusted_signer", f"{where}: manifest signer refused: {exc} [{exc.code}]"
        ) from None
    return party.name, verified


# --------------------------------------------------------------------------- files


def _check_tree(root: Path, manifest: ReleaseManifest, where: str) -> None:
    """No symlink, no special file, nothing unlisted anywhere under ``root``."""

    def _raise(exc: OSError) -> None:
        raise _refuse("bundle_unsafe_file", f"{where}: cannot list {exc.filename} ({exc.strerror})")

    allowed = set(manifest.files) | {MANIFEST_NAME, BUNDLE_SIGNATURE_NAME}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=_raise):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                raise _refuse(
                    "bundle_unsafe_file",
                    f"{where}: {rel}: expected a regular file or directory, found a symlink "
                    f"to {os.readlink(path)!r} (a bundle holds no links)",
                )
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                raise _refuse(
                    "bundle_unsafe_file",
                    f"{where}: {rel}: expected a regular file, found a special file",
                )
            if rel not in allowed:
                raise _refuse(
                    "bundle_extra_file",
                    f"{where}: {rel}: expected only the files the manifest lists, found this "
                    "unlisted file (it could be a smuggled model)",
                )


def _bundle_path(root: Path, name: str, where: str) -> Path:
    try:
        return safe_join(root, name)
    except ValidationError as exc:
        raise _refuse("bundle_unsafe_file", f"{where}: {name}: {exc}") from None


def _check_hashes(root: Path, manifest: ReleaseManifest, where: str) -> None:
    for name, expected in sorted(manifest.files.items()):
        path = _bundle_path(root, name, where)
        st = _lstat(path)
        if st is None:
            raise _refuse(
                "bundle_file_missing",
                f"{where}: {name}: expected a file with sha256 {expected}, found none",
            )
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(
                "bundle_unsafe_file", f"{where}: {name}: expected a regular file, found a link"
            )
        found = sha256_file(path)
        if found != expected:
            raise _refuse(
                "bundle_file_tampered",
                f"{where}: {name}: expected sha256 {expected}, found {found}",
            )


def _read_listed(root: Path, name: str, expected: str, limit: int, where: str) -> bytes:
    """Read a listed file again and re-check its hash (a swap since step 4 is refused)."""
    data = _read_regular(
        _bundle_path(root, name, where),
        limit=limit + 1,
        where=where,
        missing_code="bundle_file_missing",
    )
    if len(data) <= limit and (found := sha256_bytes(data)) != expected:
        raise _refuse(
            "bundle_file_tampered",
            f"{where}: {name}: expected sha256 {expected}, found {found} (changed while read)",
        )
    return data


# --------------------------------------------------------------------------- models


def _gate(
    root: Path, entry: ModelEntry, where: str, max_bytes: int, allowed_ops: tuple[str, ...]
) -> GatedModel:
    at = f"{where}: model {entry.name!r} ({entry.file})"
    if bad := [t for t in entry.input_types if t != "float32"]:
        raise GateError(
            f"{at}: manifest input_types: expected float32 for every input, found {bad[0]!r}",
            code="gate_input",
        )
    try:
        spec = GateSpec(
            n_features=len(entry.input_names),
            input_name=MODEL_INPUT_NAME,
            max_bytes=max_bytes,
            allowed_ops=allowed_ops,
            output_names=entry.output_names,
        )
    except ValidationError as exc:
        raise GateError(f"{at}: cannot build its gate spec: {exc}", code="gate_spec") from None
    data = _read_listed(root, entry.file, entry.sha256, max_bytes, where)
    return gate_model(data, spec, where=at)


def _load_fixture(root: Path, manifest: ReleaseManifest, where: str) -> dict[str, Any]:
    name = manifest.parity_fixture
    data = _read_listed(root, name, manifest.files[name], _MAX_FIXTURE_BYTES, where)

    def _no_constant(token: str) -> Any:
        raise ValueError(f"{token} is not valid JSON")

    try:
        fixture = json.loads(data, parse_constant=_no_constant)
    except ValueError as exc:
        raise _refuse("bundle_parity", f"{where}: {name}: not valid JSON ({exc})") from None
    models = fixture.get("models") if isinstance(fixture, dict) else None
    kind = fixture.get("kind", PARITY_FIXTURE_KIND) if isinstance(fixture, dict) else None
    if not isinstance(models, dict) or kind != PARITY_FIXTURE_KIND:
        raise _refuse(
            "bundle_parity",
            f'{where}: {name}: expected {{"kind": {PARITY_FIXTURE_KIND!r}, "models": '
            "{name: fixture}}, found something else",
        )
    listed = {m.name for m in manifest.models}
    if extra := sorted(set(models) - listed):
        raise _refuse("bundle_parity", f"{where}: {name}: fixture for unknown model(s) {extra[:5]}")
    if missing := sorted(listed - set(models)):
        raise _refuse(
            "bundle_parity",
            f"{where}: {name}: expected a fixture for every model, found none for {missing[:5]}",
        )
    return models


def _parity(gated: GatedModel, fixture: Any, tolerance: float, where: str, name: str) -> float:
    tol = tolerance
    own = fixture.get("tolerance") if isinstance(fixture, dict) else None
    if isinstance(own, int | float) and not isinstance(own, bool) and 0 <= own < tol:
        tol = float(own)  # the lab may ask for tighter parity, never looser
    try:
        return run_parity_fixture(gated, fixture, tolerance=tol)
    except GateError as exc:
        if exc.code != "gate_parity":
            raise
        raise _refuse("bundle_parity", f"{where}: model {name!r}: {exc}") from None


# --------------------------------------------------------------------------- verify


def verify_bundle(
    bundle_dir: str | os.PathLike[str],
    *,
    trust: TrustRoot | None = None,
    lab_public: PublicKey | None = None,
    audience: str,
    state_dir: str | os.PathLike[str] | None,
    now: dt.datetime | None = None,
    gate: bool = True,
    run_parity: bool = True,
    tolerance: float = DEFAULT_PARITY_TOLERANCE,
    clock_skew: dt.timedelta = DEFAULT_CLOCK_SKEW,
    max_model_bytes: int = DEFAULT_MAX_BYTES,
    allowed_ops: tuple[str, ...] = DEFAULT_ALLOWED_OPS,
) -> VerifiedBundle:
    """Verify the bundle in ``bundle_dir`` for ``audience``; return it with gated models.

    Give exactly one of ``trust`` (the signer must be a non-revoked ``lab`` party) or
    ``lab_public`` (a single pinned lab key). ``audience`` is a body's source code or
    ``REGISTER``. With ``state_dir``, a sequence below the highest accepted for the
    audience is refused, and an accepted one is recorded. ``gate=False`` loads no model
    (and so runs no parity). See the module docstring for the order of the checks.
    """
    if (trust is None) == (lab_public is None):
        raise TypeError("verify_bundle: give exactly one of trust= or lab_public=")
    now = dt.datetime.now(dt.UTC) if now is None else now
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValidationError(f"verify_bundle: now: expected a timezone-aware time, found {now}")
    directory = Path(bundle_dir)
    where = f"release bundle {directory}"
    if not directory.is_dir():
        raise _refuse("bundle_missing", f"{where}: expected a directory, found none")
    root = directory.resolve()

    # 1. signature over the exact bytes, before parsing
    data = _read_regular(
        root / MANIFEST_NAME,
        limit=_MAX_MANIFEST_BYTES + 1,
        where=where,
        missing_code="bundle_missing",
    )
    if len(data) > _MAX_MANIFEST_BYTES:
        raise _refuse(
            "bundle_signature",
            f"{where}: {MANIFEST_NAME}: expected at most {_MAX_MANIFEST_BYTES} bytes, found more",
        )
    sig = _read_regular(
        root / BUNDLE_SIGNATURE_NAME,
        limit=_MAX_SIG_BYTES,
        where=where,
        missing_code="bundle_signature",
    )
    signer, verified = _check_signature(data, sig, where, trust, lab_public)

    # 2. parse; audience
    try:
        manifest = ReleaseManifest.from_json(data, where=f"{where}: {MANIFEST_NAME}")
    except ValidationError as exc:
        raise _refuse("bundle_manifest_invalid", f"{exc} [{exc.code}]") from None
    where = f"{where} (release {manifest.release_id}, sequence {manifest.sequence})"
    if manifest.audience != audience:
        raise _refuse(
            "bundle_wrong_audience",
            f"{where}: expected audience {audience!r}, found {manifest.audience!r}",
        )

    # 3. dates
    if manifest.is_expired(now):
        raise _refuse(
            "bundle_expired",
            f"{where}: expired at {manifest.expires_at.isoformat()} (now {now.isoformat()})",
        )
    if manifest.created_at > now + clock_skew:
        raise _refuse(
            "bundle_not_yet_valid",
            f"{where}: created_at {manifest.created_at.isoformat()} is in the future "
            f"(now {now.isoformat()}, allowed skew {clock_skew})",
        )

    # 4. files
    _check_tree(root, manifest, where)
    _check_hashes(root, manifest, where)

    # 5. rollback, read only (recorded at the very end)
    counter = None if state_dir is None else MonotonicCounter(Path(state_dir) / RELEASE_STATE_FILE)
    counter_name = release_counter_name(audience)
    if counter is not None and (seen := counter.current(counter_name)) > manifest.sequence:
        raise _refuse(
            "bundle_rollback",
            f"{where}: expected sequence >= {seen} (highest accepted for {audience}, "
            f"recorded in {counter.path}), found {manifest.sequence}; refusing a rollback",
        )

    # 6. gate; 7. parity
    models: dict[str, GatedModel] = {}
    parity: dict[str, float] = {}
    if gate:
        for entry in manifest.models:
            models[entry.name] = _gate(root, entry, where, max_model_bytes, allowed_ops)
        if run_parity:
            fixtures = _load_fixture(root, manifest, where)
            for name, gated in models.items():
                parity[name] = _parity(gated, fixtures[name], tolerance, where, name)

    if counter is not None:
        try:
            counter.check_and_advance(counter_name, manifest.sequence, what=where)
        except TrustError as exc:
            if exc.code != "trust_rollback":
                raise
            raise _refuse("bundle_rollback", str(exc)) from None
    return VerifiedBundle(
        manifest=manifest,
        signer=signer,
        signature=verified,
        directory=root,
        models=models,
        parity=parity,
    )
