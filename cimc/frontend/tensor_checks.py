"""Checks on the constant tensors of a model, before any of them is decoded and after import.

``check_tensors`` (on the ``ModelProto``, before the ONNX checker and before anything is
decoded with numpy): every tensor has a known data type, non-negative dims, no unresolved
external data, and exactly as much data as its shape needs. For ``n = Π dims`` (Python
ints, so no overflow) the raw data must hold ``n · itemsize`` bytes and a typed field
(``float_data``, ``int64_data``, …) ``n · k`` values (``k = 2`` for complex types).

``check_values`` (on the imported IR graph): every initializer is finite (no NaN or ±inf)
and at most ``2^60`` in magnitude (so a product of two such values, ``2^120``, stays below
float32's ``2^128``: quantization scales and calibration stay finite), and every
BatchNormalization variance is non-negative; ``InvalidModelError`` names the tensor and
the node reading it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import onnx
from onnx import TensorProto

from cimc.errors import InvalidModelError, UnsupportedError
from cimc.ir.graph import Graph
from cimc.ir.node import Node

_T = TensorProto
MAX_ABS_VALUE = float(2**60)
#: Bytes per element in ``raw_data`` and values per element in the typed field.
_LAYOUT: dict[int, tuple[int, str, int]] = {
    _T.FLOAT: (4, "float_data", 1), _T.DOUBLE: (8, "double_data", 1), _T.FLOAT16: (2, "int32_data", 1),
    _T.BFLOAT16: (2, "int32_data", 1), _T.INT8: (1, "int32_data", 1), _T.UINT8: (1, "int32_data", 1),
    _T.INT16: (2, "int32_data", 1), _T.UINT16: (2, "int32_data", 1), _T.INT32: (4, "int32_data", 1),
    _T.INT64: (8, "int64_data", 1), _T.UINT32: (4, "uint64_data", 1), _T.UINT64: (8, "uint64_data", 1),
    _T.BOOL: (1, "int32_data", 1), _T.COMPLEX64: (8, "float_data", 2), _T.COMPLEX128: (16, "double_data", 2),
    _T.FLOAT8E4M3FN: (1, "int32_data", 1), _T.FLOAT8E4M3FNUZ: (1, "int32_data", 1),
    _T.FLOAT8E5M2: (1, "int32_data", 1), _T.FLOAT8E5M2FNUZ: (1, "int32_data", 1),
    _T.INT4: (1, "int32_data", 1), _T.UINT4: (1, "int32_data", 1),
}
_PACKED = frozenset({_T.INT4, _T.UINT4})


def itemsize(dtype: int) -> int:
    """Bytes per element of ONNX data type ``dtype`` (4 if unknown)."""
    return _LAYOUT[dtype][0] if dtype in _LAYOUT else 4


# -- where the tensors are ---------------------------------------------------------------------
def graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of ``graph``: initializers, sparse parts, node attributes, subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from node_tensors(node)


def node_tensors(node: onnx.NodeProto) -> Iterator[onnx.TensorProto]:
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("sparse_tensor"):
            yield attr.sparse_tensor.values
            yield attr.sparse_tensor.indices
        if attr.HasField("g"):
            yield from graph_tensors(attr.g)
        for sub in attr.graphs:
            yield from graph_tensors(sub)


def model_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of the model, its functions' node attributes included."""
    yield from graph_tensors(model.graph)
    for func in model.functions:
        for node in func.node:
            yield from node_tensors(node)


# -- the proto checks -------------------------------------------------------------------------
def check_tensors(model: onnx.ModelProto) -> None:
    """Raise ``InvalidModelError``/``UnsupportedError`` for the first inconsistent tensor."""
    for tensor in model_tensors(model):
        check_tensor(tensor)


def _type_name(dtype: int) -> str:
    return _T.DataType.Name(dtype) if dtype in _T.DataType.values() else str(dtype)


