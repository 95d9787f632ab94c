"""Tests of nce_model_lab/scorecard/binning.py: the WOEBinner transformer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import check_estimator

from nce_model_lab.errors import LabError, ModelInputError
from nce_model_lab.scorecard.binning import FeatureBins, WOEBinner

#: check_estimator's checks that give a transformer a 3- or 4-class target: WOE needs a
#: binary one, so WOEBinner refuses it. The same checks pass on _AnyTargetBinner below.
_MULTICLASS_TARGET = "the check fits on a 3- or 4-class target; WOE needs a binary target"
EXPECTED_FAILED_CHECKS = {
    name: _MULTICLASS_TARGET
    for name in (
        "check_dict_unchanged",
        "check_dont_overwrite_parameters",
        "check_dtype_object",
        "check_estimators_fit_returns_self",
        "check_estimators_overwrite_params",
        "check_f_contiguous_array_estimator",
        "check_fit2d_predict1d",
        "check_fit_score_takes_y",
        "check_methods_sample_order_invariance",
        "check_methods_subset_invariance",
        "check_n_features_in_after_fitting",
        "check_positive_only_tag_during_fit",
        "check_readonly_memmap_input",
    )
}


class _AnyTargetBinner(WOEBinner):
    """WOEBinner with the event ``y == max(y)``, so every check of check_estimator runs."""

    def fit(self, X, y):  # type: ignore[no-untyped-def]
        if y is None:
            return super().fit(X, y)
        arr = np.asarray(y)
        return super().fit(X, arr == arr.max())


def _data(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    X[rng.random((n, 4)) < 0.08] = np.nan
    X[rng.random((n, 4)) < 0.08] = 0.0
    logit = 1.2 * np.nan_to_num(X[:, 0]) - 0.9 * np.nan_to_num(X[:, 1]) + np.isnan(X[:, 2])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def test_check_estimator_with_documented_skips() -> None:
    results = check_estimator(
        WOEBinner(), expected_failed_checks=EXPECTED_FAILED_CHECKS, on_skip=None
    )
    assert any(r["status"] == "passed" for r in results)


def test_check_estimator_full_when_target_binarised() -> None:
    results = check_estimator(_AnyTargetBinner(), on_fail=None, on_skip=None)
    failed = [r["check_name"] for r in results if r["status"] == "failed"]
    assert failed == []


def test_contract_clone_and_params() -> None:
    binner = WOEBinner(max_bins=5, min_bin_share=0.1, monotonic=False, special_zero=False)
    assert binner.get_params() == {
        "max_bins": 5, "min_bin_share": 0.1, "monotonic": False, "special_zero": False
    }
    X, y = _data()
    fitted = binner.fit(X, y)
    assert fitted is binner
    copy = clone(binner)
    assert not hasattr(copy, "bins_")
    assert copy.get_params() == binner.get_params()
    assert copy.set_params(max_bins=3) is copy and copy.max_bins == 3


def test_bad_params_refused() -> None:
    X, y = _data(200)
    with pytest.raises(ValueError, match="max_bins"):
        WOEBinner(max_bins=0).fit(X, y)
    with pytest.raises(ValueError, match="min_bin_share"):
        WOEBinner(min_bin_share=0.9).fit(X, y)


def test_woe_monotone_per_feature_and_bins_limited() -> None:
    X, y = _data()
    binner = WOEBinner(max_bins=6, min_bin_share=0.05).fit(X, y)
    assert len(binner.bins_) == 4
    for b in binner.bins_:
        assert isinstance(b, FeatureBins)
        assert b.edges.dtype == np.float32 and b.woe.dtype == np.float32
        assert b.woe.size == b.edges.size + 1 <= 6
        steps = b.direction * np.diff(b.woe.astype(np.float64))
        assert np.all(steps >= 0), b.woe
        assert np.all(np.diff(b.edges) > 0)
        assert b.counts.sum() + b.n_missing + b.n_zero == X.shape[0]
        assert np.all(b.counts >= 0.05 * X.shape[0])
    # Risk rises with x0 and falls with x1; missing x2 is riskier than average.
    assert binner.bins_[0].direction == 1 and binner.bins_[1].direction == -1
    assert binner.bins_[0].woe[-1] > 0 > binner.bins_[0].woe[0]
    assert binner.bins_[2].woe_missing > 0.3


def test_no_row_dropped_and_specials_routed() -> None:
    X, y = _data()
    binner = WOEBinner().fit(X, y)
    W = binner.transform(X)
    assert W.shape == X.shape and W.dtype == np.float32
    assert np.isfinite(W).all()
    idx = binner.bin_index(X)
    for j, b in enumerate(binner.bins_):
        assert np.all(W[np.isnan(X[:, j]), j] == np.float32(b.woe_missing))
        assert np.all(idx[np.isnan(X[:, j]), j] == -1)
        assert b.has_zero_bin
        assert np.all(W[X[:, j] == 0, j] == np.float32(b.woe_zero))
        assert np.all(idx[X[:, j] == 0, j] == -2)


def test_edges_are_left_closed_in_float32() -> None:
    X, y = _data()
    binner = WOEBinner().fit(X, y)
    b = binner.bins_[0]
    edge = b.edges[1]
    below = np.nextafter(edge, np.float32(-np.inf))
    probe = np.zeros((3, 4), dtype=np.float32)
    probe[:, 0] = [below, edge, np.nextafter(edge, np.float32(np.inf))]
    probe[:, 1:] = 1.0
    assert binner.bin_index(probe)[:, 0].tolist() == [1, 2, 2]
    # float64 input is compared after rounding to float32, as ONNX will do.
    assert binner.bin_index(probe.astype(np.float64))[:, 0].tolist() == [1, 2, 2]


def test_unseen_specials_fall_back() -> None:
    rng = np.random.default_rng(3)
    X = rng.uniform(1, 2, size=(500, 1)).astype(np.float32)
    y = (rng.random(500) < 0.3).astype(int)
    binner = WOEBinner().fit(X, y)
    b = binner.bins_[0]
    assert not b.has_zero_bin and b.n_missing == 0
    W = binner.transform(np.array([[np.nan], [0.0]], dtype=np.float32))
    assert W[0, 0] == 0.0  # no missing at fit time: population average
    assert W[1, 0] == b.woe[0]  # no zero at fit time: the interval bin holding 0


def test_special_zero_off_and_constant_feature() -> None:
    X, y = _data()
    X[:, 3] = 5.0
    binner = WOEBinner(special_zero=False, monotonic=False).fit(X, y)
    assert not any(b.has_zero_bin for b in binner.bins_)
    assert binner.bins_[3].edges.size == 0
    assert np.ptp(binner.transform(X)[:, 3]) == 0


def test_pandas_columns_and_feature_names() -> None:
    X, y = _data()
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    binner = WOEBinner().fit(frame, y)
    assert list(binner.get_feature_names_out()) == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(binner.transform(frame), WOEBinner().fit(X, y).transform(X))


def test_string_column_refused_with_its_name() -> None:
    X, y = _data(100)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    frame["b"] = ["x"] * 100
    with pytest.raises(ModelInputError, match="'b'") as info:
        WOEBinner().fit(frame, y)
    assert info.value.code == "non_numeric_input"
    assert isinstance(info.value, LabError)
    arr = X.astype(object)
    arr[5, 2] = "oops"
    with pytest.raises(ModelInputError, match="column 2") as info:
        WOEBinner().fit(arr, y)
    assert info.value.code == "non_numeric_input"


def test_wrong_width_refused() -> None:
    X, y = _data(200)
    binner = WOEBinner().fit(X, y)
    with pytest.raises(ModelInputError, match="X has 3 features, but WOEBinner is expecting 4"
                       ) as info:
        binner.transform(X[:, :3])
    assert info.value.code == "wrong_width"


def test_target_must_be_binary() -> None:
    X, _ = _data(90)
    with pytest.raises(ModelInputError, match="found 3 class") as info:
        WOEBinner().fit(X, np.arange(90) % 3)
    assert info.value.code == "not_binary_target"
    with pytest.raises(ModelInputError, match="continuous") as info:
        WOEBinner().fit(X, np.linspace(0, 1, 90))
    assert info.value.code == "not_binary_target"


def test_infinity_refused() -> None:
    X, y = _data(100)
    X[3, 1] = np.inf
    with pytest.raises(ModelInputError, match="infinity"):
        WOEBinner().fit(X, y)
