"""Fast evaluation of the cost model's bitline count for a vector of group widths.

The expansion search evaluates many candidate widths; rewriting the graph and running
select-cim → tile-wordlines → place-bitlines → ``model_cost`` for each would work but costs
milliseconds per candidate. ``BitlineModel`` computes the same figures without rewriting:

* the CIM layers are exactly those ``SelectCim.layer_of`` selects;
* a layer's input/output widths are linear in the group widths (``ChannelGroups.channels``),
  its ``CimLayer`` geometry follows ``select_cim.conv_layer`` / ``fc_layer`` (a depthwise conv
  has ``group = C``), and its segment count is ``tiling_for(layer, WL, mode).num_segments`` —
  the tile-wordlines pass's own function;
* bitlines ``S·Cout`` and params ``rows·Cout`` per layer as in ``cost_model.layer_cost``; macros
  ``⌈Σ bitlines / BL⌉`` for packed placement, ``Σ ⌈bitlines_L / BL⌉`` for aligned
  (``place_bitlines.place_layer``'s column layout).

``tests/test_morph_bitlines.py`` checks every figure against ``model_cost`` on rewritten graphs.
A candidate *fits* a budget ``B`` when ``bitlines ≤ B`` (the paper's Eq. 3) and the macros
it occupies fit in ``B`` (``ModelCost.fits_on_chip``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cimc.ir.annotations import CimLayer
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.mapping.select import cim_layer
from cimc.mapping.tiling import tiling_for
from cimc.morph.channel_groups import ChannelGroups


@dataclass(frozen=True)
class MorphCost:
    """Totals of a candidate: bitlines, macros loaded, params stored, macro usage."""

    bitlines: int
    macros: int
    params: int
    usage: float
    layer_bitlines: tuple[int, ...]

    def fits(self, budget: int, macro: MacroSpec) -> bool:
        return self.bitlines <= budget and self.macros * macro.bitlines <= budget


@dataclass(frozen=True, eq=False)
class _Layer:
    node: str
    kind: str
    base: CimLayer
    copies_x: np.ndarray | None
    copies_y: np.ndarray | None
    mult_x: int
    depthwise: bool


class BitlineModel:
    """The bitline cost of ``graph``'s CIM layers as a function of the group widths."""

    def __init__(self, graph: Graph, groups: ChannelGroups, macro: MacroSpec, *, tiling: str = "channel",
                 placement: str = "packed", map_fc: bool = False) -> None:
        self.macro = macro
        self.tiling = tiling
        self.placement = placement
        self.map_fc = map_fc
        depthwise = {layer.node for layer in groups.layers if layer.kind == "depthwise"}
        self.layers: list[_Layer] = []
        self._memo: dict[bytes, MorphCost] = {}
        for node in graph.topo_order():
            base = cim_layer(graph, node, map_fc)
            if base is None:
                continue
            x, y = node.inputs[0], node.outputs[0]
            self.layers.append(_Layer(
                node.name, base.kind, base,
                groups.copies(x) if x in groups.tensors else None,
                groups.copies(y) if y in groups.tensors else None,
                groups.tensors[x].mult if x in groups.tensors else 1, node.name in depthwise))

    def feeds_cim(self, groups: int) -> np.ndarray:
        """``(groups,)`` bool: the groups whose width is an input or output width of some CIM
        layer (only they move the bitline count)."""
        fed = np.zeros(groups, dtype=bool)
        for layer in self.layers:
            for copies in (layer.copies_x, layer.copies_y):
                if copies is not None:
                    fed |= np.asarray(copies) != 0
        return fed

    def geometry(self, layer: _Layer, widths: np.ndarray) -> CimLayer:
        """The ``CimLayer`` select-cim would annotate after the rewrite to ``widths``."""
        b = layer.base
        cout = b.cout if layer.copies_y is None else int(layer.copies_y @ widths)
        if layer.copies_x is None:
            return CimLayer(b.kind, b.groups, b.rows, cout, b.kernel, b.out_pixels)
        cin = int(layer.copies_x @ widths) * layer.mult_x
        if b.kind == "gemm":
            return CimLayer("gemm", 1, cin, cout, (1, 1), b.out_pixels)
        groups = cout if layer.depthwise else b.groups
        k = b.kernel[0] * b.kernel[1]
        return CimLayer("conv", groups, cin // groups * k, cout, b.kernel, b.out_pixels)

    def evaluate(self, widths: np.ndarray) -> MorphCost:
        """Bitlines, macros, params and usage of the model rewritten to ``widths`` (memoised:
        searches revisit the same widths)."""
        key = np.asarray(widths, dtype=np.int64).tobytes()
        if key not in self._memo:
            self._memo[key] = self._evaluate(widths)
        return self._memo[key]

    def _evaluate(self, widths: np.ndarray) -> MorphCost:
        geo = [self.geometry(layer, widths) for layer in self.layers]
        cols = np.array([tiling_for(g, self.macro.wordlines, self.tiling).num_segments * g.cout for g in geo],
                        dtype=np.int64)
        params = int(sum(g.params for g in geo))
        width = self.macro.bitlines
        per_layer = -(-cols // width) if self.placement == "aligned" else -(-cols.sum(keepdims=True) // width)
        macros = int(per_layer.sum())
        usage = params / (macros * self.macro.cells) if macros else 0.0
        return MorphCost(int(cols.sum()), macros, params, usage, tuple(int(c) for c in cols))
