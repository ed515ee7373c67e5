"""place-bitlines: give every (layer, segment, output channel) column a macro and a bitline.

CIM layers are taken in topological order and their columns laid out by the rule of
``cimc.mapping.columns`` (bit-sliced digits of one column adjacent on one macro). Policies:
``packed`` (default, as the paper counts it: each layer continues where the previous one
ended) and ``aligned`` (each layer starts on a fresh macro). The on-chip budget (``--bl``)
does not change placement: a model larger than the budget is mapped all the same and its
macros are reloaded each inference (see the report).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cimc.errors import MappingError
from cimc.ir.annotations import BitlinePlacement, CimLayer, WordlineTiling
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.mapping.columns import slice_columns, weight_slices
from cimc.mapping.select import cim_nodes
from cimc.options import validate
from cimc.passes.manager import GraphPass, PassContext, PassResult
from cimc.passes.registry import register


@register
@dataclass(frozen=True)
class PlaceBitlines(GraphPass):
    name = "place-bitlines"
    needs = ("tile-wordlines",)
    policy: str = "packed"

    @classmethod
    def from_options(cls, options: Any) -> PlaceBitlines:
        return cls(policy=options.placement)

    def requires(self, graph: Graph, ctx: PassContext) -> None:
        validate("placement", self.policy)
        missing = [n.name for n in cim_nodes(graph) if n.ann.get_ann(WordlineTiling) is None]
        if missing:
            raise MappingError(f"place-bitlines needs tile-wordlines first (untiled: {', '.join(missing[:5])})")
        budget = ctx.bitline_budget
        if budget is not None and budget < ctx.macro.bitlines:
            raise MappingError(f"a budget of {budget} bitlines is less than one macro",
                               hint=f"the smallest feasible --bl is {ctx.macro.bitlines}")

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        out = graph.copy()
        width = ctx.macro.bitlines
        next_column = 0
        modified = False
        for node in cim_nodes(out):
            if self.policy == "aligned":
                next_column = -(-next_column // width) * width
            placement = place_layer(node, next_column, width)
            next_column = int(placement.macro[-1]) * width + int(placement.bitline[-1]) + 1
            old = node.ann.get_ann(BitlinePlacement)
            if old is None or not _same(old, placement):
                node.ann.put(placement)
                modified = True
        return PassResult(out, modified)

    def ensures(self, graph: Graph, ctx: PassContext) -> None:
        check_placement(graph, ctx.macro.wordlines, ctx.macro.bitlines)


def place_layer(node: Node, first_column: int, width: int) -> BitlinePlacement:
    layer = node.ann[CimLayer]
    tiling = node.ann[WordlineTiling]
    slices = weight_slices(node)
    if slices > width:
        raise MappingError(f"layer '{node.name}' needs {slices} adjacent digit columns per output channel, "
                           f"a macro has {width} bitlines", hint="use wider cells or fewer weight bits")
    macro, bitline = slice_columns(first_column, tiling.num_segments * layer.cout, slices, width)
    wordline = np.zeros_like(macro)
    for arr in (macro, bitline, wordline):
        arr.flags.writeable = False
    return BitlinePlacement(int(macro[0] * width + bitline[0]), macro, bitline, wordline)


def _same(a: BitlinePlacement, b: BitlinePlacement) -> bool:
    return a.first_column == b.first_column and all(
        np.array_equal(x, y) for x, y in ((a.macro, b.macro), (a.bitline, b.bitline), (a.wordline, b.wordline)))


def check_placement(graph: Graph, wordlines: int, bitlines: int) -> None:
    """Every column of every CIM layer placed once, in bounds, and no cell shared."""
    nodes = cim_nodes(graph)
    if not nodes:
        return
    cells = []
    for node in nodes:
        p = node.ann[BitlinePlacement]
        rows = node.ann[WordlineTiling].segment_rows()
        per_segment = node.ann[CimLayer].cout * weight_slices(node)
        expected = rows.shape[0] * per_segment
        if p.num_columns != expected:
            raise MappingError(f"layer '{node.name}' places {p.num_columns} columns, needs {expected}")
        top = p.wordline + np.repeat(rows, per_segment)
        if (p.bitline < 0).any() or (p.bitline >= bitlines).any() or (p.wordline < 0).any() or (top > wordlines).any():
            raise MappingError(f"layer '{node.name}' has a column outside the macro")
        cells.append(np.stack([p.macro, p.bitline, p.wordline, top], axis=1))
    _check_overlap(np.concatenate(cells))


def _check_overlap(spans: np.ndarray) -> None:
    """``spans`` rows are (macro, bitline, wordline start, stop); stops must not pass the next start."""
    order = np.lexsort((spans[:, 2], spans[:, 1], spans[:, 0]))
    s = spans[order]
    same_line = (s[1:, 0] == s[:-1, 0]) & (s[1:, 1] == s[:-1, 1])
    if (same_line & (s[1:, 2] < s[:-1, 3])).any():
        i = int(np.argmax(same_line & (s[1:, 2] < s[:-1, 3])))
        raise MappingError(f"two columns share cells on macro {s[i, 0]}, bitline {s[i, 1]}")
