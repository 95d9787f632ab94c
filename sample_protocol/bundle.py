"""Release bundles: write one (the lab), and the error every bundle check raises.

A bundle is a directory holding ``manifest.json`` (a signed
:class:`~sample_protocol.records.ReleaseManifest`, canonical JSON), its
``manifest.json.minisig`` and exactly the files the manifest lists with their SHA-256:
one ONNX model per (source, index) or per combiner, the parity fixture and the model card.
Verifying one (the agency runtime and the register, with the same code) is
:func:`sample_protocol.bundle_verify.verify_bundle`.

The parity fixture is one JSON file (:func:`build_parity_fixture`)::

    {"kind": "BundleParityFixture",
     "models": {"<model name>": {"inputs": [[...], ...],            # None = missing value
                                 "expected_probabilities": [...],   # class 1, one per row
                                 "tolerance": 1e-05}}}

where each per-model entry is what
:func:`sample_protocol.onnx_gate.run_parity_fixture` takes (``nce_model_lab``'s
``parity_fixture`` builds it).

Example::

    files = {"tax_pd.onnx": onnx_bytes, "parity.json": build_parity_fixture(cases)}
    digests = build_manifest_files(files)     # put these in ReleaseManifest.files
    write_bundle("release-7", manifest, files, lab_secret)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from . import _atomic
from ._atomic import fsync_path
from .errors import ProtocolError, ValidationError
from .keys import SecretKey
from .records_base import check_relpath, safe_join, sha256_bytes
from .records_release import MANIFEST_NAME, ReleaseManifest
from .serde import canonical_json
from .signing import SIGNATURE_SUFFIX, default_trusted_comment, sign_file

__all__ = [
    "BUNDLE_SIGNATURE_NAME",
    "PARITY_FIXTURE_KIND",
    "RELEASE_STATE_FILE",
    "BundleError",
    "build_manifest_files",
    "build_parity_fixture",
    "check_out_dir",
    "write_bundle",
]

#: File name of the manifest's detached signature inside a bundle.
BUNDLE_SIGNATURE_NAME = MANIFEST_NAME + SIGNATURE_SUFFIX
#: File, inside a runtime's state directory, recording the highest release sequence
#: accepted per audience (counter ``release:<audience>``).
RELEASE_STATE_FILE = "release_state.json"
#: The ``kind`` tag of a bundle's parity fixture.
PARITY_FIXTURE_KIND = "BundleParityFixture"

_RESERVED = frozenset({MANIFEST_NAME, BUNDLE_SIGNATURE_NAME})


class BundleError(ProtocolError, ValueError):
    """A release bundle was refused (fail closed: nothing of it may be loaded).

    ``code`` is one of ``bundle_missing``, ``bundle_signature``,
    ``bundle_untrusted_signer``, ``bundle_manifest_invalid``, ``bundle_wrong_audience``,
    ``bundle_expired``, ``bundle_not_yet_valid``, ``bundle_file_missing``,
    ``bundle_file_tampered``, ``bundle_extra_file``, ``bundle_unsafe_file``,
    ``bundle_rollback`` or ``bundle_parity``. ONNX gate refusals are raised as
    :class:`~sample_protocol.onnx_gate.GateError` instead.
    """

    code = "bundle_refused"
    exit_code = 3


def build_manifest_files(files: Mapping[str, bytes]) -> dict[str, str]:
    """The ``files`` field of a :class:`ReleaseManifest`: each name's SHA-256.

    Names must be safe relative paths (``models/tax_pd.onnx``), other than the manifest
    and its signature, and no name may be a directory of another.

    >>> build_manifest_files({"card.md": b""})
    {'card.md': 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'}
    """
    out: dict[str, str] = {}
    for name in sorted(files):
        check_relpath("release bundle file name", name)
        if name in _RESERVED:
            raise ValidationError(
                f"release bundle file name: expected a name other than {sorted(_RESERVED)}, "
                f"found {name!r} (the writer makes those)",
                code="bundle_reserved_name",
            )
        data = files[name]
        if not isinstance(data, bytes | bytearray):
            raise ValidationError(
                f"release bundle file {name!r}: expected bytes, found {type(data).__name__}"
            )
        out[name] = sha256_bytes(bytes(data))
    for name in out:
        for parent in PurePosixPath(name).parents:
            if str(parent) in out:
                raise ValidationError(
                    f"release bundle file {name!r}: its directory {str(parent)!r} is also "
                    "listed as a file",
                    code="unsafe_path",
                )
    return out


def build_parity_fixture(per_model: Mapping[str, Mapping[str, Any]]) -> bytes:
    """The canonical JSON bytes of a bundle's parity fixture.

    ``per_model`` maps each model name of the manifest to its fixture (``inputs``,
    ``expected_probabilities`` and ``tolerance``: what ``parity_fixture`` in
    ``nce_model_lab`` returns). NaN must already be ``None``.

    >>> build_parity_fixture({"m": {"inputs": [[1.0]], "expected_probabilities": [0.5]}})[:40]
    b'{"kind":"BundleParityFixture","models":{'
    """
    for name, entry in per_model.items():
        if not isinstance(entry, Mapping) or not {"inputs", "expected_probabilities"} <= set(entry):
            raise ValidationError(
                f"parity fixture of model {name!r}: expected an object with inputs and "
                f"expected_probabilities, found {type(entry).__name__}",
                code="bundle_parity_fixture",
            )
    return canonical_json(
        {"kind": PARITY_FIXTURE_KIND, "models": {k: dict(v) for k, v in per_model.items()}}
    )


def _check_files_match(manifest: ReleaseManifest, digests: Mapping[str, str]) -> None:
    problems: list[str] = []
    for name in sorted(set(manifest.files) | set(digests)):
        listed, written = manifest.files.get(name), digests.get(name)
        if written is None:
            problems.append(f"{name!r} is listed but no content was given")
        elif listed is None:
            problems.append(f"{name!r} was given but is not listed")
        elif listed != written:
            problems.append(f"{name!r}: manifest says sha256 {listed}, content is {written}")
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ValidationError(
            f"release {manifest.release_id}: manifest.files must equal the SHA-256 of the "
            f"files written (use build_manifest_files): {shown}{more}",
            code="bundle_manifest_mismatch",
        )


def check_out_dir(out: Path) -> None:
    """Refuse (``bundle_exists``) an output that is a file, a link or a non-empty directory."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ValidationError(
            f"release bundle {out}: expected a new or empty directory, found a file or link",
            code="bundle_exists",
        )
    if out.is_dir() and any(out.iterdir()):
        raise ValidationError(
            f"release bundle {out}: expected a new or empty directory, found one with files "
            "(a bundle is never written over another)",
            code="bundle_exists",
        )


