"""select-cim: decide which nodes run on CIM macros and annotate them with ``CimLayer``.

Default (the paper): every Conv with constant weights. ``map_fc=True`` adds Gemm (with
``transA=0``) and MatMul whose right operand is a constant 2-D matrix. Everything else runs
in the digital periphery. For a Conv, ``rows = Cin_g·kh·kw`` and ``out_pixels = Ho·Wo``;
a Gemm/MatMul is a 1×1 conv with ``rows = K`` and one output pixel per row of the input
excluding the batch dimension.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cimc.ir.annotations import CimLayer
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.passes.manager import GraphPass, PassContext, PassResult


@dataclass(frozen=True)
class SelectCim(GraphPass):
    name = "select-cim"
    map_fc: bool = False

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        out = graph.copy()
        modified = False
        for node in out.nodes:
            layer = self.layer_of(out, node)
            if layer != node.ann.get_ann(CimLayer):
                modified = True
                node.ann.pop(CimLayer, None)
                if layer is not None:
                    node.ann.put(layer)
        return PassResult(out, modified)

    def layer_of(self, graph: Graph, node: Node) -> CimLayer | None:
        if node.op == "Conv" and node.inputs[1] in graph.initializers:
            return conv_layer(graph, node)
        if self.map_fc and node.op in ("Gemm", "MatMul"):
            return fc_layer(graph, node)
        return None


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