def check_tensor(tensor: onnx.TensorProto) -> None:
    """One tensor's type, dims and data length agree (nothing is decoded)."""
    name = tensor.name or "<unnamed>"
    if tensor.data_location == _T.EXTERNAL:
        raise InvalidModelError(f"tensor '{name}' still references external data",
                                hint="import the model from its file path so its external data is checked")
    if any(d < 0 for d in tensor.dims):
        raise InvalidModelError(f"tensor '{name}' has a negative dim: {tuple(tensor.dims)}")
    count = math.prod(int(d) for d in tensor.dims)
    if tensor.data_type == _T.STRING:
        _expect(name, len(tensor.string_data), count, "strings", tensor)
        return
    if tensor.data_type not in _LAYOUT:
        kind = "unknown" if tensor.data_type not in _T.DataType.values() else "unsupported"
        error = InvalidModelError if kind == "unknown" else UnsupportedError
        raise error(f"tensor '{name}' has {kind} data type {_type_name(tensor.data_type)}")
    size, field, per = _LAYOUT[tensor.data_type]
    if tensor.data_type in _PACKED:  # two 4-bit values a byte (and an int32_data entry)
        count, size, per = (count + 1) // 2, 1, 1
    if tensor.HasField("raw_data"):
        _expect(name, len(tensor.raw_data), count * size, "bytes of raw data", tensor)
    else:
        _expect(name, len(getattr(tensor, field)), count * per, f"values in {field}", tensor)


def _expect(name: str, got: int, want: int, what: str, tensor: onnx.TensorProto) -> None:
    if got != want:
        raise InvalidModelError(
            f"tensor '{name}' holds {got} {what}, but its shape {tuple(int(d) for d in tensor.dims)} "
            f"and type {_type_name(tensor.data_type)} need {want}",
            details={"tensor": name, "got": got, "expected": want})


# -- the value checks on the IR ----------------------------------------------------------------
def check_values(graph: Graph) -> None:
    """Finite, bounded initializers; finite float attributes (``±inf`` only as a Clip bound);
    BatchNormalization variances ``σ² ≥ 0`` and ``σ² + ε > 0`` (``√(σ² + ε)`` divides)."""
    for name in sorted(graph.initializers):
        value = graph.initializers[name]
        if value.dtype.kind == "f" and not _within(value):
            _out_of_range(graph, name, value)
    for node in graph.nodes:
        _check_float_attrs(node)
        if node.op == "BatchNormalization":
            _check_batchnorm(graph, node)
        if node.op == "Conv":
            _check_conv_bias(graph, node)
        if node.op == "Gemm":
            _check_gemm_bias(graph, node)


def _check_gemm_bias(graph: Graph, node: Node) -> None:
    """A Gemm's constant ``C`` broadcasts to its output ``(M, N)`` (ONNX: unidirectionally)."""
    if len(node.inputs) < 3 or node.inputs[2] not in graph.initializers or node.outputs[0] not in graph.tensors:
        return
    bias, out = graph.initializers[node.inputs[2]].shape, tuple(graph.shape(node.outputs[0]))
    try:
        fits = np.broadcast_shapes(bias, out) == out
    except ValueError:
        fits = False
    if not fits:
        raise InvalidModelError(f"node '{node.name}' (Gemm): C '{node.inputs[2]}' of shape {list(bias)} does not "
                                f"broadcast to the output's {list(out)}", details={"node": node.name})


def _check_conv_bias(graph: Graph, node: Node) -> None:
    """A Conv's constant bias holds one value per output channel: ``(Cout,)``."""
    if len(node.inputs) < 3 or not node.inputs[2]:
        return
    weight, bias = graph.initializers.get(node.inputs[1]), graph.initializers.get(node.inputs[2])
    if weight is not None and bias is not None and weight.ndim and bias.shape != (weight.shape[0],):
        raise InvalidModelError(f"node '{node.name}' (Conv): bias '{node.inputs[2]}' has shape {list(bias.shape)}, "
                                f"the weight has {weight.shape[0]} output channels",
                                details={"node": node.name, "tensor": node.inputs[2]})


