"""What weight-pool compression costs and saves (docs/weight-pool.md, "What the cost model
counts"), per pooled layer and for the model.

Per layer with indices ``idx (S, Cout)``, ``Sw`` weight slices, ``T`` input slices, ``Npix``
output pixels, ``rows·Cout`` weights, a pool of ``P`` vectors of length ``L``:

=============================  ==========================================================
logical bitlines               ``S · Cout · Sw`` (what an unpooled layer of these codes places)
pool columns read              ``Σ_s U_s``, ``U_s = |{(g(o), idx[s, o]) : o}|`` (per group ``g``)
ADC conversions                ``Σ_s (U'_s + K_s) · Sw · T · Npix``: a pool column is converted
                               once per segment and pixel and routed to every output using
                               it without an error term (``U'_s`` distinct such indices); a
                               position with a kept error vector (``K_s`` of them) converts
                               its own column ``x·(A·p + e)``
permutation steps              ``S · Cout · Npix``: one routed code per position and pixel
index bits                     ``S · Cout · ⌈log2 P⌉``
error bits                     ``kept · L`` (+ ``S · Cout`` kept/pruned bits when some error
                               vectors were pruned); 0 without an error term
scale bits                     ``32`` per scale
effective bits per weight      ``(index + error + scale bits) / (rows · Cout)``
=============================  ==========================================================

The model adds the pool once: ``P · Sw`` bitlines (``L`` wordlines each) and ``P · L`` bits,
against the sum of the logical bitlines; the macros are ``⌈bitlines / BL⌉`` each way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cimc.cost.model import precision
from cimc.ir.annotations import CimLayer, WeightPool
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.mapping.select import cim_nodes

SCALE_BITS = 32


@dataclass(frozen=True)
class PoolLayerCost:
    name: str
    weights: int
    positions: int
    logical_bitlines: int
    pool_columns_read: int
    adc_conversions: int
    unpooled_adc_conversions: int
    permutation_steps: int
    index_bits: int
    error_bits: int
    scale_bits: int
    effective_bits_per_weight: float


@dataclass(frozen=True)
class PoolCost:
    pool_size: int
    vector_length: int
    multiplier: int
    layers: tuple[PoolLayerCost, ...]
    pool_bitlines: int
    pool_bits: int
    logical_bitlines: int
    pool_macros: int
    logical_macros: int
    effective_bits_per_weight: float

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["layers"] = [asdict(layer) for layer in self.layers]
        return out


def index_bits(pool_size: int) -> int:
    """Bits of one index: ``⌈log2 P⌉``, at least 1."""
    return max(1, int(pool_size - 1).bit_length())


def pool_columns_read(index: np.ndarray, groups: int = 1, own: np.ndarray | None = None) -> int:
    """``Σ_s`` distinct indices of segment ``s`` (rows of ``index``), per group (outputs of
    different groups see different inputs, so they never share a conversion); a position where
    ``own`` (``(S, Cout)`` bool) is set counts on its own (its column differs by its error term)."""
    segments, cout = index.shape
    group = np.arange(cout, dtype=np.int64) // max(1, cout // groups)
    span = int(index.max(initial=0)) + 1
    keyed = index.astype(np.int64) + span * group[None, :]
    if own is not None:
        unique = span * groups + np.arange(segments * cout, dtype=np.int64).reshape(segments, cout)
        keyed = np.where(own, unique, keyed)
    ordered = np.sort(keyed, axis=1)
    return int(segments + np.count_nonzero(np.diff(ordered, axis=1))) if index.size else 0


def layer_pool_cost(name: str, index: np.ndarray, error: np.ndarray | None, scales: int, pool_size: int,
                    rows: int, out_pixels: int, w_slices: int, a_slices: int, groups: int = 1) -> PoolLayerCost:
    """One pooled layer's figures (module doc)."""
    segments, cout = (int(d) for d in index.shape)
    positions = segments * cout
    read = pool_columns_read(index, groups)
    converted, err = read, 0
    if error is not None:
        own = np.any(error != 0, axis=2)
        kept = int(np.count_nonzero(own))
        err = kept * int(error.shape[2]) + (positions if kept < positions else 0)
        converted = pool_columns_read(index, groups, own)
    idx_bits = positions * index_bits(pool_size)
    scale_bits = scales * SCALE_BITS
    weights = rows * cout
    return PoolLayerCost(
        name=name, weights=weights, positions=positions, logical_bitlines=positions * w_slices,
        pool_columns_read=read, adc_conversions=converted * w_slices * a_slices * out_pixels,
        unpooled_adc_conversions=positions * w_slices * a_slices * out_pixels,
        permutation_steps=positions * out_pixels, index_bits=idx_bits, error_bits=err, scale_bits=scale_bits,
        effective_bits_per_weight=(idx_bits + err + scale_bits) / weights)


def model_pool_cost(layers: list[PoolLayerCost], pool_size: int, vector_length: int, multiplier: int,
                    w_slices: int, bitlines_per_macro: int) -> PoolCost:
    """The model's figures: the pool once (``w_slices``: the widest pooled layer's) plus the layers'."""
    pool_bitlines = pool_size * w_slices
    pool_bits = pool_size * vector_length
    logical = sum(layer.logical_bitlines for layer in layers)
    stored = sum(layer.index_bits + layer.error_bits + layer.scale_bits for layer in layers) + pool_bits
    weights = sum(layer.weights for layer in layers)
    return PoolCost(pool_size=pool_size, vector_length=vector_length, multiplier=multiplier, layers=tuple(layers),
                    pool_bitlines=pool_bitlines, pool_bits=pool_bits, logical_bitlines=logical,
                    pool_macros=-(-pool_bitlines // bitlines_per_macro),
                    logical_macros=-(-logical // bitlines_per_macro),
                    effective_bits_per_weight=stored / weights if weights else 0.0)


def graph_pool_cost(graph: Graph, macro: MacroSpec) -> PoolCost | None:
    """The figures of a compiled graph's pooled layers, ``None`` without any."""
    nodes = [n for n in cim_nodes(graph) if WeightPool in n.ann]
    if not nodes:
        return None
    layers, slices = [], []
    for node in nodes:
        pool, layer, bits = node.ann[WeightPool], node.ann[CimLayer], precision(node)
        slices.append(bits["w_slices"])
        layers.append(layer_pool_cost(node.name, pool.index, pool.error, int(pool.scale.shape[0]), pool.pool_size,
                                      layer.rows, layer.out_pixels, bits["w_slices"], bits["a_slices"], layer.groups))
    first = nodes[0].ann[WeightPool]
    return model_pool_cost(layers, first.pool_size, first.vector_length, first.multiplier, max(slices),
                           macro.bitlines)
