"""Tests of nce_model_lab.reference: the lab's drift references and their bundle files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from nce_model_lab.errors import LabError
from nce_model_lab.reference import bundle_reference_files, reference_bytes, reference_file_name
from sample_protocol.monitoring import ReferenceDistribution, drift_report

NAMES = ("TAX__staff_count", "TAX__tax_regime")


@dataclass(frozen=True)
class Model:
    name: str
    input_names: tuple[str, ...]


def _matrix(n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.exponential(10.0, n), rng.integers(0, 3, n)]).astype(np.float32)
    return X, rng.random(n)


def test_reference_bytes_are_canonical_and_fit_the_training_rows(tmp_path: Path) -> None:
    X, p = _matrix()
    data = reference_bytes("TAX.payment_discipline", X, NAMES, p)
    ref = ReferenceDistribution.from_json(data)
    assert data == ref.canonical_bytes() + b"\n"
    assert ref.rows == 400 and ref.feature_names == NAMES
    assert drift_report(ref, X, p).score.psi == 0.0
    with pytest.raises(LabError) as err:
        reference_bytes("TAX.payment_discipline", X, NAMES[:1], p)
    assert err.value.code == "bad_reference"


def test_bundle_reference_files(tmp_path: Path) -> None:
    X, p = _matrix()
    models = [Model("TAX.payment_discipline", NAMES), Model("TAX.conscientiousness", NAMES)]
    for m in models:
        (tmp_path / reference_file_name(m.name)).write_bytes(reference_bytes(m.name, X, NAMES, p))
    files = bundle_reference_files(tmp_path, models)
    assert sorted(files) == [
        "models/TAX.conscientiousness.reference.json",
        "models/TAX.payment_discipline.reference.json",
    ]
    # a reference that belongs to another model, or to other inputs, is refused
    other = Model("TAX.payment_discipline", (*NAMES, "TAX__audits_3y"))
    with pytest.raises(LabError) as err:
        bundle_reference_files(tmp_path, [other])
    assert err.value.code == "trained_file_changed"
    (tmp_path / reference_file_name("TAX.conscientiousness")).write_text("{}")
    with pytest.raises(LabError) as err:
        bundle_reference_files(tmp_path, models)
    assert err.value.code == "trained_file_changed"
    with pytest.raises(LabError) as err:
        bundle_reference_files(tmp_path, [Model("TAX.business_reputation", NAMES)])
    assert err.value.code == "trained_file_missing"
    assert "train again" in str(err.value)
