"""Tests of nce_model_lab/scorecard/model.py: the Scorecard classifier."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.utils.estimator_checks import check_estimator

from nce_model_lab.errors import ModelInputError
from nce_model_lab.scorecard.model import Scorecard


def _data(n: int = 5000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    X[rng.random((n, 4)) < 0.08] = np.nan
    X[rng.random((n, 4)) < 0.08] = 0.0
    logit = 1.5 * np.nan_to_num(X[:, 0]) - 1.0 * np.nan_to_num(X[:, 1]) + np.isnan(X[:, 2])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(X, columns=["debt", "assets", "staff", "noise"]), y


def test_check_estimator_passes() -> None:
    results = check_estimator(Scorecard(), on_skip=None)
    assert results and all(r["status"] in ("passed", "skipped") for r in results)


def test_contract_clone_params_and_grid_search() -> None:
    card = Scorecard(max_bins=4, C=0.5)
    params = card.get_params()
    assert params["max_bins"] == 4 and params["C"] == 0.5 and params["special_zero"] is True
    copy = clone(card).set_params(max_bins=3)
    assert copy.max_bins == 3 and card.max_bins == 4
    X, y = _data(1200)
    search = GridSearchCV(Scorecard(), {"max_bins": [3, 6]}, cv=3, scoring="roc_auc").fit(X, y)
    assert search.best_params_["max_bins"] in (3, 6)
    assert Scorecard().fit(X, y) is not None


def test_fit_predict_and_no_row_dropped() -> None:
    X, y = _data()
    card = Scorecard().fit(X, y)
    assert card.classes_.tolist() == [0, 1]
    proba = card.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert card.score(X, y) > 0.6
    assert set(card.predict(X).tolist()) <= {0, 1}
    all_missing = pd.DataFrame(np.full((3, 4), np.nan, dtype=np.float32), columns=X.columns)
    assert np.isfinite(card.predict_proba(all_missing)).all()
    # Coefficients on WOE are positive for informative features (WOE already points at risk).
    assert card.classifier_.coef_[0][0] > 0 and card.classifier_.coef_[0][1] > 0


def test_predictions_monotone_in_each_feature() -> None:
    X, y = _data()
    card = Scorecard().fit(X, y)
    grid = np.linspace(-3, 3, 301, dtype=np.float32)
    grid = grid[grid != 0]
    for j, b in enumerate(card.binner_.bins_):
        rows = np.ones((grid.size, 4), dtype=np.float32)
        rows[:, j] = grid
        p = card.predict_proba(pd.DataFrame(rows, columns=X.columns))[:, 1]
        sign = b.direction * np.sign(card.classifier_.coef_[0][j])
        assert np.all(sign * np.diff(p) >= -1e-12)


def test_points_table_is_readable() -> None:
    X, y = _data()
    card = Scorecard(max_bins=5).fit(X, y)
    table = card.points_table()
    assert list(table.columns) == [
        "feature", "bin", "count", "events", "event_rate", "woe", "coefficient", "contribution"
    ]
    assert table["feature"].iloc[-1] == "(intercept)"
    body = table.iloc[:-1]
    assert set(body["feature"]) == {"debt", "assets", "staff", "noise"}
    for name, part in body.groupby("feature"):
        assert part["count"].sum() == len(X), name
        assert {"missing", "zero"} <= set(part["bin"])
        assert part["bin"].iloc[0].startswith("(-inf, ")
        assert ", inf)" in part[~part["bin"].isin(["missing", "zero"])]["bin"].iloc[-1]
    np.testing.assert_allclose(body["contribution"], body["coefficient"] * body["woe"])
    # The table reproduces the model: intercept + sum of the row's bins = log-odds.
    row = X.iloc[[7]]
    woe = card.binner_.transform(row.to_numpy())[0]
    logit = card.classifier_.intercept_[0] + float(woe @ card.classifier_.coef_[0])
    np.testing.assert_allclose(card.decision_function(row)[0], logit, rtol=1e-6)


def test_reason_codes_pick_the_riskiest_features() -> None:
    X, y = _data()
    card = Scorecard().fit(X, y)
    risky = pd.DataFrame([[3.0, -3.0, np.nan, 0.1]], columns=X.columns, dtype=np.float32)
    codes = card.reason_codes(risky, top=2)
    assert codes == [("debt", "assets")]
    safe = pd.DataFrame([[-3.0, 3.0, 0.5, 0.1]], columns=X.columns, dtype=np.float32)
    assert "debt" not in card.reason_codes(safe)[0]
    assert "assets" not in card.reason_codes(safe)[0]
    contrib = card.contributions(X)
    for row, names in zip(contrib[:50], card.reason_codes(X.iloc[:50], top=4), strict=True):
        positive = sorted((-v, j) for j, v in enumerate(row) if v > 0)
        assert names == tuple(X.columns[j] for _, j in positive[:4])
    with pytest.raises(ValueError, match="top"):
        card.reason_codes(X, top=0)


def test_array_input_names_features_x0() -> None:
    X, y = _data(800)
    card = Scorecard().fit(X.to_numpy(), y)
    assert card.feature_names() == ["x0", "x1", "x2", "x3"]
    assert set(card.points_table()["feature"]) == {"x0", "x1", "x2", "x3", "(intercept)"}


def test_string_labels_event_is_larger_class() -> None:
    X, y = _data(1500)
    labels = np.where(y == 1, "bad", "aaa_good")
    card = Scorecard().fit(X, labels)
    assert card.classes_.tolist() == ["aaa_good", "bad"]
    assert set(card.predict(X)) <= {"aaa_good", "bad"}


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_bad_input_errors() -> None:
    X, y = _data(500)
    card = Scorecard().fit(X, y)
    with pytest.raises(ModelInputError, match="X has 3 features, but Scorecard is expecting 4"
                       ) as info:
        card.predict_proba(X.to_numpy()[:, :3])
    assert info.value.code == "wrong_width"
    bad = X.copy()
    bad["staff"] = bad["staff"].astype(str)
    with pytest.raises(ModelInputError, match="'staff'") as info:
        Scorecard().fit(bad, y)
    assert info.value.code == "non_numeric_input"
    with pytest.raises(ModelInputError, match="'staff'") as info:
        card.predict_proba(bad)
    assert info.value.code == "non_numeric_input"
    with pytest.raises(ModelInputError, match="Only binary") as info:
        Scorecard().fit(X, np.arange(500) % 3)
    assert info.value.code == "not_binary_target"
    renamed = X.rename(columns={"noise": "other"})
    with pytest.raises(ModelInputError, match="other") as info:
        card.predict_proba(renamed)
    assert info.value.code == "wrong_columns"
