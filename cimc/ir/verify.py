"""Structural checks run after every pass: a graph that passes ``verify`` can be executed.

Checked: acyclic; every tensor read is defined exactly once (graph input, initializer or a
single node output); every tensor has a static shape; node names unique; per-op arity and
required attributes; CIM layer weights are constant.
"""

from __future__ import annotations

from cimc.errors import InvalidModelError
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.ir.ops import OPS


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
    spec = OPS.get(node.op)
    if spec is None:
        return [f"node '{node.name}' has unsupported op {node.op}"]
    problems = []
    n_in = len([t for t in node.inputs if t])
    if not spec.min_in <= n_in <= spec.max_in:
        problems.append(f"node '{node.name}' ({node.op}) has {n_in} inputs, expects {spec.min_in}..{spec.max_in}")
    if len(node.outputs) != spec.outputs:
        problems.append(f"node '{node.name}' ({node.op}) has {len(node.outputs)} outputs, expects {spec.outputs}")
    problems += [f"node '{node.name}' ({node.op}) lacks attribute '{a}'" for a in spec.attrs if a not in node.attrs]
    if node.op == "Conv" and len(node.inputs) > 1:
        problems += _conv_rules(graph, node)
    return problems


def _conv_rules(graph: Graph, node: Node) -> list[str]:
    w = graph.tensors.get(node.inputs[1])
    x = graph.tensors.get(node.inputs[0])
    if w is None or x is None:
        return []
    if len(w.shape) != 4 or len(x.shape) != 4:
        return [f"node '{node.name}' (Conv) must be 2-D (got weight {w.shape}, input {x.shape})"]
    group = int(node.attrs.get("group", 1))
    if w.shape[0] % group or x.shape[1] != w.shape[1] * group:
        return [f"node '{node.name}' (Conv) channels do not match group={group}: input {x.shape}, weight {w.shape}"]
    return []
