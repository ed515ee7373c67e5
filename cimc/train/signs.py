"""Which CIM-layer inputs can be negative (they then need signed DAC codes).

DAC input codes are unsigned, ``[0, 2^a_bits − 1]`` (docs/build-format.md,
'The numerical contract', step 1), which is right after a
ReLU. A tensor is provably non-negative when it is a graph input the caller vouches for
(e.g. images in [0, 1]), or produced by an op whose sign rule (``OpDef.nonnegative`` in
``cimc.ops``) says so: Relu, Sigmoid, HardSigmoid, Softmax, Clip with ``min ≥ 0``, or an op
that only moves, selects or averages non-negative values (pools, Reshape, Flatten, Transpose,
Slice, Concat, Pad with a non-negative fill, Add/Sum/Mul of non-negative tensors).
Anything else gets narrow signed codes (``a_signed`` in the exported quantization).
"""

from __future__ import annotations

from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.ops import find


def nonnegative_tensors(graph: Graph, nonnegative_inputs: frozenset[str] = frozenset()) -> set[str]:
    """Names of the tensors that are ≥ 0 for every input."""
    known = {t for t in graph.inputs if t in nonnegative_inputs}
    known |= {name for name, value in graph.initializers.items() if value.size and float(value.min()) >= 0}
    for node in graph.topo_order():
        if _is_nonnegative(node, known):
            known.add(node.outputs[0])
    return known


def _is_nonnegative(node: Node, known: set[str]) -> bool:
    """The op's sign rule (``OpDef.nonnegative``); an op outside the table is not known ≥ 0."""
    op = find(node.op)
    return op is not None and op.nonnegative(node, known)


def signed_inputs(graph: Graph, nonnegative_inputs: frozenset[str] = frozenset()) -> dict[str, bool]:
    """Tensor name → ``True`` if it may be negative (every tensor of the graph)."""
    known = nonnegative_tensors(graph, nonnegative_inputs)
    names = set(graph.tensors) | set(graph.inputs)
    return {name: name not in known for name in names}
