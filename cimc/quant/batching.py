"""Batch-size independence: the IR has static shapes (batch ``B``, usually 1), executors run
any batch ``N``.

Only ``Reshape`` stores the batch size in an attribute (``torch.flatten`` exports as
``Reshape(x, [1, 512])``). ``batch_generic`` returns a copy in which every Reshape whose
input and target both lead with the static batch ``B`` reshapes to ``[-1, …]`` instead, so
the kernels (and the exported ONNX) work for every ``N``. Tensor shapes are left static.

Not every graph input carries the batch: an operand of shape ``(3, 1)`` that an Add broadcasts
over ``(B, 3, 4)`` keeps its shape at every ``N`` (``batch_inputs``). Batches built for a model
(calibration, chunks) give only those inputs ``N`` samples; the others their static shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from cimc.errors import CimcError, UsageError
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


def batch_inputs(graph: Graph) -> frozenset[str]:
    """The graph inputs that carry the batch axis.

    The candidates are the inputs whose dim 0 is the static batch ``B`` (the first input always
    is one). The first carries the batch; each other candidate, in input order, joins when the op
    table's shape rules accept the batch-generic graph with it and those chosen before at batch
    ``B + 1`` (the rest at their static shapes): a ``(1, 1)`` operand broadcast over ``(1, 3, 4)``
    does not, a second image input does. When no choice is accepted (a model that mixes its batch
    axis runs only at ``B``), every candidate."""
    batch = static_batch(graph)
    candidates = [t for t in graph.inputs if graph.shape(t)[:1] == (batch,)]
    if len(candidates) < 2:
        return frozenset(candidates)
    generic = batch_generic(graph)
    chosen = candidates[:1]
    for name in candidates[1:]:
        if _shapes_accept(generic, {*chosen, name}, batch + 1):
            chosen.append(name)
    return frozenset(chosen if _shapes_accept(generic, set(chosen), batch + 1) else candidates)


def _shapes_accept(graph: Graph, batched: set[str], n: int) -> bool:
    """Whether every node's shape rule accepts its input shapes when the ``batched`` inputs hold
    ``n`` samples and the other inputs their static shapes."""
    shapes = {t: tuple(a.shape) for t, a in graph.initializers.items()}
    shapes.update({t: (n, *graph.shape(t)[1:]) if t in batched else graph.shape(t) for t in graph.inputs})
    for node in graph.topo_order():
        found = find(node.op)
        try:
            if found is None:
                return False
            out = found.shape([shapes[t] for t in node.inputs if t], node.attrs)
        except (CimcError, ValueError, IndexError, KeyError, TypeError, ZeroDivisionError):
            return False
        shapes.update({t: tuple(out) for t in node.outputs})
    return True


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
    return [feeds] if batch_safe(graph) else split_batch(feeds, static_batch(graph), batch_inputs(graph))


def split_batch(feeds: Mapping[str, np.ndarray], size: int,
                batched: frozenset[str] | None = None) -> list[dict[str, np.ndarray]]:
    """Consecutive chunks of ``size`` samples of the ``batched`` inputs (all when ``None``), the
    other inputs whole in every chunk. A model of static batch 0 (an empty input) runs only on
    empty inputs: one chunk."""
    split = [k for k in feeds if batched is None or k in batched] or list(feeds)
    total = min(int(feeds[k].shape[0]) for k in split)
    if size < 1 and not total:
        return [dict(feeds)]
    if size < 1 or total % size:
        raise UsageError(f"this model mixes its batch axis and runs only in batches of {size}; "
                         f"{total} samples is not a multiple of {size}")
    return [{k: v[i:i + size] if k in split else v for k, v in feeds.items()} for i in range(0, total, size)]
