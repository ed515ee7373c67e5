"""place-bitlines: give every (layer, segment, output channel) column a macro and a bitline
(the layout rule: ``cimc.mapping.columns``).

CIM layers are taken in topological order and their columns ``k = s·Cout + o`` laid out
one after another on a global column axis; global column ``g`` sits on macro ``g // BL``,
bitline ``g % BL``, using wordlines ``[0, rows of segment s)``.

Bit-slicing (``cimc.quant.slicing``): a layer whose weights are wider than a cell has
``S = QuantParams.w_slices`` digit columns per (segment, output channel), layer column
``k = (s·Cout + o)·S + j`` holding digit ``j``. The ``S`` columns of one (segment, channel)
— a *group* — sit on adjacent bitlines of one macro: group ``q`` continues the global axis,
but a group that would cross a macro boundary starts on the next macro instead (the bitlines
left over stay idle). With first column ``f`` (``b0 = f mod BL``), ``n0 = ⌊(BL − b0)/S⌋``
groups fit on the first macro and ``n = ⌊BL/S⌋`` on each further one::

    q < n0:  macro f // BL,                    bitline b0 + q·S + j
    q ≥ n0:  macro f // BL + 1 + (q − n0) // n, bitline ((q − n0) mod n)·S + j

With ``S = 1`` (and for layers without ``QuantParams``: mapping-only compiles) this is the
plain layout above. Policies:

* ``packed`` (default, as the paper counts it): layers continue where the previous one
  ended, so the model needs ``ceil(total columns / BL)`` macros.
* ``aligned``: each layer starts on a fresh macro (simpler control, more idle cells).

The on-chip budget (``--bl``) does not change placement: a model larger than the budget
is mapped all the same and its macros are reloaded each inference (see the report).
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
