"""Batch-size independence: the IR has static shapes (batch ``B``, usually 1), executors run
any batch ``N``.

Only ``Reshape`` stores the batch size in an attribute (``torch.flatten`` exports as
``Reshape(x, [1, 512])``). ``batch_generic`` returns a copy in which every Reshape whose
input and target both lead with the static batch ``B`` reshapes to ``[-1, …]`` instead, so
the kernels (and the exported ONNX) work for every ``N``. Tensor shapes are left static.
"""

from __future__ import annotations

from cimc.ir.graph import Graph
from cimc.ir.node import Node


def static_batch(graph: Graph) -> int:
    """The batch size of the graph's first input (1 when it has no inputs)."""
    return graph.shape(graph.inputs[0])[0] if graph.inputs and graph.shape(graph.inputs[0]) else 1


def generic_shape(graph: Graph, node: Node, batch: int) -> tuple[int, ...]:
    """A Reshape node's target shape with a leading batch dimension written as ``-1``."""
    shape = tuple(int(d) for d in node.attrs["shape"])
    source = graph.shape(node.inputs[0])
    if shape and source and shape[0] == batch and source[0] == batch and -1 not in shape:
        return (-1, *shape[1:])
    return shape


def batch_generic(graph: Graph) -> Graph:
    """A copy of ``graph`` whose Reshapes keep the batch dimension free (see module doc)."""
    out = graph.copy()
    batch = static_batch(graph)
    for node in out.nodes:
        if node.op == "Reshape":
            node.attrs["shape"] = generic_shape(graph, node, batch)
    return out
