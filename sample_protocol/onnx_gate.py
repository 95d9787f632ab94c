"""The ONNX gate: the only way a model file becomes an inference session.

DESIGN section 8: size cap, load from bytes, full checker, operator allowlist (default and
``ai.onnx.ml`` domains only), exact input and output names, types and shapes, CPU only.
:func:`gate_model` applies every check in that order and fails closed with a
:class:`GateError` whose ``code`` says which check refused the model. It does not check
signatures or hashes: verify the bundle first, then gate what it lists.

``onnx`` and ``onnxruntime`` are imported inside the functions that need them, so that
``sample_protocol`` imports without them (the core install lacks them).

Example (``model_bytes`` from a verified release bundle)::

    spec = GateSpec(n_features=12, input_name="input")
    gated = gate_model(model_bytes, spec, where="bundle/tax_payment_discipline.onnx")
    probabilities = gated.run(features_float32)   # class 1, float64, one per row
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import ProtocolError
from .records_base import check_name, check_unique, fail
from .serde import Record

__all__ = [
    "ALLOWED_DOMAINS",
    "DEFAULT_ALLOWED_OPS",
    "DEFAULT_MAX_BYTES",
    "GateError",
    "GateSpec",
    "GatedModel",
    "gate_model",
    "run_parity_fixture",
]

#: Default size cap of one model file (50 MB), applied before the bytes are parsed.
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
#: Operator domains a model may use: the default domain (spelled '' or 'ai.onnx') and
#: ``ai.onnx.ml``. No custom operators, no model-local functions.
ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
#: Operator types the default gate lets through: what skl2onnx emits for
#: HistGradientBoosting, imputer+scaler+logistic regression and sigmoid calibration
#: (STACK_NOTES), plus what a standard-op binning/WOE converter uses. ``ZipMap`` is
#: deliberately absent (exports have ``zipmap=False``).
DEFAULT_ALLOWED_OPS: tuple[str, ...] = tuple(
    sorted(
        {
            # ai.onnx.ml
            "ArrayFeatureExtractor",
            "Imputer",
            "LinearClassifier",
            "Scaler",
            "TreeEnsembleClassifier",
            "TreeEnsembleRegressor",  # the scorecard's WOE binner: one tree per feature
            # default domain
            "Add",
            "ArgMax",
            "Cast",
            "Concat",
            "Div",
            "Equal",
            "Exp",
            "Flatten",
            "Gather",
            "GreaterOrEqual",
            "Identity",
            "IsNaN",
            "MatMul",
            "Mul",
            "ReduceSum",
            "Reshape",
            "Sigmoid",
            "Softmax",
            "Sub",
            "Sum",
            "Unsqueeze",
            "Where",
        }
    )
)

_ELEM_FLOAT = 1  # onnx.TensorProto.FLOAT
_ELEM_INT64 = 7  # onnx.TensorProto.INT64
_ELEM_NAMES = {1: "FLOAT", 7: "INT64", 10: "FLOAT16", 11: "DOUBLE", 6: "INT32"}
_CPU = "CPUExecutionProvider"


class GateError(ProtocolError, ValueError):
    """The ONNX gate refused a model; ``code`` names the check (``gate_operator``, ...)."""

    code = "gate_refused"
    exit_code = 3


@dataclass(frozen=True, slots=True)
class GateSpec(Record):
    """What a model must look like to pass :func:`gate_model`.

    >>> spec = GateSpec(n_features=3)
    >>> spec.input_name, spec.output_names, spec.max_bytes == DEFAULT_MAX_BYTES
    ('input', ('label', 'probabilities'), True)
    >>> GateSpec.from_json(spec.to_json()) == spec
    True
    """

    n_features: int
    input_name: str = "input"
    max_bytes: int = DEFAULT_MAX_BYTES
    allowed_ops: tuple[str, ...] = DEFAULT_ALLOWED_OPS
    output_names: tuple[str, ...] = ("label", "probabilities")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        where = self.kind()
        for name, value in (("n_features", self.n_features), ("max_bytes", self.max_bytes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(f"{where}.{name}", "a positive integer", value)
        if not isinstance(self.input_name, str):
            fail(f"{where}.input_name", "a string", self.input_name)
        check_name(f"{where}.input_name", self.input_name)
        if not isinstance(self.allowed_ops, tuple) or not self.allowed_ops:
            fail(f"{where}.allowed_ops", "a non-empty tuple of operator names", self.allowed_ops)
        for i, op in enumerate(self.allowed_ops):
            if not isinstance(op, str) or not op.isidentifier():
                fail(f"{where}.allowed_ops[{i}]", "an operator name like 'Add'", op)
        check_unique(f"{where}.allowed_ops", self.allowed_ops)
        if not isinstance(self.output_names, tuple) or len(self.output_names) != 2:
            fail(f"{where}.output_names", "two names (label, probabilities)", self.output_names)
        for i, name in enumerate(self.output_names):
            if not isinstance(name, str):
                fail(f"{where}.output_names[{i}]", "a string", name)
            check_name(f"{where}.output_names[{i}]", name)
        check_unique(f"{where}.output_names", self.output_names)


@dataclass(frozen=True, slots=True)
class GatedModel:
    """A model that passed the gate: its CPU session, its spec and its SHA-256."""

    session: Any  # onnxruntime.InferenceSession
    spec: GateSpec
    sha256: str
    where: str
    data: bytes = field(repr=False, compare=False)  # the gated bytes

    def with_threads(self, threads: int) -> GatedModel:
        """The same gated model in a new CPU session of ``threads`` intra-op threads.

        A scorer that runs several batches at once gives each run one thread: on a small
        machine that is more work per CPU second than one run spread over every core.
        """
        if threads < 1:
            raise ValueError(f"threads: expected a positive integer, found {threads}")
        session = _open_session(self.data, self.where, threads=threads)
        return GatedModel(session, self.spec, self.sha256, self.where, self.data)

    def run(self, X: npt.NDArray[Any], *, batch_size: int = 65_536) -> npt.NDArray[np.float64]:
        """Probability of class 1 for each row of float32 ``X`` (shape ``[n, n_features]``).

        Other dtypes are refused rather than cast: the model contract is float32 end to
        end, and a silent float64 -> float32 cast is the caller's decision to make.
        """
        if not isinstance(X, np.ndarray) or X.dtype != np.float32:
            found = X.dtype if isinstance(X, np.ndarray) else type(X).__name__
            raise GateError(
                f"{self.where}: input rows: expected a float32 array, found {found}",
                code="gate_input",
            )
        if X.ndim != 2 or X.shape[1] != self.spec.n_features:
            raise GateError(
                f"{self.where}: input rows: expected shape [n, {self.spec.n_features}], "
                f"found {list(X.shape)}",
                code="gate_input",
            )
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, found {batch_size}")
        proba_name = self.spec.output_names[1]
        out = np.empty(X.shape[0], dtype=np.float64)
        for start in range(0, X.shape[0], batch_size):
            chunk = np.ascontiguousarray(X[start : start + batch_size])
            (proba,) = self.session.run([proba_name], {self.spec.input_name: chunk})
            proba = np.asarray(proba)
            if proba.ndim != 2 or proba.shape != (chunk.shape[0], 2):
                raise GateError(
                    f"{self.where}: output {proba_name!r}: expected shape "
                    f"[{chunk.shape[0]}, 2], found {list(proba.shape)}",
                    code="gate_output",
                )
            out[start : start + chunk.shape[0]] = proba[:, 1]
        return out


def gate_model(model_bytes: bytes, spec: GateSpec, *, where: str) -> GatedModel:
    """Check ``model_bytes`` against ``spec`` and open it on the CPU, or raise GateError.

    ``where`` names the model in every message (a bundle path, say). Checks, in order:
    size cap (before parsing), parse, external data, domains and operators (also in
    subgraphs; model-local functions are refused) before any further code looks at the
    graph, ``onnx.checker`` with ``full_check=True``, the one input, the two outputs,
    then an onnxruntime session with the CPU provider only.
    """
    if not isinstance(model_bytes, bytes | bytearray):
        raise GateError(
            f"{where}: expected the model's bytes, found {type(model_bytes).__name__}",
            code="gate_unparsable",
        )
    data = bytes(model_bytes)
    if len(data) > spec.max_bytes:
        raise GateError(
            f"{where}: expected at most {spec.max_bytes} bytes, found {len(data)} bytes",
            code="gate_too_large",
        )
    model = _parse(data, where)
    _check_external_data(model, where)
    _check_operators(model, spec, where)
    _check_with_checker(model, where)
    _check_input(model, spec, where)
    _check_outputs(model, spec, where)
    session = _open_session(data, where)
    return GatedModel(
        session=session,
        spec=spec,
        sha256=hashlib.sha256(data).hexdigest(),
        where=where,
        data=data,
    )


def run_parity_fixture(
    gated: GatedModel, fixture: Mapping[str, Any], *, tolerance: float | None = None
) -> float:
    """Re-run a release's parity fixture on a gated model; the max abs difference.

    ``fixture`` has ``inputs`` (rows of numbers, ``None`` for a missing value),
    ``expected_probabilities`` (class 1) and ``tolerance``. Raises :class:`GateError`
    (code ``gate_parity``) when the difference exceeds the tolerance or the fixture is
    malformed.
    """
    try:
        rows = [[np.nan if v is None else float(v) for v in row] for row in fixture["inputs"]]
        X = np.asarray(rows, dtype=np.float32).reshape(len(rows), gated.spec.n_features)
        expected = np.asarray(fixture["expected_probabilities"], dtype=np.float64)
        tol = float(fixture["tolerance"] if tolerance is None else tolerance)
    except (KeyError, TypeError, ValueError) as exc:
        raise GateError(
            f"{gated.where}: parity fixture: expected inputs, expected_probabilities and "
            f"tolerance for {gated.spec.n_features} features, found an unusable fixture ({exc})",
            code="gate_parity",
        ) from None
    if expected.shape != (X.shape[0],):
        raise GateError(
            f"{gated.where}: parity fixture: expected {X.shape[0]} probabilities, "
            f"found {expected.shape[0] if expected.ndim == 1 else list(expected.shape)}",
            code="gate_parity",
        )
    got = gated.run(X)
    diff = np.abs(got - expected)
    diff[~np.isfinite(diff)] = 1.0
    worst = float(diff.max()) if diff.size else 0.0
    if worst > tol:
        raise GateError(
            f"{gated.where}: parity fixture: expected max abs difference <= {tol:g}, "
            f"found {worst:.3g} (row {int(diff.argmax())})",
            code="gate_parity",
        )
    return worst


# --- the checks ---------------------------------------------------------------------------


def _parse(data: bytes, where: str) -> Any:
    import onnx

    try:
        return onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf DecodeError and friends
        raise GateError(
            f"{where}: expected an ONNX model (protobuf), found unparsable bytes "
            f"({type(exc).__name__})",
            code="gate_unparsable",
        ) from None


def _graphs(model: Any) -> Iterator[tuple[str, Any]]:
    """Every graph of the model, subgraphs (If/Loop/Scan bodies) and training graphs too."""
    stack: list[tuple[str, Any]] = [("graph", model.graph)]
    for i, info in enumerate(model.training_info):
        stack.append((f"training_info[{i}].initialization", info.initialization))
        stack.append((f"training_info[{i}].algorithm", info.algorithm))
    while stack:
        path, graph = stack.pop()
        yield path, graph
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("g"):
                    stack.append((f"{path}/{node.name or node.op_type}.{attr.name}", attr.g))
                for j, sub in enumerate(attr.graphs):
                    stack.append((f"{path}/{node.name or node.op_type}.{attr.name}[{j}]", sub))


def _tensors(model: Any) -> Iterator[tuple[str, Any]]:
    for path, graph in _graphs(model):
        for t in graph.initializer:
            yield f"{path} initializer {t.name!r}", t
        for st in graph.sparse_initializer:
            yield f"{path} sparse initializer {st.values.name!r}", st.values
            yield f"{path} sparse initializer {st.indices.name!r}", st.indices
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield f"{path}/{node.name or node.op_type}.{attr.name}", attr.t
                for t in attr.tensors:
                    yield f"{path}/{node.name or node.op_type}.{attr.name}", t


def _check_external_data(model: Any, where: str) -> None:
    external = 1  # onnx.TensorProto.EXTERNAL
    for path, tensor in _tensors(model):
        if tensor.data_location == external or len(tensor.external_data) > 0:
            raise GateError(
                f"{where}: {path}: expected tensor data inside the model, found a reference "
                f"to external data",
                code="gate_external_data",
            )


def _check_with_checker(model: Any, where: str) -> None:
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # ValidationError, InferenceError, and C++ errors
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise GateError(
            f"{where}: expected a model that passes onnx.checker (full check), "
            f"found {type(exc).__name__}: {first}",
            code="gate_checker",
        ) from None


def _check_operators(model: Any, spec: GateSpec, where: str) -> None:
    if len(model.functions) > 0:
        names = sorted(f"{f.domain}:{f.name}" for f in model.functions)
        raise GateError(
            f"{where}: expected no model-local functions, found {len(names)} ({names[:5]})",
            code="gate_operator",
        )
    for imp in model.opset_import:
        if imp.domain not in ALLOWED_DOMAINS:
            raise GateError(
                f"{where}: opset import: expected domains {sorted(ALLOWED_DOMAINS)}, "
                f"found {imp.domain!r}",
                code="gate_domain",
            )
    allowed = frozenset(spec.allowed_ops)
    for path, graph in _graphs(model):
        for i, node in enumerate(graph.node):
            label = f"{path} node {i} ({node.name or 'unnamed'})"
            if node.domain not in ALLOWED_DOMAINS:
                raise GateError(
                    f"{where}: {label}: expected an operator of domain '', 'ai.onnx' or "
                    f"'ai.onnx.ml', found {node.domain}:{node.op_type}",
                    code="gate_domain",
                )
            if node.op_type not in allowed:
                raise GateError(
                    f"{where}: {label}: expected an allowed operator, found {node.op_type!r} "
                    f"(not in the gate's allowlist of {len(allowed)})",
                    code="gate_operator",
                )


def _dims(value_info: Any) -> list[int | str | None] | None:
    """The dims of a tensor value: an int, a symbolic name, or None (unknown)."""
    tensor = value_info.type.tensor_type
    if not value_info.type.HasField("tensor_type") or not tensor.HasField("shape"):
        return None
    out: list[int | str | None] = []
    for d in tensor.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(str(d.dim_param))
        else:
            out.append(None)
    return out


def _elem(value_info: Any) -> str:
    if not value_info.type.HasField("tensor_type"):
        return f"a non-tensor value ({value_info.type.WhichOneof('value')})"
    code = int(value_info.type.tensor_type.elem_type)
    return _ELEM_NAMES.get(code, f"element type {code}")


def _batch_dim_ok(dim: int | str | None) -> bool:
    return not isinstance(dim, int)  # symbolic or unknown: any number of rows


def _show(dims: list[int | str | None] | None) -> str:
    if dims is None:
        return "no shape"
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _check_input(model: Any, spec: GateSpec, where: str) -> None:
    inputs = list(model.graph.input)  # an initializer listed as an input counts: refused
    names = [i.name for i in inputs]
    if names != [spec.input_name]:
        raise GateError(
            f"{where}: inputs: expected exactly [{spec.input_name!r}], found {names}",
            code="gate_input",
        )
    (value,) = inputs
    if _elem(value) != "FLOAT":
        raise GateError(
            f"{where}: input {value.name!r}: expected FLOAT (float32), found {_elem(value)}",
            code="gate_input",
        )
    dims = _dims(value)
    if dims is None or len(dims) != 2 or not _batch_dim_ok(dims[0]) or dims[1] != spec.n_features:
        raise GateError(
            f"{where}: input {value.name!r}: expected shape [N, {spec.n_features}], "
            f"found {_show(dims)}",
            code="gate_input",
        )


def _check_outputs(model: Any, spec: GateSpec, where: str) -> None:
    outputs = list(model.graph.output)
    names = [o.name for o in outputs]
    if names != list(spec.output_names):
        raise GateError(
            f"{where}: outputs: expected exactly {list(spec.output_names)}, found {names}",
            code="gate_output",
        )
    label, proba = outputs
    for value, elem, rank, last in ((label, "INT64", 1, None), (proba, "FLOAT", 2, 2)):
        if _elem(value) != elem:
            raise GateError(
                f"{where}: output {value.name!r}: expected {elem}, found {_elem(value)}",
                code="gate_output",
            )
        dims = _dims(value)
        ok = dims is not None and len(dims) == rank and _batch_dim_ok(dims[0])
        if ok and last is not None and dims is not None:
            ok = dims[-1] == last
        if not ok:
            expected = "[N]" if rank == 1 else "[N, 2]"
            raise GateError(
                f"{where}: output {value.name!r}: expected shape {expected}, found {_show(dims)}",
                code="gate_output",
            )


def _open_session(data: bytes, where: str, *, threads: int | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()  # default graph optimisation, no custom op libraries
    if threads is not None:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.load_model_format", "ONNX")  # never ORT format
    # Pool threads sleep rather than spin between parallel sections: a scorer overlaps
    # reading and checking the next batch with the model's run, and a spinning pool
    # thread would take that core for nothing (measured: same run time, less CPU).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(data, options, providers=[_CPU])
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise GateError(
            f"{where}: expected onnxruntime to load the model on the CPU, found "
            f"{type(exc).__name__}: {first}",
            code="gate_checker",
        ) from None
    providers = list(session.get_providers())
    if providers != [_CPU]:
        raise GateError(
            f"{where}: session providers: expected [{_CPU!r}], found {providers}",
            code="gate_provider",
        )
    return session
