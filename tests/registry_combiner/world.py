"""A whole register world on disk: a trained and released round, the bodies' real batches.

A plain module (not a conftest) so that other tests can import it::

    from tests.registry_combiner.world import build_register_world

    world = build_register_world(tmp_path, n_entities=4000, seed=5)

What :func:`build_register_world` writes under its directory (on top of
:func:`tests.agency_runtime.round_fixtures.build_round_world`)::

    lab/ ...                             the lab's round, trained on the whole economy
    releases/<release_id>/<AUDIENCE>/    signed bundles: TAX, LEGAL_STATS, CIVIL_STATUS,
                                         REGISTER (every source but the optional CUSTOMS)
    batches/<SOURCE>/                    each body's batch, scored by the real
                                         agency_runtime.score.score_population
                                         (TAX's sealed to the register)
    feeds/<SOURCE>.parquet               the direct sources (the economy's extracts)
    feeds/TAX_LISTS.parquet              the TAX source's list columns
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from agency_runtime.score import score_population
from registry_combiner.feeds import LISTS
from registry_combiner.store import LISTS_SOURCE
from sample_protocol.catalogue import Catalogue
from sample_protocol.records_release import REGISTER_AUDIENCE
from tests.agency_runtime.lab_shortcut import release_from_economy
from tests.agency_runtime.round_fixtures import REGISTER, World, build_round_world

__all__ = ["AS_OF", "RegisterWorld", "build_register_world"]

#: The as-of date of the world's batches.
AS_OF = dt.date(2025, 1, 1)


@dataclasses.dataclass(frozen=True)
class RegisterWorld:
    """Paths of a register world (see the module docstring)."""

    world: World
    release_id: str
    bundles: dict[str, Path]
    batches: dict[str, Path]
    feeds: dict[str, Path]

    @property
    def register_bundle(self) -> Path:
        return self.bundles[REGISTER_AUDIENCE]

    @property
    def register_key(self) -> Path:
        return self.world.key(REGISTER)

    def copy_batch(self, source: str, dest: Path) -> Path:
        """A copy of ``source``'s batch directory at ``dest`` (to tamper with)."""
        shutil.copytree(self.batches[source], dest)
        return dest


def _lab(world: World, root: Path, n: int) -> tuple[str, list[Path]]:
    bundles, _ = release_from_economy(
        world, root, sample_size=n, force="register tests: a small synthetic economy"
    )
    return bundles[0].parent.name, bundles


def build_register_world(root: Path, n_entities: int = 4000, seed: int = 5) -> RegisterWorld:
    """Build the world under ``root`` (about 25 s for 4,000 entities on 2 cores)."""
    root = Path(root)
    sources = [c for c in Catalogue.default().source_codes() if c != "CUSTOMS"]
    world = build_round_world(root, n_entities=n_entities, seed=seed, sources=sources)
    release_id, bundle_dirs = _lab(world, root, n_entities)
    bundles = {p.name: p for p in bundle_dirs}
    batches: dict[str, Path] = {}
    for source, bundle in sorted(bundles.items()):
        if source == REGISTER_AUDIENCE:
            continue
        body = world.body_of[source]
        out = root / "batches" / source
        score_population(
            bundle,
            world.extract(source),
            source=source,
            key=world.secret(body),
            out=out,
            state_dir=world.state(body),
            trust=world.trust_root,
            seal_to=world.public(REGISTER) if source == "TAX" else None,
            as_of=AS_OF,
        )
        batches[source] = out
    feeds: dict[str, Path] = {}
    cat = Catalogue.default()
    for spec in cat.direct_sources():
        if spec.code in world.sources:
            feeds[spec.code] = world.extract(spec.code)
    tax = pq.read_table(world.extract("TAX"), columns=["bin", *LISTS])
    lists = root / "feeds" / f"{LISTS_SOURCE}.parquet"
    lists.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(tax, lists)
    feeds[LISTS_SOURCE] = lists
    return RegisterWorld(
        world=world, release_id=release_id, bundles=bundles, batches=batches, feeds=feeds
    )
