"""Tests of nce_model_lab/scorecard/converter.py: ONNX export and parity with scikit-learn."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skl2onnx import to_onnx
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

from nce_model_lab.errors import LabError
from nce_model_lab.scorecard.binning import FeatureBins, WOEBinner
from nce_model_lab.scorecard.converter import (
    ALLOWED_OPS,
    TARGET_OPSET,
    register_converters,
    scorecard_to_onnx,
)
from nce_model_lab.scorecard.model import Scorecard


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _ops(model: onnx.ModelProto) -> set[tuple[str, str]]:
    return {(node.domain, node.op_type) for node in model.graph.node}


def _train(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, 6)) * [1, 3, 0.01, 100, 1, 1]).astype(np.float32)
    X[:, 4] = np.round(X[:, 4] * 2)  # many ties and exact zeros
    X[rng.random((n, 6)) < 0.07] = np.nan
    X[rng.random((n, 6)) < 0.05] = 0.0
    logit = np.nan_to_num(X[:, 0]) - 0.3 * np.nan_to_num(X[:, 1]) + np.isnan(X[:, 5])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def _probe(card: Scorecard, n: int, seed: int) -> np.ndarray:
    """Held-out rows plus rows made of exact edges, their float32 neighbours, 0, -0, NaN."""
    X, _ = _train(n, seed)
    rng = np.random.default_rng(seed + 1)
    for j, b in enumerate(card.binner_.bins_):
        specials = np.concatenate(
            [
                b.edges,
                np.nextafter(b.edges, np.float32(-np.inf)),
                np.nextafter(b.edges, np.float32(np.inf)),
                np.array([0.0, -0.0, np.nan], dtype=np.float32),
            ]
        ).astype(np.float32)
        rows = rng.choice(n, size=n // 4, replace=False)
        X[rows, j] = rng.choice(specials, size=rows.size)
    return X


@pytest.fixture(scope="module")
def fitted() -> tuple[Scorecard, onnx.ModelProto]:
    X, y = _train(20_000, 0)
    card = Scorecard(max_bins=8).fit(X, y)
    return card, scorecard_to_onnx(card)


def test_scorecard_parity_10k_rows(fitted: tuple[Scorecard, onnx.ModelProto]) -> None:
    card, model = fitted
    X = _probe(card, 10_000, 7)
    assert np.isnan(X).any() and (X == 0).any()
    assert any(np.isin(X[:, j], b.edges).sum() > 100 for j, b in enumerate(card.binner_.bins_))
    label, proba = _session(model).run(None, {"X": X})
    assert proba.dtype == np.float32 and proba.shape == (10_000, 2)
    expected = card.predict_proba(X)
    diff = float(np.abs(proba - expected).max())
    assert diff <= 1e-5, diff
    agree = label == card.predict(X)
    # A label may only differ where the two probabilities are a float32 rounding from 0.5.
    assert np.all(agree | (np.abs(expected[:, 1] - 0.5) < 1e-6))


def test_graph_outputs_opsets_and_allowlist(fitted: tuple[Scorecard, onnx.ModelProto]) -> None:
    _card, model = fitted
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == ["label", "probabilities"]
    assert [i.name for i in model.graph.input] == ["X"]
    assert _ops(model) <= ALLOWED_OPS, _ops(model) - ALLOWED_OPS
    assert {node.domain for node in model.graph.node} <= {"", "ai.onnx.ml"}
    opsets = {o.domain: o.version for o in model.opset_import}
    assert opsets.get("", 0) <= TARGET_OPSET[""]
    assert opsets.get("ai.onnx.ml", 0) <= TARGET_OPSET["ai.onnx.ml"]
    assert "ZipMap" not in {node.op_type for node in model.graph.node}


def test_binner_alone_exact_parity(fitted: tuple[Scorecard, onnx.ModelProto]) -> None:
    card, _model = fitted
    register_converters()
    onx = to_onnx(
        card.binner_,
        initial_types=[("X", FloatTensorType([None, 6]))],
        target_opset=TARGET_OPSET,
    )
    X = _probe(card, 5_000, 11)
    (woe,) = _session(onx).run(None, {"X": X})
    np.testing.assert_array_equal(woe, card.binner_.transform(X))
    extremes = np.array([[np.inf] * 6, [-np.inf] * 6], dtype=np.float32)
    (woe_ext,) = _session(onx).run(None, {"X": extremes})
    for j, b in enumerate(card.binner_.bins_):  # infinities land in the outer bins
        assert woe_ext[0, j] == b.woe[-1] and woe_ext[1, j] == b.woe[0]


def test_double_input_refused(fitted: tuple[Scorecard, onnx.ModelProto]) -> None:
    card, _model = fitted
    register_converters()
    with pytest.raises(LabError, match="float32") as info:
        to_onnx(
            card.binner_,
            initial_types=[("X", DoubleTensorType([None, 6]))],
            target_opset=TARGET_OPSET,
        )
    assert info.value.code == "onnx_input_type"


def test_binner_graph_is_one_tree_per_feature(fitted: tuple[Scorecard, onnx.ModelProto]) -> None:
    card, model = fitted
    trees = [n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor"]
    assert len(trees) == card.n_features_in_
    assert all(n.domain == "ai.onnx.ml" for n in trees)
    assert [n.op_type for n in model.graph.node].count("Concat") == 1
    one = _binner_onnx(_binner([card.binner_.bins_[0]]))  # a single column needs no Concat
    assert [n.op_type for n in one.graph.node] == ["TreeEnsembleRegressor"]


def test_older_opsets_export_the_same_woe(fitted: tuple[Scorecard, onnx.ModelProto]) -> None:
    card, _model = fitted
    onx = _binner_onnx(card.binner_, {"": 12, "ai.onnx.ml": 1})
    X = _probe(card, 2_000, 13)
    np.testing.assert_array_equal(_session(onx).run(None, {"X": X})[0], card.binner_.transform(X))


_cell = st.one_of(
    st.just(float("nan")),
    st.just(0.0),
    st.floats(-1e6, 1e6, allow_nan=False, width=32),
    st.sampled_from([0.5, 1.0, 2.0, -1.0]),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.lists(_cell, min_size=3, max_size=3), min_size=30, max_size=120),
    labels_seed=st.integers(0, 2**32 - 1),
    max_bins=st.integers(1, 6),
    special_zero=st.booleans(),
    monotonic=st.booleans(),
)
def test_random_data_parity(
    rows: list[list[float]],
    labels_seed: int,
    max_bins: int,
    special_zero: bool,
    monotonic: bool,
) -> None:
    X = np.asarray(rows, dtype=np.float32)
    rng = np.random.default_rng(labels_seed)
    y = rng.integers(0, 2, size=len(X))
    y[:2] = [0, 1]
    card = Scorecard(
        max_bins=max_bins, min_bin_share=0.05, special_zero=special_zero, monotonic=monotonic
    ).fit(X, y)
    model = scorecard_to_onnx(card)
    probe = np.concatenate([X, _probe_edges(card)])
    _label, proba = _session(model).run(None, {"X": probe})
    assert float(np.abs(proba - card.predict_proba(probe)).max()) <= 1e-5
    assert _ops(model) <= ALLOWED_OPS


def _probe_edges(card: Scorecard) -> np.ndarray:
    values = [np.float32(0.0), np.float32(np.nan)]
    for b in card.binner_.bins_:
        values.extend(b.edges.tolist())
    cells = np.asarray(values, dtype=np.float32)
    return np.repeat(cells[:, None], card.n_features_in_, axis=1)


# --- the WOE graph alone, on hand-made bins: exact values at every kind of input ----------


def _binner(bins: list[FeatureBins]) -> WOEBinner:
    binner = WOEBinner()
    binner.bins_ = tuple(bins)
    binner.n_features_in_ = len(bins)
    return binner


def _binner_onnx(binner: WOEBinner, opset: dict[str, int] | None = None) -> onnx.ModelProto:
    register_converters()
    onx: onnx.ModelProto = to_onnx(
        binner,
        initial_types=[("X", FloatTensorType([None, binner.n_features_in_]))],
        target_opset=opset or TARGET_OPSET,
    )
    return onx


def _expected_woe(bins: tuple[FeatureBins, ...], X: np.ndarray) -> np.ndarray:
    """np.digitize in float32, then zero and missing: what WOEBinner.transform does, also
    for the infinities that transform's input check refuses."""
    out = np.empty(X.shape, dtype=np.float32)
    for j, b in enumerate(bins):
        x = X[:, j]
        col = b.woe[np.searchsorted(b.edges, x, side="right")]
        col = np.where(x == 0, np.float32(b.woe_zero), col)
        out[:, j] = np.where(np.isnan(x), np.float32(b.woe_missing), col)
    return out


