"""Reference interpreter: executes any IR graph with the numpy kernels of the op table (``cimc.ops``).

It is the oracle every pass is tested against: the graph before and after a pass must
compute the same outputs (up to float rounding) on the same inputs.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping

import numpy as np

from cimc.errors import InvalidModelError, UnsupportedError
from cimc.ir.graph import Graph
from cimc.ops import find


def run(graph: Graph, feeds: Mapping[str, np.ndarray], *, keep: bool = False,
        retain: Collection[str] = ()) -> dict[str, np.ndarray]:
    """Execute ``graph`` on ``feeds`` (graph input name → array) and return its outputs.

    With ``keep=True`` every intermediate tensor is returned too; ``retain`` names the
    intermediate tensors to return besides the outputs (only those are kept). Other tensors
    are freed as soon as their last reader has run, so peak memory stays near the largest
    live set plus what is retained.
    """
    values = _start(graph, feeds)
    for _ in _execute(graph, values, free=not keep, retain=retain):
        pass
    if keep:
        return values
    return {name: values[name] for name in [*graph.outputs, *retain] if name in values}


def stream(graph: Graph, feeds: Mapping[str, np.ndarray], watch: Collection[str]) -> Iterator[tuple[str, np.ndarray]]:
    """Execute ``graph`` on ``feeds`` and yield ``(tensor, value)`` for every tensor of
    ``watch`` as soon as it is computed (graph inputs first, then in execution order). Every
    tensor is freed once its last reader has run, so only the live set is ever held: a
    consumer that drops each value after use calibrates layer by layer."""
    values = _start(graph, feeds)
    yield from ((t, values[t]) for t in values if t in watch)
    for out in _execute(graph, values, free=True):
        if out in watch:
            yield out, values[out]


def _start(graph: Graph, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The initializers and the fed inputs (every graph input must be fed)."""
    missing = [name for name in graph.inputs if name not in feeds]
    if missing:
        raise InvalidModelError(f"missing input(s) for the interpreter: {', '.join(missing)}")
    values: dict[str, np.ndarray] = dict(graph.initializers)
    values.update({k: np.asarray(v) for k, v in feeds.items()})
    return values


def _execute(graph: Graph, values: dict[str, np.ndarray], free: bool,
             retain: Collection[str] = ()) -> Iterator[str]:
    """Run every node in topological order into ``values``, yielding each output's name once
    computed; with ``free``, a tensor whose last reader has run is dropped (not outputs,
    initializers or ``retain``)."""
    order = graph.topo_order()
    last_use = _last_uses(order)
    for step, node in enumerate(order):
        op = find(node.op)
        if op is None:
            raise UnsupportedError(f"interpreter has no kernel for op {node.op} (node '{node.name}')")
        values[node.outputs[0]] = op.kernel([values[t] for t in node.inputs if t], node.attrs)
        if free:
            _free(values, node.inputs, step, last_use, graph, retain)
        yield node.outputs[0]


def _last_uses(order: list) -> dict[str, int]:
    last: dict[str, int] = {}
    for step, node in enumerate(order):
        for t in node.inputs:
            last[t] = step
    return last


def _free(values: dict[str, np.ndarray], inputs: tuple[str, ...], step: int,
          last_use: dict[str, int], graph: Graph, retain: Collection[str] = ()) -> None:
    for t in inputs:
        if last_use.get(t) == step and t not in graph.outputs and t not in graph.initializers and t not in retain:
            values.pop(t, None)
