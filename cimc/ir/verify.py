"""Structural checks run after every pass: a graph that passes ``verify`` can be executed.

Checked: acyclic; every tensor read is defined exactly once (graph input, initializer or a
single node output); every tensor has a static shape; node names unique; per-op arity and
required attributes; the op's shape rule accepts the input shapes.
"""

from __future__ import annotations

from cimc.errors import InvalidModelError
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.ops import OpDef, Unsupported, find


def verify(graph: Graph) -> None:
    """Raise ``InvalidModelError`` listing every violation found, or return silently."""
    problems = _definitions(graph) + _shapes(graph) + [p for n in graph.nodes for p in _op_rules(graph, n)]
    if not graph.is_acyclic():
        problems.append(f"cycle: {' -> '.join(graph.find_cycle())}")
    if problems:
        shown = "; ".join(problems[:20]) + (f"; ... ({len(problems)} in all)" if len(problems) > 20 else "")
        raise InvalidModelError(f"graph '{graph.name}' failed verification: {shown}",
                                details={"problems": problems})


def _definitions(graph: Graph) -> list[str]:
    problems: list[str] = []
    defined: dict[str, str] = {name: "graph input" for name in graph.inputs}
    for name in graph.initializers:
        if name in defined:
            problems.append(f"tensor '{name}' is both a graph input and an initializer")
        defined[name] = "initializer"
    for node in graph.nodes:
        for out in node.outputs:
            if out in defined:
                problems.append(f"tensor '{out}' produced by node '{node.name}' is already a {defined[out]}")
            defined[out] = f"output of '{node.name}'"
    for node in graph.nodes:
        problems += [f"node '{node.name}' ({node.op}) reads undefined tensor '{t}'"
                     for t in node.inputs if t and t not in defined]
    problems += [f"graph output '{t}' is never produced" for t in graph.outputs if t not in defined]
    return problems


def _shapes(graph: Graph) -> list[str]:
    names = set(graph.inputs) | set(graph.initializers) | {t for n in graph.nodes for t in n.outputs}
    problems = [f"tensor '{t}' has no shape" for t in sorted(names) if t not in graph.tensors]
    for t in sorted(names & graph.tensors.keys()):
        shape = graph.tensors[t].shape
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            problems.append(f"tensor '{t}' has a non-static shape {shape}")
    return problems


def _op_rules(graph: Graph, node: Node) -> list[str]:
    op = find(node.op)
    if op is None:
        return [f"node '{node.name}' has unsupported op {node.op}"]
    if isinstance(op.shape, Unsupported):  # an op the frontend always replaces (Split)
        return [f"node '{node.name}' ({node.op}) is not an IR op: {op.shape.reason}"]
    problems = []
    low, high = op.inputs
    n_in = len([t for t in node.inputs if t])
    if not low <= n_in <= high:
        problems.append(f"node '{node.name}' ({node.op}) has {n_in} inputs, expects {low}..{high}")
    if len(node.outputs) != op.outputs:
        problems.append(f"node '{node.name}' ({node.op}) has {len(node.outputs)} outputs, expects {op.outputs}")
    problems += [f"node '{node.name}' ({node.op}) lacks attribute '{a}'" for a in op.attrs if a not in node.attrs]
    return problems or _shape_rule(graph, node, op)


def _shape_rule(graph: Graph, node: Node, op: OpDef) -> list[str]:
    """The op's shape rule must accept the input shapes (e.g. a Conv's groups must fit its
    channels). The result is not compared with the recorded output shape: that comes from
    ONNX shape inference, which differs from the kernels for some ``ceil_mode`` pools."""
    shapes = [graph.tensors[t].shape if t in graph.tensors else None for t in node.inputs if t]
    if any(s is None for s in shapes):
        return []  # reported by _shapes
    try:
        op.shape([s for s in shapes if s is not None], node.attrs)
    except (InvalidModelError, ValueError, IndexError, KeyError, TypeError) as exc:
        return [f"node '{node.name}' ({node.op}): {exc}"]
    return []
