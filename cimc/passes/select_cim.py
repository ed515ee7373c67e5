"""select-cim: decide which nodes run on CIM macros and annotate them with ``CimLayer``
(the rule: ``cimc.mapping.select``).

Default (the paper): every Conv with constant weights. ``map_fc=True`` adds Gemm (with
``transA=0``) and MatMul whose right operand is a constant 2-D matrix. Everything else runs
in the digital periphery. For a Conv, ``rows = Cin_g·kh·kw`` and ``out_pixels = Ho·Wo``;
a Gemm/MatMul is a 1×1 conv with ``rows = K`` and one output pixel per row of the input
excluding the batch dimension.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cimc.ir.annotations import CimLayer
from cimc.ir.graph import Graph
from cimc.mapping.select import cim_layer
from cimc.passes.manager import GraphPass, PassContext, PassResult
from cimc.passes.registry import register


@register
@dataclass(frozen=True)
class SelectCim(GraphPass):
    name = "select-cim"
    map_fc: bool = False

    @classmethod
    def from_options(cls, options: Any) -> SelectCim:
        return cls(map_fc=options.map_fc)

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        out = graph.copy()
        modified = False
        for node in out.nodes:
            layer = cim_layer(out, node, self.map_fc)
            if layer != node.ann.get_ann(CimLayer):
                modified = True
                node.ann.pop(CimLayer, None)
                if layer is not None:
                    node.ann.put(layer)
        return PassResult(out, modified)
