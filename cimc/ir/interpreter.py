"""Reference interpreter: executes any IR graph with the numpy kernels of the op table (``cimc.ops``).

It is the oracle every pass is tested against: the graph before and after a pass must
compute the same outputs (up to float rounding) on the same inputs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from cimc.errors import InvalidModelError, UnsupportedError
from cimc.ir.graph import Graph
from cimc.ops import find


def run(graph: Graph, feeds: Mapping[str, np.ndarray], *, keep: bool = False) -> dict[str, np.ndarray]:
    """Execute ``graph`` on ``feeds`` (graph input name → array) and return its outputs.

    With ``keep=True`` every intermediate tensor is returned too. Tensors are freed as soon
    as their last reader has run, so peak memory stays near the largest live set.
    """
    missing = [name for name in graph.inputs if name not in feeds]
    if missing:
        raise InvalidModelError(f"missing input(s) for the interpreter: {', '.join(missing)}")
    values: dict[str, np.ndarray] = dict(graph.initializers)
    values.update({k: np.asarray(v) for k, v in feeds.items()})
    order = graph.topo_order()
    last_use = _last_uses(order)
    for step, node in enumerate(order):
        op = find(node.op)
        if op is None:
            raise UnsupportedError(f"interpreter has no kernel for op {node.op} (node '{node.name}')")
        args = [values[t] for t in node.inputs if t]
        values[node.outputs[0]] = op.kernel(args, node.attrs)
        if not keep:
            _free(values, node.inputs, step, last_use, graph)
    return values if keep else {name: values[name] for name in graph.outputs}


def _last_uses(order: list) -> dict[str, int]:
    last: dict[str, int] = {}
    for step, node in enumerate(order):
        for t in node.inputs:
            last[t] = step
    return last


def _free(values: dict[str, np.ndarray], inputs: tuple[str, ...], step: int,
          last_use: dict[str, int], graph: Graph) -> None:
    for t in inputs:
        if last_use.get(t) == step and t not in graph.outputs and t not in graph.initializers:
            values.pop(t, None)
