"""A lab release without a sample round, for tests whose subject comes after the release.

The lab trains on the synthetic economy's own training table (the oracle join a sample
round would approximate) and ships a one-line model card instead of the plotted one (the
card is the lab's tests' business and takes most of a release's time; it is still listed,
hashed and signed). A plain module, imported by the agency's and the register's tests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq

from nce_model_lab.labdir import LabDir
from nce_model_lab.release import release_round, train_round
from nce_model_lab.sample_request import create_sample_request
from nce_model_lab.training.features import economy_training_table

from .round_fixtures import LAB, World


def release_from_economy(
    world: World,
    root: Path,
    *,
    sample_size: int,
    force: str,
    sources: Sequence[str] | None = None,
) -> tuple[list[Path], pa.Table]:
    """Request, train on the economy's table, release under ``root``; the bundles and the
    training table. ``force`` is the quality-gate override (test economies are small)."""
    lab = root / "lab"
    request, _ = create_sample_request(
        lab_key=world.secret(LAB),
        trust=world.trust_root,
        lab_dir=lab,
        out=root / "outbox",
        **({"sources": tuple(sources)} if sources is not None else {}),
        sample_size=sample_size,
        sent_on=dt.date(2025, 3, 3),
        as_of=dt.date(2024, 1, 1),
    )
    training, _ = economy_training_table(world.economy)
    path = LabDir(lab).training_path(request.request_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(training, path)
    train_round(lab, request.request_id, seed=0)
    with mock.patch("nce_model_lab.release.render_card", return_value="<p>test card</p>"):
        bundles = release_round(
            lab,
            request.request_id,
            lab_key=world.secret(LAB),
            trust=world.trust_root,
            out_dir=root / "releases",
            force=force,
        )
    return list(bundles), training