_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
_edge = st.one_of(
    st.floats(-1e3, 1e3, width=32),
    st.sampled_from([0.0, 0.5, -0.5, 1e-38, -1e-38, 1e-45, -1e-45, 3.4e38, -3.4e38]),
    _f32,
)


@st.composite
def _feature_bins(draw: st.DrawFn) -> FeatureBins:
    edges = np.unique(np.asarray(draw(st.lists(_edge, max_size=9)), dtype=np.float32))
    woe = np.asarray(
        draw(st.lists(_f32, min_size=edges.size + 1, max_size=edges.size + 1)), dtype=np.float32
    )
    holds_zero = woe[np.searchsorted(edges, np.float32(0), side="right")]
    zero_kind = draw(st.sampled_from(["apart", "same", "negative_zero"]))
    woe_zero = {"apart": draw(_f32), "same": float(holds_zero), "negative_zero": -0.0}[zero_kind]
    counts = np.ones(edges.size + 1, dtype=np.int64)
    return FeatureBins(
        edges=edges,
        woe=woe,
        counts=counts,
        events=counts * 0,
        woe_missing=draw(_f32),
        n_missing=1,
        events_missing=0,
        woe_zero=float(np.float32(woe_zero)),
        n_zero=1,
        events_zero=0,
        has_zero_bin=zero_kind != "same",
        direction=1,
    )


