"""IR → ONNX export: canonical IR written back as opset-17 ONNX that passes ``onnx.checker``.

Each op's ``export`` rule (``cimc.ops``) says which canonical attributes become ONNX operands
again (Clip min/max, Pad pads/constant_value, Reshape shape, Slice starts/ends/axes/steps),
written as initializers named ``<node>_<field>``, and which are ONNX attributes. Every tensor
gets a value_info entry. The output is deterministic: the same graph always serializes to the
same bytes (no external data).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from cimc import __version__
from cimc.errors import PassError
from cimc.ir import Graph, Node
from cimc.ops import op_table
from cimc.untrusted import refuse_special_output

EXPORT_OPSET = 17
EXPORT_IR_VERSION = 8


def fresh_name(taken: set[str], base: str) -> str:
    """``base``, or ``base_1``, ``base_2``, … — the first name not in ``taken`` (added to it): the
    one rule for every name cimc writes into an ONNX graph."""
    name, i = base, 0
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


class ExportBuilder:
    """Accumulates ONNX nodes and the initializers made from canonical attributes."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.nodes: list[onnx.NodeProto] = []
        self.extra: list[onnx.TensorProto] = []
        self.taken = set(graph.tensors) | set(graph.initializers) | {n.name for n in graph.nodes}

    def fresh(self, base: str) -> str:
        """``base``, or ``base_1``, ``base_2``, … — the first name not yet taken (then taken)."""
        return fresh_name(self.taken, base)

    def constant(self, node: Node, field: str, value: np.ndarray) -> str:
        """Name of a new initializer ``<node>_<field>`` holding ``value`` (an ONNX operand)."""
        name = self.fresh(f"{node.name}_{field}")
        self.extra.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def add(self, node: Node, wide: bool = False) -> None:
        """Append ``node`` as ONNX: its inputs, then the operands and attributes of its op's ``export``
        (or the nodes of its op's ``decompose``; ``wide``: the node's tensors are float64)."""
        op = op_table()[node.op]
        if op.decompose is not None and op.decompose(self, node, wide):
            return
        operands, attrs = op.export(self, node)
        inputs = list(node.inputs) + operands
        while inputs and not inputs[-1]:
            inputs.pop()
        proto = helper.make_node(node.op, inputs, list(node.outputs), name=node.name)
        proto.attribute.extend(_attribute(k, v) for k, v in sorted(attrs.items()))
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


def _value_info(graph: Graph, name: str) -> onnx.ValueInfoProto:
    info = graph.tensors[name]
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(info.dtype))
    return helper.make_tensor_value_info(name, elem, list(info.shape))


def export_onnx(graph: Graph) -> onnx.ModelProto:
    """The IR graph as an opset-17 ONNX model (checked with ``onnx.checker``)."""
    builder = ExportBuilder(graph)
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
    """Export ``graph`` and write it to ``path`` as a single self-contained ONNX file, atomically:
    written to a temporary sibling, then renamed over ``path`` (a reader, or a process killed
    while writing, never leaves a partial file at ``path``)."""
    target = os.fspath(path)
    refuse_special_output(Path(target))
    data = serialize(export_onnx(graph))
    folder, name = os.path.split(target)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
