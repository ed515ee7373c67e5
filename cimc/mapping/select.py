"""Which nodes run on CIM macros, and the ``CimLayer`` each one is.

Default (the paper): every Conv with constant weights. ``map_fc=True`` adds Gemm (with
``transA=0``) and MatMul whose right operand is a constant 2-D matrix. Everything else runs
in the digital periphery. For a Conv, ``rows = Cin_g·kh·kw`` and ``out_pixels = Ho·Wo``;
a Gemm/MatMul is a 1×1 conv with ``rows = K`` and one output pixel per row of the input
excluding the batch dimension.
"""

from __future__ import annotations

import math

from cimc.ir.annotations import CimLayer
from cimc.ir.graph import Graph
from cimc.ir.node import Node


def cim_layer(graph: Graph, node: Node, map_fc: bool) -> CimLayer | None:
    """The ``CimLayer`` of ``node`` if it runs on CIM macros, else ``None`` (module doc)."""
    if node.op == "Conv" and node.inputs[1] in graph.initializers:
        return conv_layer(graph, node)
    if map_fc and node.op in ("Gemm", "MatMul"):
        return fc_layer(graph, node)
    return None


def cim_nodes(graph: Graph) -> list[Node]:
    """The nodes annotated as CIM layers, in deterministic topological order."""
    return [n for n in graph.topo_order() if CimLayer in n.ann]


def conv_layer(graph: Graph, node: Node) -> CimLayer:
    cout, cin_g, kh, kw = graph.shape(node.inputs[1])
    _, _, ho, wo = graph.shape(node.outputs[0])
    return CimLayer("conv", int(node.attrs["group"]), cin_g * kh * kw, cout, (kh, kw), ho * wo)


def fc_layer(graph: Graph, node: Node) -> CimLayer | None:
    if node.inputs[1] not in graph.initializers or len(graph.shape(node.inputs[1])) != 2:
        return None
    if node.op == "Gemm" and node.attrs["transA"]:
        return None
    k, m = graph.shape(node.inputs[1])
    if node.op == "Gemm" and node.attrs["transB"]:
        k, m = m, k
    lead = graph.shape(node.inputs[0])[:-1]
    return CimLayer("gemm", 1, k, m, (1, 1), math.prod(lead[1:]) if len(lead) > 1 else 1)