INF_ALLOWED = {("Clip", "min"), ("Clip", "max")}


def _check_float_attrs(node: Node) -> None:
    """Every float attribute finite and within ``±2^60`` (NaN never; ``±inf`` for Clip bounds)."""
    for key, value in node.attrs.items():
        items = value if isinstance(value, (tuple, list)) else (value,)
        floats = [float(v) for v in items if isinstance(v, (float, np.floating))]
        allowed = (node.op, key) in INF_ALLOWED
        bad = [v for v in floats if math.isnan(v) or (abs(v) > MAX_ABS_VALUE and not (allowed and math.isinf(v)))]
        if bad:
            raise InvalidModelError(f"node '{node.name}' ({node.op}): attribute {key} is {bad[0]}, not a finite "
                                    "number within ±2^60", details={"node": node.name, "attribute": key})


def _check_batchnorm(graph: Graph, node: Node) -> None:
    shape = graph.shape(node.inputs[0]) if node.inputs[0] in graph.tensors else None
    channels = shape[1] if shape is not None and len(shape) > 1 else None
    for what, name in zip(("scale", "B", "mean", "var"), node.inputs[1:5], strict=False):
        value = graph.initializers.get(name)
        if value is not None and channels is not None and value.shape != (channels,):
            raise InvalidModelError(f"node '{node.name}' (BatchNormalization): {what} '{name}' has shape "
                                    f"{list(value.shape)}, the input has {channels} channels",
                                    details={"node": node.name, "tensor": name})
    eps = float(node.attrs.get("epsilon", 1e-5))
    if not eps >= 0:  # NaN fails too (inf is caught by _check_float_attrs)
        raise InvalidModelError(f"node '{node.name}' (BatchNormalization): epsilon is {eps}, must be ≥ 0",
                                hint="the model file is corrupt")
    if node.inputs[4] not in graph.initializers:
        return
    var = graph.initializers[node.inputs[4]].astype(np.float64)
    if (var < 0).any():
        raise InvalidModelError(
            f"node '{node.name}' (BatchNormalization): variance '{node.inputs[4]}' has "
            f"{int((var < 0).sum())} negative value(s), smallest {float(var.min())}",
            hint="a variance is never negative: the model file is corrupt")
    denominator = np.sqrt(var.astype(np.float32) + np.float32(eps))
    if not (denominator > 0).all() or not np.isfinite(1.0 / denominator).all():
        raise InvalidModelError(
            f"node '{node.name}' (BatchNormalization): σ² + ε is 0 for {int((~(denominator > 0)).sum())} "
            f"channel(s) (epsilon {eps}): the normalization divides by zero",
            hint="the model file is corrupt (a zero variance needs epsilon > 0)")


def _within(value: np.ndarray) -> bool:
    """``|v| ≤ MAX_ABS_VALUE`` for every element, NaN failing, read from the minimum and maximum
    (NaN propagates through both) so no temporary the size of a weight is made."""
    return value.size == 0 or bool(value.min() >= -MAX_ABS_VALUE and value.max() <= MAX_ABS_VALUE)


def _out_of_range(graph: Graph, name: str, value: np.ndarray) -> None:
    nan, inf = int(np.isnan(value).sum()), int(np.isinf(value).sum())
    huge = int((np.abs(value[np.isfinite(value)]) > MAX_ABS_VALUE).sum())
    readers = [n.name for n in graph.consumers(name)]
    where = f" (read by node '{readers[0]}')" if readers else ""
    first = tuple(int(i) for i in np.argwhere(~(np.abs(value) <= MAX_ABS_VALUE))[0])
    raise InvalidModelError(
        f"initializer '{name}'{where} holds {nan} NaN, {inf} inf and {huge} value(s) beyond ±2^60, "
        f"the first at index {first}", details={"tensor": name, "nan": nan, "inf": inf, "huge": huge})
