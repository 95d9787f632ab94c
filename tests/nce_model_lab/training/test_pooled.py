"""``nce_model_lab.training.pooled``: the price of privacy on a 10,000-entity economy."""

from __future__ import annotations

from nce_model_lab.training.features import economy_training_table
from nce_model_lab.training.pooled import price_of_privacy
from sample_protocol.catalogue import index_ids
from sample_protocol.synthetic import generate_economy


def test_federated_close_to_pooled():
    table, truth = economy_training_table(generate_economy(10_000, seed=1))
    result = price_of_privacy(table, truth, seed=0)
    assert set(result) == set(index_ids())
    for price in result.values():
        assert price.n_test == 3000 and price.n_train == 7000
        assert price.federated_auc >= price.pooled_auc - 0.04, price
        assert price.oracle_auc is not None and price.oracle_auc >= price.pooled_auc - 0.02
        assert price.federated_auc > 0.7
