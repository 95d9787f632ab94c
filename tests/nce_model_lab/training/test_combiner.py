"""``nce_model_lab.training.combiner``: coverage, dropout, calibration, export."""

from __future__ import annotations

import numpy as np

from nce_model_lab.evaluate import auc, expected_calibration_error
from nce_model_lab.onnx_export import check_parity
from nce_model_lab.training.combiner import log_odds
from nce_model_lab.training.features import economy_training_table, outcome
from sample_protocol.catalogue import index_ids
from sample_protocol.synthetic import generate_economy


def _holdout():
    return economy_training_table(generate_economy(4_000, seed=11))


def test_one_combiner_per_index(federated):
    assert set(federated.combiners) == set(index_ids())
    rep = federated.combiners["business_reputation"]
    assert set(rep.preliminary_sources) == {"TAX", "LEGAL_STATS", "CIVIL_STATUS", "CUSTOMS"}
    assert "COURT__civil_cases_3y" in rep.input_names and "TAX__missing" in rep.input_names


def test_a_source_missing_at_predict_time(federated):
    table, _ = _holdout()
    full = federated.predict_proba(table)
    without = federated.predict_proba(table, missing_sources={"TAX"})
    for index in index_ids():
        y = outcome(table, index)
        assert np.isfinite(without[index]).all() and without[index].shape == (table.num_rows,)
        assert auc(y, without[index]) > 0.65  # still informative without the tax body
        assert auc(y, full[index]) >= auc(y, without[index]) - 0.01
        assert not np.allclose(full[index], without[index])


def test_calibrated_and_better_than_any_single_source(federated):
    table, _ = _holdout()
    p = federated.predict_proba(table)
    for index in index_ids():
        y = outcome(table, index)
        assert expected_calibration_error(y, p[index]) <= 0.05
        best_single = max(
            auc(y, np.nan_to_num(m.predict_proba(table), nan=0.5))
            for m in federated.preliminary.for_index(index)
        )
        assert auc(y, p[index]) >= best_single - 0.01


def test_combiner_export_parity(economy_table, federated):
    table, _ = economy_table
    combiner = federated.combiners["financial_stability"]
    prelim = federated.preliminary_probabilities(table, "financial_stability")
    X = combiner.matrix(table.slice(0, 2000), {s: p[:2000] for s, p in prelim.items()})
    report = check_parity(combiner.model, combiner.to_onnx(), X)
    assert report.max_abs_diff <= 1e-5 and report.category_flips == 0


def test_log_odds_clipped_and_nan_kept():
    got = log_odds([0.5, 0.0, 1.0, np.nan])
    assert got[0] == 0 and -10.01 < got[1] < -9.99 and 9.99 < got[2] < 10.01
    assert np.isnan(got[3])
