"""Batch-size independence: the IR has static shapes (batch ``B``, usually 1), executors run
any batch ``N``.

Only ``Reshape`` stores the batch size in an attribute (``torch.flatten`` exports as
``Reshape(x, [1, 512])``). ``batch_generic`` returns a copy in which every Reshape whose
input and target both lead with the static batch ``B`` reshapes to ``[-1, …]`` instead, so
the kernels (and the exported ONNX) work for every ``N``. Tensor shapes are left static.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from cimc.errors import UsageError
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.ops import find


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


def batch_safe(graph: Graph) -> bool:
    """Whether every sample of a batch flows independently through ``batch_generic(graph)``:
    no node mixes axis 0 (Flatten/Concat/Softmax/Slice/Pad/Transpose on axis 0, a Reshape
    that keeps a fixed leading size, Gemm with ``transA``)."""
    return not any(mixes_batch(node.op, node.attrs) for node in batch_generic(graph).nodes)


def mixes_batch(op: str, a: Mapping[str, Any]) -> bool:
    """Whether an op (of a batch-generic graph) combines values of different samples
    (``OpDef.mixes_batch``; an op outside the table is taken not to)."""
    found = find(op)
    return found is not None and found.mixes_batch(a)


def batch_chunks(graph: Graph, feeds: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """``feeds`` as one batch when the graph is batch-safe, else split into chunks of the
    graph's static batch size (a model that mixes its batch axis runs only at that size)."""
    return [feeds] if batch_safe(graph) else split_batch(feeds, static_batch(graph))


def split_batch(feeds: Mapping[str, np.ndarray], size: int) -> list[dict[str, np.ndarray]]:
    """Consecutive chunks of ``size`` samples of every input. A model of static batch 0 (an empty
    input) runs only on empty inputs: one chunk."""
    total = min(int(v.shape[0]) for v in feeds.values())
    if size < 1 and not total:
        return [dict(feeds)]
    if size < 1 or total % size:
        raise UsageError(f"this model mixes its batch axis and runs only in batches of {size}; "
                         f"{total} samples is not a multiple of {size}")
    return [{k: v[i:i + size] for k, v in feeds.items()} for i in range(0, total, size)]
