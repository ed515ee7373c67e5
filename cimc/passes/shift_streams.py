"""Residual streams for scale-to-shift: CIM layers whose outputs meet at an ``Add``/``Sub``.

A layer's output scaled by ``g > 0`` reaches its readers scaled by ``g`` through positively
homogeneous ops (``f(g·x) = g·f(x)``: Relu, pools, reshapes, zero padding), products with a
constant and constant-bound Clips (``Clip(g·lo, g·hi)``). An ``Add``/``Sub`` is homogeneous in
its inputs together, ``(g·a) ± (g·b) = g·(a ± b)``, not in one: it passes the gain on only when
every input carries the same ``g``. A *stream* is the smallest set of tensors closed under both
directions — every reader of a tensor in it is a CIM layer reading it as its activation, or an op
above whose output joins; every producer is a CIM layer (a *member*) or such an op whose inputs
join — with at least one ``Add``/``Sub``. If each member outputs ``g·y`` (its remainder chosen so),
the whole stream carries ``g``, which the readers take into their input steps ``S_A·g`` (the
same codes), the Clips into their bounds. ``residual_stream`` finds it; ``None`` when a tensor of
it is a graph output or is read or produced by anything else (a SiLU, a Concat, a graph input).
"""

from __future__ import annotations

from dataclasses import dataclass

from cimc.ir.annotations import CimLayer, QuantParams, ScaledBounds
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.ops import find

#: ops homogeneous in all their inputs together (and in none alone)
JOINING_OPS = ("Add", "Sub")


@dataclass(frozen=True)
class Stream:
    """The members (CIM layers producing the stream, topological order), the reader CIM layers
    (their ``S_A`` times the gain) and the Clips on it (their bounds times the gain)."""

    members: list[Node]
    readers: list[Node]
    clips: list[Node]


def residual_stream(graph: Graph, node: Node) -> Stream | None:
    """The stream (module doc) that ``node``'s output belongs to, or ``None``."""
    tensors, todo = {node.outputs[0]}, [node.outputs[0]]
    members: dict[str, Node] = {}
    readers: dict[str, Node] = {}
    clips: dict[str, Node] = {}
    joins = 0

    def join(names: list[str]) -> None:
        for t in names:
            if t not in tensors:
                tensors.add(t)
                todo.append(t)

    while todo:
        tensor = todo.pop()
        if tensor in graph.outputs:
            return None
        source = graph.producer(tensor)
        if source is None:
            return None
        if is_cim_reader(source, source.inputs[0] if source.inputs else "") and source.outputs[0] == tensor:
            members[source.name] = source
        else:
            carried = gain_inputs(graph, source)
            if carried is None:
                return None
            join(carried)
        for reader in graph.consumers(tensor):
            if is_cim_reader(reader, tensor):
                readers[reader.name] = reader
                continue
            carried = gain_inputs(graph, reader)
            if carried is None or tensor not in carried:
                return None
            if reader.op == "Clip":
                clips[reader.name] = reader
            joins += reader.op in JOINING_OPS
            join([*carried, reader.outputs[0]])
    if not joins or not readers:
        return None
    order = {n.name: i for i, n in enumerate(graph.topo_order())}
    return Stream(*(sorted(d.values(), key=lambda n: order[n.name]) for d in (members, readers, clips)))


def is_cim_reader(node: Node, tensor: str) -> bool:
    """``node`` is a quantized CIM layer reading ``tensor`` as its activation and nowhere else."""
    return CimLayer in node.ann and QuantParams in node.ann and list(node.inputs[:1]) == [tensor] \
        and tensor not in node.inputs[1:]


def gain_inputs(graph: Graph, node: Node) -> list[str] | None:
    """The inputs of ``node`` that must carry the gain its output carries: all of an
    ``Add``/``Sub`` of non-constants, the data input of a homogeneous op, a constant product or
    a scalable Clip; ``None`` for any other op."""
    inputs = [t for t in node.inputs if t]
    if len(node.outputs) != 1 or not inputs:
        return None
    if node.op in JOINING_OPS:
        return inputs if len(inputs) == 2 and not any(t in graph.initializers for t in inputs) else None
    if scalable_clip(node, inputs[0]) or homogeneous(node):
        return inputs[:1]
    for tensor in inputs:
        if constant_product(graph, node, tensor):
            return [tensor]
    return None


def scalable_clip(node: Node, tensor: str) -> bool:
    """A Clip of ``tensor`` by constant bounds (attrs, the canonical form) not scaled before."""
    return node.op == "Clip" and list(node.inputs) == [tensor] and ScaledBounds not in node.ann


def constant_product(graph: Graph, node: Node, tensor: str) -> bool:
    """``Mul(tensor, k)``, ``Mul(k, tensor)`` or ``Div(tensor, k)`` with ``k`` a constant:
    ``(c·x)·k = c·(x·k)``, so it is homogeneous in ``tensor`` (the equalize pass writes them)."""
    if node.op not in ("Mul", "Div") or len(node.inputs) != 2 or list(node.inputs).count(tensor) != 1:
        return False
    other = node.inputs[1] if node.inputs[0] == tensor else node.inputs[0]
    return other in graph.initializers and (node.op == "Mul" or node.inputs[0] == tensor)


def homogeneous(node: Node) -> bool:
    """``f(c·x) = c·f(x)`` for ``c > 0``."""
    op = find(node.op)
    return op is not None and op.homogeneous(node)
