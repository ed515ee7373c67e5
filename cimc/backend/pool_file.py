"""``weight_pool.safetensors``: the weight pool of a build compiled with ``--weight-pool``
(docs/weight-pool.md; docs/build-format.md, "weight_pool.safetensors"). Absent otherwise.

Tensors (``i`` = the layer's index in ``layout.json``, 4 digits; only pooled layers):

* ``pool``: ``(P, L)`` int8, every entry ``±1``;
* ``multiplier``: ``(1,)`` int32, ``A`` (1 without an error term, 2 with one);
* ``layer_{i}.index``: ``(S, Cout)`` int32 in ``[0, P)``, ``S`` the layer's segments;
* ``layer_{i}.scale``: ``(1,)`` or ``(Cout,)`` float32, ``α`` (equal to the layer's ``w_step``);
* ``layer_{i}.error``: ``(S, Cout, L)`` int8 in ``{−1, 0, 1}``, only when ``A = 2``.

The layer's codes are ``q[o, s·L + t] = A · pool[index[s, o], t] + error[s, o, t]`` for the
rows ``s·L + t`` the layer has; its cells hold them (its digits when bit-sliced).
``pool_markdown`` writes the report's weight-pool section (``report.json`` ``weight_pool``).
"""

from __future__ import annotations

import numpy as np
from safetensors.numpy import save as save_safetensors

from cimc.documents.report import Report
from cimc.ir.annotations import WeightPool
from cimc.ir.node import Node
from cimc.safe_text import printable

FILE = "weight_pool.safetensors"
FORMAT = "cimc-weight-pool"


def layer_key(index: int, name: str) -> str:
    """The tensor name of field ``name`` of layout layer ``index``."""
    return f"layer_{index:04d}.{name}"


def pool_files(nodes: list[Node]) -> dict[str, bytes]:
    """``{FILE: bytes}`` when some CIM layer is pooled, else ``{}`` (module doc)."""
    pooled = [(i, n.ann[WeightPool]) for i, n in enumerate(nodes) if WeightPool in n.ann]
    if not pooled:
        return {}
    first = pooled[0][1]
    arrays: dict[str, np.ndarray] = {"pool": np.ascontiguousarray(first.pool, dtype=np.int8),
                                     "multiplier": np.array([first.multiplier], dtype=np.int32)}
    for i, pool in pooled:
        arrays[layer_key(i, "index")] = np.ascontiguousarray(pool.index, dtype=np.int32)
        arrays[layer_key(i, "scale")] = np.ascontiguousarray(pool.scale, dtype=np.float32)
        if pool.error is not None:
            arrays[layer_key(i, "error")] = np.ascontiguousarray(pool.error, dtype=np.int8)
    return {FILE: bytes(save_safetensors(arrays, metadata={"format": FORMAT}))}


def pool_markdown(report: Report) -> str:
    """``report.md``'s weight-pool section (empty without one)."""
    pool = report.weight_pool
    if pool is None:
        return ""
    lines = ["", "## Weight pool", "",
             f"{pool.pool_size} binary vectors of {pool.vector_length} weights (codes {pool.multiplier}·p"
             + (" + e" if pool.multiplier > 1 else "") + f"): the pool occupies {pool.pool_bitlines:,} bitlines "
             f"({pool.pool_macros:,} macro(s)) instead of the pooled layers' {pool.logical_bitlines:,} "
             f"({pool.logical_macros:,} macro(s)); {pool.effective_bits_per_weight:.3f} effective bits per weight "
             "(indices, error terms, scales and the pool).", "",
             "| layer | weights | positions | pool reads | ADC conversions (unpooled) | index bits | error bits "
             "| bits/weight |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {printable(x.name)} | {x.weights:,} | {x.positions:,} | {x.pool_columns_read:,} | "
              f"{x.adc_conversions:,} ({x.unpooled_adc_conversions:,}) | {x.index_bits:,} | {x.error_bits:,} | "
              f"{x.effective_bits_per_weight:.3f} |" for x in pool.layers]
    return "\n".join(lines) + "\n"