def _probe_values(bins: list[FeatureBins], extra: list[float]) -> np.ndarray:
    """Every edge, its float32 neighbours, 0, -0, NaN, the infinities, the smallest
    subnormals and the largest floats, plus the drawn values, in every column."""
    values = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-45, -1e-45, 3.4028235e38, -3.4028235e38]
    for b in bins:
        values += b.edges.tolist()
        with np.errstate(over="ignore"):  # the neighbours of the largest floats are inf
            values += np.nextafter(b.edges, np.float32(-np.inf)).tolist()
            values += np.nextafter(b.edges, np.float32(np.inf)).tolist()
    cells = np.asarray(values + extra, dtype=np.float32)
    return np.repeat(cells[:, None], len(bins), axis=1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bins=st.lists(_feature_bins(), min_size=1, max_size=4),
    extra=st.lists(_f32, max_size=20),
)
def test_woe_exact_at_edges_infinities_zero_and_nan(
    bins: list[FeatureBins], extra: list[float]
) -> None:
    binner = _binner(bins)
    X = _probe_values(bins, extra)
    (woe,) = _session(_binner_onnx(binner)).run(None, {"X": X})
    expected = _expected_woe(binner.bins_, X)
    np.testing.assert_array_equal(woe, expected)  # a WOE of -0.0 may come out as +0.0
    finite = ~np.isinf(X).any(axis=1)
    with np.errstate(over="ignore", invalid="ignore"):  # scikit-learn sums +-3.4e38 rows
        np.testing.assert_array_equal(woe[finite], binner.transform(X[finite]))


def test_woe_exact_on_fitted_single_bin_and_zero_features() -> None:
    rng = np.random.default_rng(3)
    n = 4_000
    X = np.column_stack(
        [
            np.full(n, 7.0),  # one value: a single bin, no edge
            np.where(rng.random(n) < 0.5, 0.0, rng.normal(size=n)),  # half zeros: zero bin
            np.where(rng.random(n) < 0.9, np.nan, rng.normal(size=n)),  # mostly missing
            rng.integers(-3, 4, size=n).astype(float),  # ties, 0 an edge neighbour
        ]
    ).astype(np.float32)
    y = (rng.random(n) < 0.3).astype(int)
    for special_zero in (True, False):
        binner = WOEBinner(max_bins=5, special_zero=special_zero).fit(X, y)
        assert binner.bins_[0].edges.size == 0
        probe = np.concatenate([X, _probe_values(list(binner.bins_), [])])
        (woe,) = _session(_binner_onnx(binner)).run(None, {"X": probe})
        np.testing.assert_array_equal(woe, _expected_woe(binner.bins_, probe))
        finite = ~np.isinf(probe).any(axis=1)
        np.testing.assert_array_equal(woe[finite], binner.transform(probe[finite]))
