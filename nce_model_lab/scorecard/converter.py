"""skl2onnx converter for :class:`WOEBinner`, and ONNX export of a fitted :class:`Scorecard`.

ONNX has no digitize. The binner is exported as one ``ai.onnx.ml`` ``TreeEnsembleRegressor``
per feature (one tree, one target, read straight from column ``j`` of X) whose leaves hold
the WOE values themselves, then one ``Concat`` of the F columns. Each tree is a search over
the feature's float32 thresholds ``[-inf, edges...]`` with ``BRANCH_GTE`` nodes (``x >= t``
goes to the higher bins, so the leaf is ``np.digitize``'s bin, compared in float32):

* NaN compares false everywhere and lands left of ``-inf``: the missing leaf (no
  ``nodes_missing_value_tracks_true`` needed); ``-inf`` and ``+inf`` land in the outer bins;
* where the zero WOE differs from the WOE of the interval holding 0, that interval's leaf
  becomes a ``BRANCH_EQ`` node ``x == 0`` (``-0.0`` too) with the zero leaf on its true
  side (an equality test, not a threshold at the smallest subnormal, so it holds even
  where denormals are flushed to zero).

A tree weighted by the fitted bin counts (the missing bin first, say) measured no faster
than a balanced one: onnxruntime's cost per row and tree dominates the few comparisons.

The leaf value is added to a zero score, which leaves it unchanged, so the output equals
``WOEBinner.transform`` exactly (a WOE of ``-0.0``, which fitting never produces, comes out
as ``+0.0``). This replaced a graph of default-domain operators that built an [N, F, K]
comparison tensor (``GreaterOrEqual``, ``Cast``, ``ReduceSum``, ``Gather``, ``Where``):
on 50,000 rows of 52 features that graph took about twice as long. Models exported with
it still pass the gate, whose allowlist keeps those operators.

Call :func:`register_converters` once before ``skl2onnx.to_onnx`` (``scorecard_to_onnx``
does it for you).

>>> import numpy as np
>>> from nce_model_lab.scorecard.model import Scorecard
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(300, 3)).astype(np.float32)
>>> y = (X[:, 0] + rng.normal(size=300) > 0).astype(int)
>>> onx = scorecard_to_onnx(Scorecard(max_bins=4).fit(X, y))
>>> [o.name for o in onx.graph.output]
['label', 'probabilities']
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import ModelProto
from skl2onnx import to_onnx, update_registered_converter
from skl2onnx.common.data_types import FloatTensorType
from skl2onnx.common.utils import check_input_and_output_numbers

from nce_model_lab.errors import LabError
from nce_model_lab.scorecard.binning import FeatureBins, WOEBinner

__all__ = [
    "ALLOWED_OPS",
    "TARGET_OPSET",
    "register_converters",
    "scorecard_to_onnx",
    "woe_binner_converter",
    "woe_binner_shape_calculator",
]

#: Opsets pinned for every export (STACK_NOTES: skl2onnx 1.20 tests main domain 9-22).
TARGET_OPSET: dict[str, int] = {"": 17, "ai.onnx.ml": 3}

#: (domain, op_type) of every operator a Scorecard's ONNX graph may contain.
ALLOWED_OPS: frozenset[tuple[str, str]] = frozenset(
    {
        ("", "Concat"),
        ("ai.onnx.ml", "LinearClassifier"),
        ("ai.onnx.ml", "TreeEnsembleRegressor"),
    }
)

_ALIAS = "NceWOEBinner"


def woe_binner_shape_calculator(operator: Any) -> None:
    """Output of a WOEBinner: float32 [N, F], F the number of fitted features."""
    check_input_and_output_numbers(operator, input_count_range=1, output_count_range=1)
    input_type = operator.inputs[0].type
    if not isinstance(input_type, FloatTensorType):
        raise LabError(
            f"WOEBinner ONNX input {operator.inputs[0].onnx_name!r}: expected a "
            f"FloatTensorType (float32), found {type(input_type).__name__}",
            code="onnx_input_type",
        )
    n_rows = input_type.shape[0] if input_type.shape else None
    operator.outputs[0].type = FloatTensorType([n_rows, operator.raw_operator.n_features_in_])


def _feature_tree(b: FeatureBins) -> dict[str, list[Any]]:
    """Nodes of one feature's balanced search tree in preorder: mode, threshold, true and
    false child, and the WOE of each leaf (None for a branch). Leaf ``0`` is the missing
    bin (left of ``-inf``), leaf ``1 + i`` the interval bin ``i``."""
    edges = np.asarray(b.edges, dtype=np.float32)
    woe = np.asarray(b.woe, dtype=np.float32)
    thresholds = [float(-np.inf), *(float(e) for e in edges)]
    leaf_woe = [float(np.float32(b.woe_missing)), *(float(w) for w in woe)]
    holds_zero = 1 + int(np.searchsorted(edges, np.float32(0), side="right"))
    woe_zero = np.float32(b.woe_zero)
    zero_apart = not bool(woe_zero == woe[holds_zero - 1])

    tree: dict[str, list[Any]] = {"mode": [], "value": [], "true": [], "false": [], "woe": []}

    def add(mode: str, value: float, woe_value: float | None) -> int:
        for key, item in zip(tree, (mode, value, 0, 0, woe_value), strict=True):
            tree[key].append(item)
        return len(tree["mode"]) - 1

    def build(i: int, j: int) -> int:
        if i < j:  # threshold r sends leaves i..r left (x < t) and r+1..j right (x >= t)
            r = (i + j) // 2
            node = add("BRANCH_GTE", thresholds[r], None)
            tree["false"][node] = build(i, r)
            tree["true"][node] = build(r + 1, j)
            return node
        if i == holds_zero and zero_apart:
            node = add("BRANCH_EQ", 0.0, None)
            tree["true"][node] = add("LEAF", 0.0, float(woe_zero))
            tree["false"][node] = add("LEAF", 0.0, leaf_woe[i])
            return node
        return add("LEAF", 0.0, leaf_woe[i])

    build(0, len(leaf_woe) - 1)
    return tree


def _tree_attributes(tree: dict[str, list[Any]], feature: int) -> dict[str, Any]:
    """Attributes of a one-tree, one-target ``TreeEnsembleRegressor`` on column ``feature``."""
    n = len(tree["mode"])
    leaves = [k for k in range(n) if tree["mode"][k] == "LEAF"]
    return {
        "n_targets": 1,
        "aggregate_function": "SUM",
        "post_transform": "NONE",
        "nodes_treeids": [0] * n,
        "nodes_nodeids": list(range(n)),
        "nodes_featureids": [0 if m == "LEAF" else feature for m in tree["mode"]],
        "nodes_modes": tree["mode"],
        "nodes_values": tree["value"],
        "nodes_truenodeids": tree["true"],
        "nodes_falsenodeids": tree["false"],
        "target_treeids": [0] * len(leaves),
        "target_nodeids": leaves,
        "target_ids": [0] * len(leaves),
        "target_weights": [tree["woe"][k] for k in leaves],
    }


def woe_binner_converter(scope: Any, operator: Any, container: Any) -> None:
    """Write the ONNX nodes of a fitted WOEBinner (see the module docstring)."""
    binner: WOEBinner = operator.raw_operator
    x = operator.inputs[0].full_name
    out = operator.outputs[0].full_name
    n_feat = len(binner.bins_)
    columns: list[str] = []
    for j, b in enumerate(binner.bins_):
        column = out if n_feat == 1 else scope.get_unique_variable_name(f"woe_{j}")
        container.add_node(
            "TreeEnsembleRegressor",
            [x],
            [column],
            op_domain="ai.onnx.ml",
            op_version=1,
            name=scope.get_unique_operator_name("WOETree"),
            **_tree_attributes(_feature_tree(b), j),
        )
        columns.append(column)
    if n_feat > 1:
        container.add_node(
            "Concat", columns, [out], name=scope.get_unique_operator_name("Concat"), axis=1
        )


def register_converters() -> None:
    """Register the WOEBinner converter with skl2onnx (idempotent)."""
    update_registered_converter(
        WOEBinner, _ALIAS, woe_binner_shape_calculator, woe_binner_converter
    )


def scorecard_to_onnx(
    model: Any, *, target_opset: dict[str, int] | None = None, name: str = "scorecard"
) -> ModelProto:
    """ONNX model of a fitted Scorecard: input ``X`` float32 [N, F]; outputs ``label``
    (the class) and ``probabilities`` (float32 [N, 2], column 1 the event)."""
    register_converters()
    pipeline = model.as_pipeline()
    n_features = int(model.n_features_in_)
    onx = to_onnx(
        pipeline,
        initial_types=[("X", FloatTensorType([None, n_features]))],
        target_opset=target_opset or TARGET_OPSET,
        options={id(model.classifier_): {"zipmap": False}},
        model_optim=True,
    )
    onx.graph.name = name
    return onx  # type: ignore[no-any-return]
