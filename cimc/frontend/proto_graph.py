"""Structural preparation of an ONNX graph before checking: node names, order, supported ops.

* ``name_nodes`` gives every unnamed (or duplicate-named) node the unique name ``<op>_<index>``.
* ``sort_nodes`` puts an unsorted but acyclic graph into topological order (with a warning)
  and raises ``InvalidModelError`` showing a cycle if there is one.
(``cimc.frontend.unsupported`` lists the op types the importer cannot handle.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import onnx

from cimc.errors import InvalidModelError
from cimc.frontend.lean_infer import infer_shapes_lean
from cimc.ir.order import cycle, topological
from cimc.safe_text import safe_name

log = logging.getLogger(__name__)

DEFAULT_DOMAINS = ("", "ai.onnx")


def set_repeated(field: Any, items: Sequence[Any]) -> None:
    """Replace the messages of a repeated protobuf ``field`` by (copies of) ``items``."""
    copies = []
    for item in items:
        copy = type(item)()
        copy.CopyFrom(item)
        copies.append(copy)
    del field[:]
    field.extend(copies)


def name_nodes(graph: onnx.GraphProto) -> None:
    """Give each node a unique name, keeping existing unique names (a duplicate is warned about)."""
    taken: set[str] = set()
    for index, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{index}"
        base, suffix = name, 1
        while name in taken:
            name = f"{base}_{suffix}"
            suffix += 1
        if node.name and name != node.name:
            log.warning("duplicate node name '%s' renamed to '%s'", safe_name(node.name), safe_name(name))
        node.name = name
        taken.add(name)


def check_definitions(graph: onnx.GraphProto) -> None:
    """Every tensor is defined once: by a graph input, an initializer (an old-style model may
    also list it as a graph input) or one node output."""
    inputs = _unique([vi.name for vi in graph.input], "graph input")
    inits = _unique([t.name for t in graph.initializer], "initializer")
    defined = {**dict.fromkeys(inits, "an initializer"), **dict.fromkeys(inputs, "a graph input")}
    for node in graph.node:
        for out in node.output:
            if out and out in defined:
                raise InvalidModelError(f"tensor '{out}' has two producers: {defined[out]} and node '{node.name}'",
                                        details={"tensor": out})
            defined[out] = f"node '{node.name}'"
    undefined = [(f"node '{n.name}'", t) for n in graph.node for t in n.input if t and t not in defined]
    undefined += [("the graph outputs", vi.name) for vi in graph.output if vi.name not in defined]
    if undefined:
        listed = ", ".join(f"'{t}' (read by {where})" for where, t in undefined[:5])
        raise InvalidModelError(f"undefined tensor(s): {listed}; each must be a graph input, an initializer "
                                "or a node output", details={"tensors": sorted({t for _, t in undefined})})


def _unique(names: list[str], what: str) -> list[str]:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidModelError(f"{what} '{name}' is defined twice", details={"tensor": name})
        seen.add(name)
    return names


def _subgraph_refs(node: onnx.NodeProto) -> Iterator[str]:
    """Names read inside the node's subgraphs (outer-scope captures among them)."""
    for attr in node.attribute:
        subs = ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)
        for sub in subs:
            for inner in sub.node:
                yield from inner.input
                yield from _subgraph_refs(inner)


def _dependencies(nodes: list[onnx.NodeProto]) -> list[set[int]]:
    producer = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    deps: list[set[int]] = []
    for i, node in enumerate(nodes):
        reads = [*node.input, *_subgraph_refs(node)]
        deps.append({producer[t] for t in reads if t in producer and producer[t] != i})
    return deps


def topological_order(nodes: list[onnx.NodeProto]) -> list[int]:
    """Indices of ``nodes`` in topological order, earliest index first among ready nodes."""
    deps = _dependencies(nodes)
    order = topological(deps)
    if len(order) != len(nodes):
        loop = cycle(deps, set(order))
        raise InvalidModelError(f"graph has a cycle: {' -> '.join(nodes[i].name for i in loop)}")
    return order


def sort_nodes(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` topologically (in place), warning when the order changed."""
    nodes = list(graph.node)
    order = topological_order(nodes)
    if order != list(range(len(nodes))):
        log.warning("graph '%s' was not topologically sorted; its nodes have been reordered", safe_name(graph.name))
        set_repeated(graph.node, [nodes[i] for i in order])


def fill_output_shapes(model: onnx.ModelProto) -> None:
    """Give graph outputs declared without a shape the shape inference finds (the ONNX
    checker requires one; onnxruntime does not)."""
    missing = [vi for vi in model.graph.output if not vi.type.tensor_type.HasField("shape")]
    if not missing:
        return
    try:
        inferred = infer_shapes_lean(model)
    except (onnx.shape_inference.InferenceError, ValueError, RuntimeError):
        return  # the checker will report the model
    found = {vi.name: vi.type for vi in inferred.graph.output if vi.type.tensor_type.HasField("shape")}
    for vi in missing:
        if vi.name in found:
            vi.type.CopyFrom(found[vi.name])
