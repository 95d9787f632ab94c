"""``nce-lab card``: write the model card of a trained round or of a release.

:func:`write_card` takes a *target*:

* a release bundle directory (``OUT/<release_id>/<AUDIENCE>``, holding ``manifest.json``):
  the card of that bundle's models, with the gates and overrides its manifest records;
* a release directory (``OUT/<release_id>``, holding the bundles): one card for every
  model of the release;
* a request id of the lab (a trained round, released or not): every model of the round,
  checked against the given gates (default :data:`~nce_model_lab.quality.DEFAULT_GATES`).

The measures come from the round's ``evaluation.json`` in the lab directory, so a
release's card needs the lab that made it, and the round must still be the one released:
the release's training-table hash and every model's SHA-256 must match
(``card_round_changed`` otherwise; the card inside the bundle is then the record). The
manifest is read and validated but its signature is not checked here (``agency-runtime
verify`` does that); the card is written to ``out`` or, by default, to
``LAB/rounds/<id>/cards/<round|release_id[.AUDIENCE]>.html``, atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sample_protocol import _atomic
from sample_protocol.records import MANIFEST_NAME, REGISTER_AUDIENCE, ReleaseManifest

from .card import ReleaseInfo, render_card
from .errors import LabError
from .labdir import LabDir
from .quality import DEFAULT_GATES, GateFailure, QualityGates, check_models
from .trained import TrainedModel, TrainedRound, load_trained_round

__all__ = ["CARDS_DIR", "WrittenCard", "write_card"]

#: Directory of the cards ``nce-lab card`` writes by default, inside ``LAB/rounds/<id>/``.
CARDS_DIR = "cards"


@dataclass(frozen=True, slots=True)
class WrittenCard:
    """What :func:`write_card` wrote: the file, and what the card covers."""

    path: Path
    request_id: str
    release_id: str | None
    audiences: tuple[str, ...]
    models: tuple[str, ...]
    failures: tuple[GateFailure, ...]
    overrides: tuple[str, ...]


def _bundles(path: Path) -> list[Path]:
    if (path / MANIFEST_NAME).is_file():
        return [path]
    found = sorted(d for d in path.iterdir() if d.is_dir() and (d / MANIFEST_NAME).is_file())
    # The register's bundle last, as release writes them.
    return sorted(found, key=lambda d: (d.name == REGISTER_AUDIENCE, d.name))


def _manifests(path: Path) -> list[ReleaseManifest]:
    bundles = _bundles(path)
    if not bundles:
        raise LabError(
            f"{path}: expected a release bundle (with {MANIFEST_NAME}) or a release directory "
            "holding bundles, found neither",
            code="card_not_a_release",
        )
    manifests = [
        ReleaseManifest.from_json((b / MANIFEST_NAME).read_bytes(), where=str(b / MANIFEST_NAME))
        for b in bundles
    ]
    ids = sorted({m.release_id for m in manifests})
    if len(ids) > 1:
        raise LabError(
            f"{path}: expected the bundles of one release, found {len(ids)}: {', '.join(ids)}",
            code="card_mixed_release",
        )
    return manifests


def _release_models(
    trained: TrainedRound, manifests: list[ReleaseManifest], where: Path
) -> list[TrainedModel]:
    first = manifests[0]
    if first.training.get("training_sha256") != trained.training_sha256:
        raise LabError(
            f"{where}: release {first.release_id} was trained on a table with sha256 "
            f"{first.training.get('training_sha256')}, the lab's round "
            f"{trained.request_id} now has {trained.training_sha256}; the round changed "
            "since, so the card inside the bundle is the card of that release",
            code="card_round_changed",
        )
    models: list[TrainedModel] = []
    for manifest in manifests:
        for entry in manifest.models:
            try:
                model = trained.model(entry.name)
            except KeyError:
                model = None
            if model is None or model.sha256 != entry.sha256:
                raise LabError(
                    f"{where}: model {entry.name} of release {manifest.release_id} has sha256 "
                    f"{entry.sha256}, expected the lab's trained model "
                    f"({'none' if model is None else model.sha256}); the round was trained "
                    "again since, so the card inside the bundle is the card of that release",
                    code="card_round_changed",
                )
            models.append(model)
    return models


def _default_out(lab: LabDir, request_id: str, label: str) -> Path:
    return lab.round_dir(request_id) / CARDS_DIR / f"{label}.html"


def _card_of_release(lab: LabDir, path: Path, out: str | os.PathLike[str] | None) -> WrittenCard:
    manifests = _manifests(path)
    first = manifests[0]
    request_id = first.training.get("request_id")
    if not request_id:
        raise LabError(
            f"{path}: expected the release's training notes to name its request_id, found none",
            code="card_no_request",
        )
    trained = load_trained_round(lab.root, request_id)
    models = _release_models(trained, manifests, path)
    recorded = first.training.get("quality_gates")
    gates = None if recorded is None else QualityGates.from_json(recorded, where=str(path))
    overrides = tuple(dict.fromkeys(o for m in manifests for o in m.quality_overrides))
    audiences = tuple(m.audience for m in manifests)
    info = ReleaseInfo(
        release_id=first.release_id,
        sequence=first.sequence,
        audiences=audiences,
        created_at=first.created_at,
        expires_at=first.expires_at,
        lab=first.lab,
    )
    html = render_card(trained, models=models, gates=gates, overrides=overrides, release=info)
    label = first.release_id if len(manifests) > 1 else f"{first.release_id}.{audiences[0]}"
    dest = Path(out) if out is not None else _default_out(lab, request_id, label)
    _atomic.write_text(dest, html)
    return WrittenCard(
        path=dest,
        request_id=request_id,
        release_id=first.release_id,
        audiences=audiences,
        models=tuple(m.name for m in models),
        failures=() if gates is None else check_models(models, gates),
        overrides=overrides,
    )


def write_card(
    lab_dir: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    gates: QualityGates | None = None,
) -> WrittenCard:
    """Write the HTML model card of ``target`` (see the module docstring); return what.

    ``gates`` apply to a round only: a release's card shows the gates its manifest
    records (``bad_option`` if ``gates`` is given with a release). Refuses a target that
    is neither a release nor a request of the lab (``card_target_unknown``), a round not
    trained (``not_trained``) and a release whose round was trained again
    (``card_round_changed``).
    """
    lab = LabDir(lab_dir)
    path = Path(target)
    if path.is_dir():
        if gates is not None:
            raise LabError(
                f"{path}: the quality gates of a release are the ones its manifest records; "
                "leave out --min-auc, --max-auc and --max-ece",
                code="bad_option",
            )
        return _card_of_release(lab, path, out)
    request_id = str(target)
    if request_id not in lab.read_registry().requests:
        raise LabError(
            f"{target}: expected a release bundle directory, a release directory or a request "
            f"id of the lab {lab.root}, found none of these",
            code="card_target_unknown",
        )
    trained = load_trained_round(lab.root, request_id)
    chosen = gates or DEFAULT_GATES
    html = render_card(trained, gates=chosen)
    dest = Path(out) if out is not None else _default_out(lab, request_id, "round")
    _atomic.write_text(dest, html)
    return WrittenCard(
        path=dest,
        request_id=request_id,
        release_id=None,
        audiences=(),
        models=tuple(m.name for m in trained.models),
        failures=check_models(trained.models, chosen),
        overrides=(),
    )
