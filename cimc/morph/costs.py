"""The resource costs the morphing regularizer weighs channels by (paper Eq. 2 and a CIM variant).

For a weight layer ``L`` with kernel ``k = kh·kw``, ``G`` groups, input classes ``I_L`` (a
flattened input counts each class ``m`` times) and output classes ``O_L``, alive counts
``A_L`` (inputs, ×m) and ``B_L`` (outputs), and channel importances ``g_c`` (BN ``|γ|``):

* ``params`` (MorphNet / paper Eq. 2):
  ``F_L = (k/G)·(A_L·Σ_{o∈O_L} g_o + B_L·m·Σ_{i∈I_L} g_i)``
* ``bitlines`` (what the macro stores, CIM layers only): with ``S_L = S(A_L)`` segments of
  the compile path's tiling (``tiling_for``) and ``n_L = A_L / S_L`` channels per segment,
  ``F_L = S_L·Σ_{o∈O_L} g_o + (B_L·m / n_L)·Σ_{i∈I_L} g_i`` — an output channel costs ``S_L``
  bitlines, an input channel ``1/n_L`` of a segment of ``B_L`` bitlines.

A depthwise conv (input class = output class) costs ``k·Σ g_o`` resp. ``S_L·Σ g_o``. With
every ``g ∈ {0, 1}`` and ``A_L`` a multiple of ``n_L``, ``F_L = 2 ×`` the layer's params resp.
bitlines in the alive network (``1 ×`` for a depthwise conv, whose one class is counted once).
``A_L, B_L, S_L`` are constants of each evaluation (MorphNet treats them so):
``F`` is linear in ``g``, and ``coefficients`` gives its slope for every layer; fixed classes
are always alive and never penalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cimc.errors import UsageError
from cimc.ir.annotations import CimLayer
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.mapping.select import cim_layer
from cimc.mapping.tiling import tiling_for
from cimc.morph.channel_groups import ChannelGroups

VARIANTS = ("params", "bitlines")


@dataclass(frozen=True, eq=False)
class LayerTerm:
    """One weight layer's classes and geometry, as the cost needs them."""

    node: str
    x_cls: np.ndarray
    y_cls: np.ndarray
    mult: int
    kernel: tuple[int, int]
    groups: int
    depthwise: bool
    cim: bool


def layer_terms(graph: Graph, groups: ChannelGroups, map_fc: bool = False) -> list[LayerTerm]:
    """The cost terms of every weight layer the channel analysis follows."""
    terms = []
    for layer in groups.layers:
        node = graph.node(layer.node)
        w = graph.shape(node.inputs[1])
        kernel = (int(w[2]), int(w[3])) if layer.kind != "gemm" else (1, 1)
        group = int(node.attrs.get("group", 1))
        terms.append(LayerTerm(layer.node, groups.classes(layer.x), groups.classes(layer.y),
                               groups.tensors[layer.x].mult, kernel, group, layer.kind == "depthwise",
                               cim_layer(graph, node, map_fc) is not None))
    return terms


def coefficients(term: LayerTerm, alive: np.ndarray, variant: str, macro: MacroSpec,
                 tiling: str = "channel") -> tuple[float, float]:
    """``(a, b)`` with ``F_L = a·Σ_{o∈O_L} g_o + b·Σ_{i∈I_L} g_i`` at the alive counts ``alive``."""
    k = term.kernel[0] * term.kernel[1]
    a_in = int(alive[term.x_cls].sum()) * term.mult
    b_out = int(alive[term.y_cls].sum())
    if variant == "params":
        if term.depthwise:
            return float(k), 0.0
        return k * a_in / term.groups, k * b_out * term.mult / term.groups
    if variant != "bitlines":
        raise UsageError(f"unknown cost '{variant}'; choose one of {', '.join(VARIANTS)}")
    if not term.cim or a_in == 0:
        return 0.0, 0.0
    groups = max(b_out, 1) if term.depthwise else term.groups
    geo = CimLayer("conv", groups, a_in // groups * k if not term.depthwise else k, max(b_out, 1), term.kernel, 1)
    segments = tiling_for(geo, macro.wordlines, tiling).num_segments
    if term.depthwise:
        return float(segments), 0.0
    return float(segments), b_out * term.mult * segments / a_in


def class_costs(terms: list[LayerTerm], alive: np.ndarray, variant: str, macro: MacroSpec,
                tiling: str = "channel") -> np.ndarray:
    """``∂F/∂g_c`` for every class (the slope of the regularizer, per channel)."""
    out = np.zeros(alive.shape[0])
    for term in terms:
        a, b = coefficients(term, alive, variant, macro, tiling)
        np.add.at(out, term.y_cls, a)
        if b:
            np.add.at(out, term.x_cls, b)
    return out


def cost_value(terms: list[LayerTerm], g: np.ndarray, alive: np.ndarray, variant: str, macro: MacroSpec,
               tiling: str = "channel") -> float:
    """``F = Σ_L F_L`` for importances ``g`` (numpy; the torch regularizer computes the same)."""
    total = 0.0
    for term in terms:
        a, b = coefficients(term, alive, variant, macro, tiling)
        total += a * float(g[term.y_cls].sum()) + (b * float(g[term.x_cls].sum()) if b else 0.0)
    return total
