"""tile-wordlines: split each CIM layer's unrolled rows into segments of at most WL rows
(the rule and its two modes: ``cimc.mapping.tiling``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cimc.ir.annotations import CimLayer, WordlineTiling
from cimc.ir.graph import Graph
from cimc.mapping.tiling import tiling_for
from cimc.options import validate
from cimc.passes.manager import GraphPass, PassContext, PassResult
from cimc.passes.registry import register


@register
@dataclass(frozen=True)
class TileWordlines(GraphPass):
    name = "tile-wordlines"
    needs = ("select-cim",)
    mode: str = "channel"

    @classmethod
    def from_options(cls, options: Any) -> TileWordlines:
        return cls(mode=options.tiling)

    def requires(self, graph: Graph, ctx: PassContext) -> None:
        validate("tiling", self.mode)

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        out = graph.copy()
        modified = False
        for node in out.nodes:
            layer = node.ann.get_ann(CimLayer)
            if layer is None:
                continue
            tiling = tiling_for(layer, ctx.macro.wordlines, self.mode)
            if node.ann.get_ann(WordlineTiling) != tiling:
                node.ann.put(tiling)
                modified = True
        return PassResult(out, modified)

    def ensures(self, graph: Graph, ctx: PassContext) -> None:
        for node in graph.nodes:
            tiling = node.ann.get_ann(WordlineTiling)
            if tiling is not None and tiling.activated_wordlines() > ctx.macro.wordlines:
                raise AssertionError(f"segment of '{node.name}' exceeds {ctx.macro.wordlines} wordlines")
