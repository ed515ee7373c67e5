"""The hardware cost model (paper Section II.A and III.C), per CIM layer and in total.

For a CIM layer with ``S`` segments, ``Cout`` output channels in ``G`` groups,
``P`` output pixels per inference, ``rows`` unrolled rows per group, on a macro of
``WL × BL`` cells with ``A`` ADCs and ``L`` cycles to load a macro, with ``Sw`` weight
slices (``ceil(w_bits / cell_bits)`` digit columns per output channel) and ``T`` input
slices (``ceil(a_bits / dac_bits)`` DAC cycles per input vector; ``cimc.quant.slicing``):

=========================  ===========================================================
params (weights stored)    ``rows · Cout``  (weights, not cells: a sliced weight is one)
bitlines (columns)         ``S · Cout · Sw``
activated wordlines        ``max`` rows of one segment (≤ WL)
ADC conversions ("MACs")   ``S · Cout · Sw · T · P``  (one per column per input digit
                           per pixel)
partial-sum storage        ``S · Cout · Sw · P`` ADC codes held before the adder tree;
                           the ``T`` input digits of a pixel are shift-accumulated in
                           place (code ← code + 2^(t·dac_bits)·p̂_t, digital), so ``T``
                           does not multiply it, while the ``Sw`` digit columns are
                           separate codes until the shift-add; the model's figure is
                           the largest layer's (buffers are reused)
computing cycles           ``P · T · S · G · (ceil(Cout_g · Sw / A) + 1)``: per pixel,
                           input digit and segment, one cycle to drive the DACs plus
                           one per round of A ADCs over the group's digit columns
macros loaded              ``ceil(total bitlines / BL)`` (packed placement) — in general
                           the number of distinct macros holding a column
weight-loading cycles      ``macros loaded · L``
macro usage                ``Σ params · Sw / (macros loaded · WL · BL)``: the share of
                           the loaded cells that hold a weight digit
=========================  ===========================================================

With the paper's macro and its CIFAR-10 models (4-bit weights and inputs on 4-bit cells
and DACs: ``Sw = T = 1``) these give Tables III–V's baselines. For
``G = 1`` the cycle formula is the paper's ``P · S · (ceil(Cout / 64) + 1)``; for grouped
convs each group has its own input vector, hence the factor ``G``. Layers without
``QuantParams`` (mapping-only compiles) have ``Sw = T = 1`` and no bits in the report. A layer's own loading
cycles count the macros it touches (shared macros count for both layers), so per-layer
loading cycles need not add up to the total. When the model needs more bitlines than the
on-chip budget, every macro is reloaded each inference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cimc.ir.annotations import BitlinePlacement, CimLayer, QuantParams, WordlineTiling
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.macro import MacroSpec
from cimc.mapping.select import cim_nodes


@dataclass(frozen=True)
class LayerCost:
    name: str
    op: str
    params: int
    bitlines: int
    segments: int
    activated_wordlines: int
    adc_conversions: int
    partial_sums: int
    computing_cycles: int
    macros: int
    loading_cycles: int
    macro_usage: float
    w_bits: int | None = None
    a_bits: int | None = None
    adc_bits: int | None = None
    w_slices: int = 1
    a_slices: int = 1


@dataclass(frozen=True)
class ModelCost:
    layers: tuple[LayerCost, ...]
    params: int
    bitlines: int
    segments: int
    activated_wordlines: int
    adc_conversions: int
    partial_sum_storage: int
    computing_cycles: int
    macros: int
    loading_cycles: int
    macro_usage: float
    bitline_budget: int
    fits_on_chip: bool
    reload_cycles_per_inference: int
    min_budget_without_reload: int

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["layers"] = [asdict(layer) for layer in self.layers]
        return out


def precision(node: Node) -> dict[str, Any]:
    """``w_bits, a_bits, adc_bits, w_slices, a_slices`` of a layer (bits ``None``, one slice
    each, without ``QuantParams``)."""
    q = node.ann.get_ann(QuantParams)
    if q is None:
        return {"w_bits": None, "a_bits": None, "adc_bits": None, "w_slices": 1, "a_slices": 1}
    return {"w_bits": q.w_bits, "a_bits": q.a_bits, "adc_bits": q.adc_bits,
            "w_slices": q.w_slices, "a_slices": q.a_slices}


def conversion_rounds(cout_per_group: int, w_slices: int, adcs: int) -> int:
    """Rounds of ``A`` ADCs that convert one group's ``Cout_g · Sw`` digit columns."""
    return -(-(cout_per_group * w_slices) // adcs)


def layer_cost(node: Node, macro: MacroSpec) -> LayerCost:
    layer = node.ann[CimLayer]
    tiling = node.ann[WordlineTiling]
    placement = node.ann[BitlinePlacement]
    bits = precision(node)
    sw, t = bits["w_slices"], bits["a_slices"]
    s = tiling.num_segments
    rounds = conversion_rounds(layer.cout_per_group, sw, macro.adcs)
    macros = len(placement.macros_used())
    columns = s * layer.cout * sw
    return LayerCost(
        name=node.name, op=node.op, params=layer.params, bitlines=columns, segments=s,
        activated_wordlines=tiling.activated_wordlines(),
        adc_conversions=columns * t * layer.out_pixels,
        partial_sums=columns * layer.out_pixels,
        computing_cycles=layer.out_pixels * t * s * layer.groups * (rounds + 1),
        macros=macros, loading_cycles=macros * macro.load_cycles,
        macro_usage=layer.params * sw / (macros * macro.cells) if macros else 0.0, **bits,
    )


def model_cost(graph: Graph, macro: MacroSpec, bitline_budget: int | None = None) -> ModelCost:
    """Per-layer and total figures of a placed graph; ``bitline_budget`` defaults to 'all fit'."""
    nodes = cim_nodes(graph)
    layers = tuple(layer_cost(n, macro) for n in nodes)
    macro_ids = {m for n in nodes for m in n.ann[BitlinePlacement].macros_used()}
    bitlines = sum(layer.bitlines for layer in layers)
    params = sum(layer.params for layer in layers)
    macros = len(macro_ids)
    loading = macros * macro.load_cycles
    min_budget = macros * macro.bitlines
    # default: everything fits (at least one macro, so a model without CIM layers has a budget too)
    budget = max(min_budget, macro.bitlines) if bitline_budget is None else bitline_budget
    fits = min_budget <= budget  # the macros in use fit in the budget's whole macros
    return ModelCost(
        layers=layers, params=params, bitlines=bitlines,
        segments=sum(layer.segments for layer in layers),
        activated_wordlines=max((layer.activated_wordlines for layer in layers), default=0),
        adc_conversions=sum(layer.adc_conversions for layer in layers),
        partial_sum_storage=max((layer.partial_sums for layer in layers), default=0),
        computing_cycles=sum(layer.computing_cycles for layer in layers),
        macros=macros, loading_cycles=loading,
        macro_usage=sum(layer.params * layer.w_slices for layer in layers) / (macros * macro.cells) if macros else 0.0,
        bitline_budget=budget, fits_on_chip=fits,
        reload_cycles_per_inference=0 if fits else loading,
        min_budget_without_reload=min_budget,
    )
