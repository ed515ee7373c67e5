"""Which CIM-layer inputs can be negative (they then need signed DAC codes).

DAC input codes are unsigned, ``[0, 2^a_bits − 1]`` (docs/build-format.md, 'The numerical contract', step 1),
which is right after a ReLU. A tensor is provably non-negative when it is a graph input the caller vouches for
(e.g. images in [0, 1]), or produced by Relu, Sigmoid, Softmax or Clip with ``min ≥ 0``, or
by an op that only moves, selects or averages non-negative values (pools, Reshape, Flatten,
Transpose, Slice, Concat, Pad with a non-negative fill, Add/Sum/Mul of non-negative tensors).
Anything else gets narrow signed codes (``a_signed`` in the exported quantization).
"""

from __future__ import annotations

from cimc.ir.graph import Graph
from cimc.ir.node import Node

_NONNEG_OPS = frozenset({"Relu", "Sigmoid", "Softmax"})
_PRESERVING_OPS = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "Reshape", "Flatten", "Transpose",
                             "Slice", "Concat", "Add", "Sum", "Mul"})


def nonnegative_tensors(graph: Graph, nonnegative_inputs: frozenset[str] = frozenset()) -> set[str]:
    """Names of the tensors that are ≥ 0 for every input."""
    known = {t for t in graph.inputs if t in nonnegative_inputs}
    known |= {name for name, value in graph.initializers.items() if value.size and float(value.min()) >= 0}
    for node in graph.topo_order():
        if _is_nonnegative(node, known):
            known.add(node.outputs[0])
    return known


def _is_nonnegative(node: Node, known: set[str]) -> bool:
    if node.op in _NONNEG_OPS:
        return True
    if node.op == "Clip":
        return float(node.attrs["min"]) >= 0
    if node.op == "Pad":
        return node.inputs[0] in known and float(node.attrs.get("value", 0.0)) >= 0
    return node.op in _PRESERVING_OPS and all(t in known for t in node.inputs if t)


def signed_inputs(graph: Graph, nonnegative_inputs: frozenset[str] = frozenset()) -> dict[str, bool]:
    """Tensor name → ``True`` if it may be negative (every tensor of the graph)."""
    known = nonnegative_tensors(graph, nonnegative_inputs)
    names = set(graph.tensors) | set(graph.inputs)
    return {name: name not in known for name in names}
