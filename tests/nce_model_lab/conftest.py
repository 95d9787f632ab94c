"""Shared lab fixtures: one trained round and one release for the whole session.

``trained`` is a lab whose request holds a 4,000-entity economy's training table (every
source of the round world), trained once (``train_round``, seed 0). Its CUSTOMS models see
only 54 test rows and fail the default quality gates, so ``released`` forces the release
with :data:`FORCE_REASON` (which the tests of the gates and the card rely on). Tests that
change a lab work on a copy (:func:`copy_lab`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nce_model_lab.labdir import LabDir
from nce_model_lab.release import TrainedRound, release_round, train_round
from nce_model_lab.sample_request import create_sample_request
from nce_model_lab.training.features import economy_training_table
from tests.agency_runtime.round_fixtures import LAB, World, build_round_world

N_ENTITIES = 4000
#: The reason the session's release is forced with.
FORCE_REASON = "test lab: CUSTOMS has 54 test rows"


@dataclasses.dataclass
class Lab:
    """A world (keys, trust root, economy) and a lab directory with one request."""

    world: World
    lab: Path
    request_id: str

    @property
    def models_dir(self) -> Path:
        return LabDir(self.lab).round_dir(self.request_id) / "models"


def add_request(world: World, lab: Path, outbox: Path) -> str:
    request, _ = create_sample_request(
        lab_key=world.secret(LAB),
        trust=world.trust_root,
        lab_dir=lab,
        out=outbox,
        sample_size=N_ENTITIES,
        sent_on=dt.date(2025, 3, 3),
        as_of=dt.date(2024, 1, 1),
    )
    return request.request_id


def new_lab(root: Path) -> Lab:
    """A lab whose request has the whole economy's training table (not trained yet)."""
    world = build_round_world(root / "world", n_entities=N_ENTITIES, seed=5)
    lab = root / "lab"
    request_id = add_request(world, lab, root / "outbox")
    table, _ = economy_training_table(world.economy)
    path = LabDir(lab).training_path(request_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return Lab(world, lab, request_id)


def copy_lab(src: Lab, dest: Path) -> Lab:
    shutil.copytree(src.lab, dest)
    return Lab(src.world, dest, src.request_id)


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> tuple[Lab, TrainedRound]:
    lab = new_lab(tmp_path_factory.mktemp("release"))
    return lab, train_round(lab.lab, lab.request_id, seed=0)


@pytest.fixture(scope="session")
def released(trained, tmp_path_factory) -> tuple[Lab, list[Path]]:
    lab, _ = trained
    out = tmp_path_factory.mktemp("bundles")
    bundles = release_round(
        lab.lab,
        lab.request_id,
        lab_key=lab.world.secret(LAB),
        trust=lab.world.trust_root,
        out_dir=out,
        force=FORCE_REASON,
    )
    return lab, bundles
