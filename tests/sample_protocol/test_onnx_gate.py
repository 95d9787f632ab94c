"""Tests of sample_protocol/onnx_gate.py: every check of the gate, on real and forged models."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sample_protocol.errors import ProtocolError, ValidationError  # noqa: E402
from sample_protocol.onnx_gate import (  # noqa: E402
    DEFAULT_ALLOWED_OPS,
    DEFAULT_MAX_BYTES,
    GatedModel,
    GateError,
    GateSpec,
    gate_model,
    run_parity_fixture,
)

N = 3
SPEC = GateSpec(n_features=N)
W = np.array([[1.0, -1.0], [0.5, 0.25], [-2.0, 2.0]], dtype=np.float32)


def _model(
    *,
    input_type: int = TensorProto.FLOAT,
    width: int = N,
    extra_nodes: tuple = (),
    extra_outputs: tuple = (),
    opsets: tuple = (("", 17),),
    weight: np.ndarray = W,
) -> onnx.ModelProto:
    """input [N, width] -> MatMul -> Softmax = probabilities; ArgMax = label."""
    np_type = np.float64 if input_type == TensorProto.DOUBLE else np.float32
    w = numpy_helper.from_array(np.resize(weight, (width, 2)).astype(np_type), "W")
    nodes = [
        helper.make_node("MatMul", ["input", "W"], ["logits"], name="mm"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1, name="sm"),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0, name="am"),
        *extra_nodes,
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", input_type, ["N", width])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("probabilities", input_type, ["N", 2]),
            *extra_outputs,
        ],
        initializer=[w],
    )
    opset_imports = [helper.make_opsetid(d, v) for d, v in opsets]
    return helper.make_model(graph, opset_imports=opset_imports, ir_version=8)


def _bytes(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString()


def _refused(data: bytes, code: str, spec: GateSpec = SPEC, where: str = "bundle/m.onnx") -> str:
    with pytest.raises(GateError) as err:
        gate_model(data, spec, where=where)
    assert err.value.code == code, str(err.value)
    assert err.value.exit_code == 3
    assert isinstance(err.value, ProtocolError) and isinstance(err.value, ValueError)
    message = str(err.value)
    assert where in message
    return message


def test_hand_model_passes_and_runs() -> None:
    data = _bytes(_model())
    gated = gate_model(data, SPEC, where="m.onnx")
    assert isinstance(gated, GatedModel)
    assert gated.sha256 == hashlib.sha256(data).hexdigest()
    assert gated.session.get_providers() == ["CPUExecutionProvider"]
    X = np.array([[1, 0, 0], [0, 0, 1], [0.5, 0.5, 0.5]], dtype=np.float32)
    logits = X.astype(np.float64) @ W
    expected = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
    got = gated.run(X, batch_size=2)  # two batches
    assert got.dtype == np.float64 and got.shape == (3,)
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.fixture(scope="module")
def hgb_bytes() -> tuple[bytes, np.ndarray, np.ndarray]:
    pytest.importorskip("skl2onnx")
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = make_classification(1500, 6, random_state=3)
    X = X.astype(np.float32)
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onx = to_onnx(
            model,
            initial_types=[("input", FloatTensorType([None, 6]))],
            options={id(model): {"zipmap": False}},
            target_opset={"": 17, "ai.onnx.ml": 3},
        )
    return onx.SerializeToString(), X[:200], model.predict_proba(X[:200])[:, 1]


def test_real_hgb_export_passes_and_runs(hgb_bytes) -> None:
    data, X, expected = hgb_bytes
    gated = gate_model(data, GateSpec(n_features=6), where="tax.onnx")
    np.testing.assert_allclose(gated.run(X), expected, atol=1e-5)
    fixture = {
        "inputs": [[float(v) for v in row] for row in X[:20]],
        "expected_probabilities": [float(p) for p in expected[:20]],
        "tolerance": 1e-5,
    }
    assert run_parity_fixture(gated, fixture) <= 1e-5
    fixture["expected_probabilities"][3] += 0.1
    with pytest.raises(GateError) as err:
        run_parity_fixture(gated, fixture)
    assert err.value.code == "gate_parity" and "row 3" in str(err.value)
    with pytest.raises(GateError) as err:
        run_parity_fixture(gated, {"inputs": [[1.0]], "tolerance": 1e-5})
    assert err.value.code == "gate_parity"


def test_zipmap_export_refused() -> None:
    pytest.importorskip("skl2onnx")
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(60, N)).astype(np.float32)
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    data = to_onnx(model, X[:1], target_opset={"": 17, "ai.onnx.ml": 3}).SerializeToString()
    assert "ZipMap" in _refused(data, "gate_operator")


def test_over_the_cap_refused_before_parsing() -> None:
    data = _bytes(_model())
    message = _refused(data, "gate_too_large", GateSpec(n_features=N, max_bytes=len(data) - 1))
    assert f"at most {len(data) - 1} bytes" in message and f"found {len(data)}" in message
    # garbage over the cap is refused for size, never parsed
    _refused(b"\xff" * 200, "gate_too_large", GateSpec(n_features=N, max_bytes=100))
    assert SPEC.max_bytes == DEFAULT_MAX_BYTES == 50 * 1024 * 1024


@pytest.mark.parametrize("data", [b"\xff\xff\xff\xff", b"not a model", b"\x0a\xff"])
def test_garbage_refused(data: bytes) -> None:
    _refused(data, "gate_unparsable")


def test_empty_bytes_fail_the_checker() -> None:
    assert "onnx.checker" in _refused(b"", "gate_checker")


def test_not_bytes_refused() -> None:
    _refused("a string", "gate_unparsable")  # type: ignore[arg-type]


def test_custom_domain_node_refused() -> None:
    evil = helper.make_node("Steal", ["logits"], ["x"], domain="com.evil", name="evil")
    model = _model(extra_nodes=(evil,), opsets=(("", 17), ("com.evil", 1)))
    message = _refused(_bytes(model), "gate_domain")
    assert "com.evil" in message
    # a node in a custom domain without an opset import is refused for its domain too
    message = _refused(_bytes(_model(extra_nodes=(evil,))), "gate_domain")
    assert "com.evil:Steal" in message


@pytest.mark.parametrize("op", ["Upsample", "Neg", "Loop"])
def test_disallowed_operator_refused(op: str) -> None:
    node = helper.make_node(op, ["logits"], ["x"], name="bad")
    message = _refused(_bytes(_model(extra_nodes=(node,))), "gate_operator")
    assert repr(op) in message and "bad" in message


def test_operator_inside_subgraph_refused() -> None:
    inner = helper.make_graph(
        [helper.make_node("Neg", ["logits"], ["y"], name="hidden")],
        "then",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
    )
    cond = numpy_helper.from_array(np.array(True), "cond")
    node = helper.make_node(
        "If", ["cond"], ["x"], then_branch=inner, else_branch=inner, name="branch"
    )
    model = _model(extra_nodes=(node,))
    model.graph.initializer.append(cond)
    spec = GateSpec(n_features=N, allowed_ops=(*DEFAULT_ALLOWED_OPS, "If"))
    message = _refused(_bytes(model), "gate_operator", spec)
    assert "'Neg'" in message and "then_branch" in message


def test_model_local_function_refused() -> None:
    model = _model()
    model.functions.append(
        helper.make_function(
            "local.fn",
            "Double",
            ["a"],
            ["b"],
            [helper.make_node("Add", ["a", "a"], ["b"])],
            [helper.make_opsetid("", 17)],
        )
    )
    assert "local.fn:Double" in _refused(_bytes(model), "gate_operator")


def test_extra_output_refused() -> None:
    node = helper.make_node("Identity", ["logits"], ["logits_out"], name="leak")
    out = helper.make_tensor_value_info("logits_out", TensorProto.FLOAT, ["N", 2])
    message = _refused(_bytes(_model(extra_nodes=(node,), extra_outputs=(out,))), "gate_output")
    assert "['label', 'probabilities']" in message and "logits_out" in message


def test_output_types_and_shapes_checked() -> None:
    model = _model()
    model.graph.output[1].type.tensor_type.shape.dim[1].dim_value = 3
    assert "(2) vs (3)" in _refused(_bytes(model), "gate_checker")  # caught by full check
    model = _model()
    model.graph.output[1].type.tensor_type.shape.dim[1].dim_param = "C"  # symbolic width
    message = _refused(_bytes(model), "gate_output")
    assert "expected shape [N, 2], found [N, C]" in message
    model = _model()  # label as INT32 through an allowed Cast: valid ONNX, wrong contract
    model.graph.node[2].output[0] = "label64"
    model.graph.node.append(
        helper.make_node("Cast", ["label64"], ["label"], to=TensorProto.INT32, name="c")
    )
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.INT32
    message = _refused(_bytes(model), "gate_output")
    assert "expected INT64" in message and "INT32" in message
    spec = GateSpec(n_features=N, output_names=("label", "scores"))
    assert "scores" in _refused(_bytes(_model()), "gate_output", spec)


def test_wrong_input_type_refused() -> None:
    message = _refused(_bytes(_model(input_type=TensorProto.DOUBLE)), "gate_input")
    assert "expected FLOAT" in message and "DOUBLE" in message


def test_wrong_input_width_refused() -> None:
    message = _refused(_bytes(_model()), "gate_input", GateSpec(n_features=4))
    assert "[N, 4]" in message and "[N, 3]" in message


def test_wrong_input_name_refused() -> None:
    message = _refused(_bytes(_model()), "gate_input", GateSpec(n_features=N, input_name="x"))
    assert "['x']" in message and "['input']" in message


def test_initializer_listed_as_input_refused() -> None:
    model = _model()
    model.graph.input.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, [N, 2]))
    assert "['input', 'W']" in _refused(_bytes(model), "gate_input")


def test_fixed_batch_dimension_refused() -> None:
    model = _model()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    assert "[1, 3]" in _refused(_bytes(model), "gate_input")


def test_external_data_refused() -> None:
    model = _model()
    init = model.graph.initializer[0]
    init.ClearField("raw_data")
    init.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../etc/passwd"), ("offset", "0"), ("length", "24")):
        entry = init.external_data.add()
        entry.key, entry.value = key, value
    assert "'W'" in _refused(_bytes(model), "gate_external_data")


def test_checker_failure_refused() -> None:
    model = _model()
    model.graph.node[0].input[1] = "missing_tensor"  # dangling input
    _refused(_bytes(model), "gate_checker")


def test_non_cpu_provider_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = ort.InferenceSession

    class GpuSession:
        def __init__(self, *args: object, **kwargs: object) -> None:
            self.inner = real(*args, **kwargs)

        def get_providers(self) -> list[str]:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    monkeypatch.setattr(ort, "InferenceSession", GpuSession)
    assert "CUDAExecutionProvider" in _refused(_bytes(_model()), "gate_provider")


def test_run_refuses_wrong_rows() -> None:
    gated = gate_model(_bytes(_model()), SPEC, where="m.onnx")
    with pytest.raises(GateError) as err:
        gated.run(np.zeros((2, N), dtype=np.float64))
    assert err.value.code == "gate_input" and "float64" in str(err.value)
    with pytest.raises(GateError) as err:
        gated.run(np.zeros((2, N + 1), dtype=np.float32))
    assert err.value.code == "gate_input" and "[2, 4]" in str(err.value)


def test_spec_validation_and_round_trip() -> None:
    spec = GateSpec(n_features=7, input_name="features", max_bytes=1000)
    assert GateSpec.from_json(spec.to_json()) == spec
    assert "ZipMap" not in spec.allowed_ops
    assert list(spec.allowed_ops) == sorted(spec.allowed_ops)
    for bad in (
        {"n_features": 0},
        {"n_features": 2, "max_bytes": 0},
        {"n_features": 2, "allowed_ops": ()},
        {"n_features": 2, "allowed_ops": ("Add", "Add")},
        {"n_features": 2, "allowed_ops": ("ai.onnx:Add",)},
        {"n_features": 2, "output_names": ("label",)},
        {"n_features": 2, "input_name": ""},
    ):
        with pytest.raises(ValidationError):
            GateSpec(**bad)


_SMALL = _bytes(_model())
_SMALL_SHA = hashlib.sha256(_SMALL).hexdigest()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(0, len(_SMALL) - 1), flip=st.integers(1, 255))
def test_flipped_byte_is_refused_or_changes_hash(position: int, flip: int) -> None:
    data = bytearray(_SMALL)
    data[position] ^= flip
    try:
        gated = gate_model(bytes(data), SPEC, where="tampered.onnx")
    except GateError:
        return  # refused: the only exception the gate may raise
    assert gated.sha256 != _SMALL_SHA
    assert gated.run(np.ones((2, N), dtype=np.float32)).shape == (2,)
