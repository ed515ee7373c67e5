"""A stable text form of the IR: one line per node in topological order.

``%y = Conv(%x, %w) {group=1, pads=[1,1,1,1]} : [1,64,32,32] ann=[CimLayer, WordlineTiling]``
Attributes and annotations are sorted, floats printed with ``repr``: the same graph always
prints the same text, so dumps can be diffed between passes.
"""

from __future__ import annotations

from typing import Any

from cimc.ir.graph import Graph
from cimc.safe_text import printable


def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_fmt(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def _shape(graph: Graph, tensor: str) -> str:
    info = graph.tensors.get(tensor)
    return _fmt(list(info.shape)) if info is not None else "?"


def format_graph(graph: Graph) -> str:
    """The whole graph: inputs, initializer summary, nodes, outputs. Names are written with
    their control characters escaped (``cimc.safe_text.printable``): one line per node
    whatever the model calls things."""
    lines = [f"graph {printable(graph.name)}"]
    lines += [f"  input %{printable(t)} : {_shape(graph, t)} {graph.tensors[t].dtype}" for t in graph.inputs]
    for name in sorted(graph.initializers):
        arr = graph.initializers[name]
        lines.append(f"  const %{printable(name)} : {_fmt(list(arr.shape))} {arr.dtype.name}")
    for node in graph.topo_order():
        args = ", ".join(f"%{printable(t)}" if t else "_" for t in node.inputs)
        outs = ", ".join(f"%{printable(t)}" for t in node.outputs)
        attrs = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(node.attrs.items()))
        ann = ",".join(sorted(type(a).__name__ for a in node.ann.values()))
        shape = _shape(graph, node.outputs[0])
        line = f"  {outs} = {node.op}({args})" + (f" {{{attrs}}}" if attrs else "") + f" : {shape}"
        lines.append(line + (f" ann=[{ann}]" if ann else "") + f"  # {printable(node.name)}")
    lines.append("  return " + ", ".join(f"%{printable(t)}" for t in graph.outputs))
    return "\n".join(lines) + "\n"
