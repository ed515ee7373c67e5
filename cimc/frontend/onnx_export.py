"""IR → ONNX export: canonical IR written back as opset-17 ONNX that passes ``onnx.checker``.

Attributes that the IR keeps in canonical form become ONNX operands again: Clip min/max,
Pad pads/constant_value, Reshape shape and Slice starts/ends/axes/steps are written as
initializers named ``<node>_<field>``. Every tensor gets a value_info entry. The output is
deterministic: the same graph always serializes to the same bytes (no external data).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from cimc import __version__
from cimc.errors import PassError
from cimc.ir import Graph, Node

EXPORT_OPSET = 17
EXPORT_IR_VERSION = 8
_INT64_MIN = -(2**63)
_OPERAND_ATTRS = {"Clip": ("min", "max"), "Pad": ("pads", "value"), "Reshape": ("shape",),
                  "Slice": ("starts", "ends", "axes", "steps")}


class _Builder:
    """Accumulates ONNX nodes and the initializers made from canonical attributes."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.nodes: list[onnx.NodeProto] = []
        self.extra: list[onnx.TensorProto] = []
        self.taken = set(graph.tensors) | set(graph.initializers) | {n.name for n in graph.nodes}

    def constant(self, node: Node, field: str, value: np.ndarray) -> str:
        name, i = f"{node.name}_{field}", 0
        while name in self.taken:
            i += 1
            name = f"{node.name}_{field}_{i}"
        self.taken.add(name)
        self.extra.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def add(self, node: Node) -> None:
        rule = _OPERAND_RULES.get(node.op)
        inputs = list(node.inputs) + (rule(self, node) if rule is not None else [])
        while inputs and not inputs[-1]:
            inputs.pop()
        skip = _OPERAND_ATTRS.get(node.op, ())
        attrs = {k: v for k, v in sorted(node.attrs.items()) if k not in skip}
        if node.op == "Reshape" and 0 in node.attrs["shape"]:
            attrs["allowzero"] = 1  # the canonical shape is resolved: a 0 is a real empty dim
        proto = helper.make_node(node.op, inputs, list(node.outputs), name=node.name)
        proto.attribute.extend(_attribute(k, v) for k, v in attrs.items())
        self.nodes.append(proto)


def _attribute(key: str, value: Any) -> onnx.AttributeProto:
    if isinstance(value, (tuple, list)):
        if all(isinstance(v, (int, np.integer)) for v in value):
            return helper.make_attribute(key, [int(v) for v in value], attr_type=onnx.AttributeProto.INTS)
        return helper.make_attribute(key, [float(v) for v in value], attr_type=onnx.AttributeProto.FLOATS)
    if isinstance(value, (bool, int, np.integer)):
        return helper.make_attribute(key, int(value))
    if isinstance(value, (float, np.floating)):
        return helper.make_attribute(key, float(value))
    return helper.make_attribute(key, value)


def _clip(b: _Builder, node: Node) -> list[str]:
    lo, hi = float(node.attrs["min"]), float(node.attrs["max"])
    lo_name = b.constant(node, "min", np.array(lo, np.float32)) if lo != -math.inf else ""
    return [lo_name, b.constant(node, "max", np.array(hi, np.float32)) if hi != math.inf else ""]


def _pad(b: _Builder, node: Node) -> list[str]:
    pads = b.constant(node, "pads", np.array(node.attrs["pads"], np.int64))
    if node.attrs.get("mode", "constant") != "constant":
        return [pads]
    return [pads, b.constant(node, "value", np.array(node.attrs.get("value", 0.0), np.float32))]


def _reshape(b: _Builder, node: Node) -> list[str]:
    return [b.constant(node, "shape", np.array(node.attrs["shape"], np.int64).reshape(-1))]


def _slice(b: _Builder, node: Node) -> list[str]:
    # canonical ends are clamped: -1 only occurs with a negative step, meaning "through index 0"
    ends = [_INT64_MIN if e < 0 else e for e in node.attrs["ends"]]
    fields = {"starts": node.attrs["starts"], "ends": ends, "axes": node.attrs["axes"], "steps": node.attrs["steps"]}
    return [b.constant(node, k, np.array(v, np.int64).reshape(-1)) for k, v in fields.items()]


_OPERAND_RULES: dict[str, Callable[[_Builder, Node], list[str]]] = {
    "Clip": _clip, "Pad": _pad, "Reshape": _reshape, "Slice": _slice}


def _value_info(graph: Graph, name: str) -> onnx.ValueInfoProto:
    info = graph.tensors[name]
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(info.dtype))
    return helper.make_tensor_value_info(name, elem, list(info.shape))


def export_onnx(graph: Graph) -> onnx.ModelProto:
    """The IR graph as an opset-17 ONNX model (checked with ``onnx.checker``)."""
    builder = _Builder(graph)
    order = graph.topo_order()
    for node in order:
        builder.add(node)
    inits = [numpy_helper.from_array(np.asarray(graph.initializers[k]), k) for k in sorted(graph.initializers)]
    boundary = set(graph.inputs) | set(graph.outputs) | set(graph.initializers)
    inner = [t for n in order for t in n.outputs if t and t not in boundary]
    onnx_graph = helper.make_graph(
        builder.nodes, graph.name, [_value_info(graph, t) for t in graph.inputs],
        [_value_info(graph, t) for t in graph.outputs], initializer=inits + builder.extra,
        value_info=[_value_info(graph, t) for t in inner])
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", EXPORT_OPSET)],
                              ir_version=EXPORT_IR_VERSION, producer_name="cimc", producer_version=__version__)
    helper.set_model_props(model, dict(sorted(graph.metadata.items())))
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError) as exc:
        raise PassError(f"exported ONNX model of graph '{graph.name}' fails the ONNX checker: {exc}") from exc
    return model


def serialize(model: onnx.ModelProto) -> bytes:
    """Deterministic protobuf bytes of ``model``."""
    return model.SerializeToString(deterministic=True)


def save_onnx(graph: Graph, path: str | os.PathLike[str]) -> None:
    """Export ``graph`` and write it to ``path`` as a single self-contained ONNX file."""
    with open(path, "wb") as fh:
        fh.write(serialize(export_onnx(graph)))