def write_bundle(
    out_dir: str | os.PathLike[str],
    manifest: ReleaseManifest,
    files: Mapping[str, bytes],
    lab_key: SecretKey,
) -> Path:
    """Write a signed release bundle to ``out_dir`` (new or empty); return its path.

    Every file of ``files`` is written under its relative name, then ``manifest.json``
    (the manifest's canonical bytes) and ``manifest.json.minisig`` (signed with
    ``lab_key``; the trusted comment also names release, sequence and audience). Refuses
    (:class:`ValidationError`) a manifest whose ``files`` differs from
    :func:`build_manifest_files` of ``files`` (``bundle_manifest_mismatch``) and an
    existing non-empty ``out_dir`` (``bundle_exists``). Everything is written into a
    temporary sibling directory renamed to ``out_dir`` at the end: a reader never sees
    a partial bundle.
    """
    out = Path(out_dir)
    manifest.validate()
    _check_files_match(manifest, build_manifest_files(files))
    check_out_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)  # noqa: S103 - a bundle is public (signed, not secret)
        for name in sorted(files):
            dest = safe_join(tmp, name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            _atomic.write_bytes(dest, bytes(files[name]))
        manifest_path = tmp / MANIFEST_NAME
        _atomic.write_bytes(manifest_path, manifest.canonical_bytes())
        comment = (
            default_trusted_comment(lab_key, file_name=MANIFEST_NAME)
            + f"\trelease_id:{manifest.release_id}\tsequence:{manifest.sequence}"
            + f"\taudience:{manifest.audience}"
        )
        sign_file(manifest_path, lab_key, trusted_comment=comment)
        fsync_path(tmp)
        try:
            os.rename(tmp, out)  # replaces an empty directory; refuses a non-empty one
        except OSError as exc:
            raise ValidationError(
                f"release bundle {out}: cannot move the finished bundle into place "
                f"({exc.strerror}); expected a new or empty directory",
                code="bundle_exists",
            ) from None
        fsync_path(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
