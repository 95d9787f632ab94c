"""Shared training fixtures: a 5,000-entity economy's training table and its federated model."""

from __future__ import annotations

import pytest

from nce_model_lab.training.combiner import train_federated
from nce_model_lab.training.features import economy_training_table
from sample_protocol.synthetic import generate_economy

N = 5_000


@pytest.fixture(scope="session")
def economy_table():
    table, truth = economy_training_table(generate_economy(N, seed=3))
    return table, truth


@pytest.fixture(scope="session")
def federated(economy_table):
    table, _ = economy_table
    return train_federated(table, seed=0)
