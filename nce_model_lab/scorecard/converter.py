"""skl2onnx converter for :class:`WOEBinner`, and ONNX export of a fitted :class:`Scorecard`.

ONNX has no digitize, so the binner is built from standard default-domain operators
(opset >= 13):

* ``Unsqueeze`` X [N, F] to [N, F, 1]; ``GreaterOrEqual`` against the float32 edges
  [F, K] (padded with NaN, which compares false); ``Cast`` to int64 and ``ReduceSum``
  over the last axis: the bin index, exactly ``np.digitize``;
* ``Add`` a per-feature offset and ``Gather`` the WOE from one flat table;
* ``Equal`` to 0 and ``Where`` for the zero bin, ``IsNaN`` and ``Where`` for missing values.

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
from onnx import ModelProto, TensorProto
from skl2onnx import to_onnx, update_registered_converter
from skl2onnx.common.data_types import FloatTensorType
from skl2onnx.common.utils import check_input_and_output_numbers

from nce_model_lab.errors import LabError
from nce_model_lab.scorecard.binning import WOEBinner

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
        ("", "Add"),
        ("", "Cast"),
        ("", "Equal"),
        ("", "Gather"),
        ("", "GreaterOrEqual"),
        ("", "IsNaN"),
        ("", "ReduceSum"),
        ("", "Unsqueeze"),
        ("", "Where"),
        ("ai.onnx.ml", "LinearClassifier"),
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


def _const(container: Any, scope: Any, stem: str, dtype: int, values: Any) -> str:
    arr = np.asarray(values)
    name: str = scope.get_unique_variable_name(stem)
    container.add_initializer(name, dtype, list(arr.shape), arr.ravel().tolist())
    return name


def woe_binner_converter(scope: Any, operator: Any, container: Any) -> None:
    """Write the ONNX nodes of a fitted WOEBinner (see the module docstring)."""
    opset = container.target_opset
    if opset is not None and opset < 13:
        raise LabError(
            f"WOEBinner ONNX export: needs main-domain opset >= 13, was asked for {opset}",
            code="onnx_opset",
        )
    binner: WOEBinner = operator.raw_operator
    bins = binner.bins_
    n_feat = len(bins)
    width = max(1, max(b.edges.size for b in bins))
    edges = np.full((n_feat, width), np.nan, dtype=np.float32)
    table = np.zeros((n_feat, width + 1), dtype=np.float32)
    for j, b in enumerate(bins):
        edges[j, : b.edges.size] = b.edges
        table[j, : b.woe.size] = b.woe
    offsets = np.arange(n_feat, dtype=np.int64) * (width + 1)
    woe_zero = np.array([b.woe_zero for b in bins], dtype=np.float32)
    woe_missing = np.array([b.woe_missing for b in bins], dtype=np.float32)

    def var(stem: str) -> str:
        name: str = scope.get_unique_variable_name(stem)
        return name

    def node(op_type: str, inputs: list[str], output: str, **attrs: Any) -> str:
        container.add_node(
            op_type, inputs, [output], name=scope.get_unique_operator_name(op_type), **attrs
        )
        return output

    x = operator.inputs[0].full_name
    axis2 = _const(container, scope, "woe_axis", TensorProto.INT64, [2])
    x3 = node("Unsqueeze", [x, axis2], var("woe_x3"))
    edges_c = _const(container, scope, "woe_edges", TensorProto.FLOAT, edges)
    ge = node("GreaterOrEqual", [x3, edges_c], var("woe_ge"))
    ge_int = node("Cast", [ge], var("woe_ge_int"), to=TensorProto.INT64)
    idx = node("ReduceSum", [ge_int, axis2], var("woe_idx"), keepdims=0)
    offsets_c = _const(container, scope, "woe_offsets", TensorProto.INT64, offsets)
    flat = node("Add", [idx, offsets_c], var("woe_flat_idx"))
    table_c = _const(container, scope, "woe_table", TensorProto.FLOAT, table.ravel())
    looked_up = node("Gather", [table_c, flat], var("woe_interval"), axis=0)
    zero_c = _const(container, scope, "woe_zero_value", TensorProto.FLOAT, np.float32(0))
    is_zero = node("Equal", [x, zero_c], var("woe_is_zero"))
    woe_zero_c = _const(container, scope, "woe_zero", TensorProto.FLOAT, woe_zero)
    with_zero = node("Where", [is_zero, woe_zero_c, looked_up], var("woe_with_zero"))
    is_nan = node("IsNaN", [x], var("woe_is_nan"))
    woe_missing_c = _const(container, scope, "woe_missing", TensorProto.FLOAT, woe_missing)
    node("Where", [is_nan, woe_missing_c, with_zero], operator.outputs[0].full_name)


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
