"""A whole round up to the lab's signed release, for the tests of ``verify`` and ``score``.

A plain module (like ``round_fixtures``), imported by the test modules that need it.
:func:`release_world` runs, in process and once per test session, what ``nce-lab demo``
runs as separate commands: keys and a signed trust root (``build_round_world``), a sample
request for TAX and LEGAL_STATS, the tax body's random-ID lists, both bodies'
depersonalised samples (so TAX's ``tax_office_code`` reaches the lab generalised, as in a
real round), the lab's ingest, training and release::

    rw = release_world(tmp_path_factory)
    rw.bundle("TAX")                      # releases/<release_id>/TAX (read-only: copy it)
    rw.world.extract("TAX")               # the tax body's raw population (Parquet)

:func:`resign` writes a changed copy of a bundle, signed again (by the lab, or by a rogue).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from unittest import mock

import pytest

import nce_model_lab.release as release_module
from agency_runtime.issue_list import issue_lists
from agency_runtime.prepare_sample import prepare_sample
from nce_model_lab.release import release_round, train_round
from nce_model_lab.sample_ingest import ingest_samples
from nce_model_lab.sample_request import create_sample_request
from sample_protocol.bundle import build_manifest_files, write_bundle
from sample_protocol.keys import SecretKey
from sample_protocol.records import MANIFEST_NAME, ReleaseManifest
from sample_protocol.scores import CutoffRule

from .round_fixtures import LAB, REGISTER, TAX_BODY, World, build_round_world

__all__ = ["N_ENTITIES", "SOURCES", "ReleaseWorld", "read_bundle", "release_world", "resign"]

N_ENTITIES = 1500
SOURCES = ("TAX", "LEGAL_STATS")


@dataclasses.dataclass(frozen=True)
class ReleaseWorld:
    world: World
    lab: Path
    request_id: str
    release_id: str
    bundles: dict[str, Path]

    def bundle(self, audience: str) -> Path:
        return self.bundles[audience]

    def body(self, source: str) -> str:
        return self.world.body_of[source]

    def trust_args(self) -> list[str]:
        return ["--trust", str(self.world.trust), "--root-pub", str(self.world.root_pub)]

    @property
    def register(self) -> str:
        return REGISTER


def _stub_card(*_args: object, **_kwargs: object) -> str:
    return "<html><body>model card (stub for the agency tests)</body></html>"


@functools.lru_cache(maxsize=2)
def _build(base: Path) -> ReleaseWorld:
    if base.exists():
        shutil.rmtree(base)
    world = build_round_world(base / "world", n_entities=N_ENTITIES, seed=5, sources=SOURCES)
    lab = base / "lab"
    request, path = create_sample_request(
        lab_key=world.secret(LAB),
        trust=world.trust_root,
        lab_dir=lab,
        out=base / "outbox",
        sources=SOURCES,
        sample_size=N_ENTITIES // 2,
        sent_on=dt.date(2025, 3, 3),
        as_of=dt.date(2024, 1, 1),
    )
    issue_lists(
        path,
        trust=world.trust_root,
        key=world.secret(TAX_BODY),
        register=world.extract("TAX"),
        state_dir=world.state(TAX_BODY),
        out_dir=base / "lists",
    )
    samples = []
    for code in SOURCES:
        body = world.body_of[code]
        prepared = prepare_sample(
            path,
            list_path=base / "lists" / f"{body}.ridlist",
            source=code,
            extract=world.extract(code),
            trust=world.trust_root,
            key=world.secret(body),
            state_dir=base / "sample-state" / body,
            out_dir=base / "samples",
            outcomes=world.outcomes if code == "TAX" else None,
            rng_seed=1,
        )
        samples.append(prepared.file)
    ingest_samples(samples, lab_key=world.secret(LAB), trust=world.trust_root, lab_dir=lab)
    # The random draw changes the training rows from run to run; the quantile rule can then
    # meet a model too flat for three categories at this size. The odds rule never does.
    train_round(lab, request.request_id, seed=0, rule=CutoffRule(method="odds"))
    # The model card's plots take seconds per model and are the lab's tests' business.
    with mock.patch.object(release_module, "render_card", _stub_card, create=True):
        bundles = release_round(
            lab,
            request.request_id,
            lab_key=world.secret(LAB),
            trust=world.trust_root,
            out_dir=base / "releases",
            force="test fixture: a 1,500-entity economy is too small for the quality gates",
        )
    manifest = ReleaseManifest.from_json((bundles[0] / MANIFEST_NAME).read_bytes())
    return ReleaseWorld(
        world=world,
        lab=lab,
        request_id=request.request_id,
        release_id=manifest.release_id,
        bundles={b.name: b for b in bundles},
    )


def release_world(factory: pytest.TempPathFactory) -> ReleaseWorld:
    """The session's release world (built on first use, under the session's base temp)."""
    return _build(factory.getbasetemp() / "release-world")


def read_bundle(bundle: Path) -> tuple[ReleaseManifest, dict[str, bytes]]:
    """A bundle's manifest and the bytes of every file it lists."""
    manifest = ReleaseManifest.from_json((bundle / MANIFEST_NAME).read_bytes())
    return manifest, {name: (bundle / name).read_bytes() for name in manifest.files}


def resign(
    src: Path,
    dest: Path,
    key: SecretKey,
    *,
    files: Mapping[str, bytes | None] | None = None,
    edit: Callable[[ReleaseManifest], ReleaseManifest] | None = None,
) -> Path:
    """Write ``src`` again at ``dest`` with ``files`` replaced (``None``: removed), the
    manifest's digests brought up to date, then ``edit`` applied, signed by ``key``."""
    manifest, content = read_bundle(src)
    for name, data in (files or {}).items():
        if data is None:
            content.pop(name, None)
        else:
            content[name] = data
    digests = build_manifest_files(content)
    models = tuple(
        dataclasses.replace(m, sha256=digests.get(m.file, m.sha256)) for m in manifest.models
    )
    manifest = dataclasses.replace(manifest, files=digests, models=models)
    if edit is not None:
        manifest = edit(manifest)
    return write_bundle(dest, manifest, content, key)
