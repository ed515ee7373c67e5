"""The weight-pool check of ``cimc validate`` (docs/weight-pool.md; ``weight_pool.safetensors``
in docs/build-format.md).

A build has ``weight_pool.safetensors`` exactly when some layer of ``layout.json`` has a
``pool_vector_length``. Then:

* ``pool`` is ``(P, L)`` of ``±1`` with ``L`` every pooled layer's ``pool_vector_length``, and
  ``multiplier`` is ``[1]`` (no ``.error`` tensors) or ``[2]`` (an ``.error`` per pooled layer);
* per pooled layer ``i``: ``index`` ``(S, Cout)`` integers in ``[0, P)``, ``S`` its segments;
  ``error`` ``(S, Cout, L)`` in ``{−1, 0, 1}``; ``scale`` ``(1,)`` or ``(Cout,)`` equal to
  ``quant.json``'s ``w_step``; no tensor of an unpooled or unknown layer;
* its codes ``q[o, s·L + t] = A · pool[index[s, o], t] + error[s, o, t]`` re-derived from the
  file are what its cells hold (its weight digits when bit-sliced), cell by cell;
* ``report.json``'s ``weight_pool`` section equals the figures recomputed from the file and the
  layout (``cimc.cost.pool``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from cimc.backend.pool_file import FILE, layer_key
from cimc.build.reader import BuildDir, load_weights
from cimc.check.quant import compare_layer, digit_filters
from cimc.check.violations import Validation, Violation
from cimc.cost.pool import PoolCost, layer_pool_cost, model_pool_cost
from cimc.documents.layout import Layer
from cimc.quant.weight_pool import codes

FIELDS = ("index", "scale", "error")


def check_pool(build: BuildDir, result: Validation) -> Iterator[Violation]:
    pooled = {i: x for i, x in enumerate(build.layout.layers) if x.pool_vector_length is not None}
    if not build.has(FILE):
        if pooled:
            yield Violation("pool", FILE, f"missing, but {len(pooled)} layer(s) of layout.json are pooled")
        return
    if not pooled:
        yield Violation("pool", FILE, "present, but no layer of layout.json is pooled")
        return
    arrays = load_weights(build.path / FILE)
    bad = list(_check_pool_arrays(arrays, pooled))
    yield from bad
    if bad:
        return
    quant = {x.get("node"): x for x in (build.optional_json("quant.json") or {}).get("layers", [])}
    for i, entry in pooled.items():
        yield from _check_layer(build, arrays, i, entry, quant.get(entry.node))
    yield from _check_report(build, arrays, pooled, quant)
    result.notes.append(f"weight pool: {len(pooled)} layer(s) re-derived from {FILE}")


def _check_pool_arrays(arrays: dict[str, np.ndarray], pooled: dict[int, Layer]) -> Iterator[Violation]:
    pool, mult = arrays.get("pool"), arrays.get("multiplier")
    lengths = {int(x.pool_vector_length or 0) for x in pooled.values()}
    if pool is None or pool.ndim != 2 or pool.shape[0] < 1 or {int(pool.shape[1])} != lengths:
        yield Violation("pool", FILE, f"'pool' must be (P, L) with L = the layers' vector length {sorted(lengths)}")
        return
    if not np.isin(pool, (-1, 1)).all():
        yield Violation("pool", FILE, f"{int((~np.isin(pool, (-1, 1))).sum())} pool entries are not ±1")
    if mult is None or mult.shape != (1,) or int(mult[0]) not in (1, 2):
        yield Violation("pool", FILE, "'multiplier' must be [1] or [2]")
    known = {"pool", "multiplier"} | {layer_key(i, f) for i in pooled for f in FIELDS}
    for key in sorted(set(arrays) - known)[:3]:
        yield Violation("pool", FILE, f"unexpected tensor '{key}' (not a pooled layer's)")


def _check_layer(build: BuildDir, arrays: dict[str, np.ndarray], i: int, entry: Layer,
                 quant: dict[str, Any] | None) -> Iterator[Violation]:
    where = f"layer {i} ({entry.node})"
    pool, mult = arrays["pool"], int(arrays["multiplier"][0])
    index, scale, error = (arrays.get(layer_key(i, f)) for f in FIELDS)
    segments, cout, length = len(entry.segments), entry.cout, int(pool.shape[1])
    if index is None or index.shape != (segments, cout) or index.dtype.kind not in "iu":
        yield Violation("pool", where, f"index must be ({segments}, {cout}) integers")
        return
    out = (index < 0) | (index >= pool.shape[0])
    if out.any():
        yield Violation("pool", where, f"{int(out.sum())} index(es) outside [0, {pool.shape[0]}), e.g. "
                        f"{int(index[out][0])}")
        return
    if (error is None) != (mult == 1) or (error is not None and (error.shape != (segments, cout, length)
                                                                 or not np.isin(error, (-1, 0, 1)).all())):
        yield Violation("pool", where, f"error must be ({segments}, {cout}, {length}) in {{-1, 0, 1}} exactly when "
                        "the multiplier is 2")
        return
    if scale is None or scale.shape not in ((1,), (cout,)) or (quant is not None and not np.array_equal(
            np.asarray(quant.get("w_step"), dtype=np.float32), scale.astype(np.float32))):
        yield Violation("pool", where, "scale must be (1,) or (Cout,) and equal quant.json's w_step")
    q = codes(pool, index.astype(np.int64), error, mult, entry.rows).astype(np.float32)
    weight = _segment_codes(entry, q)
    cells = digit_filters(entry, weight, quant, build.macro.cell_bits)
    weights = build.weights()
    own = build.owners
    stack = np.stack([weights[f"macro_{m:04d}"] for m in range(own.shape[0])])
    for v in compare_layer(stack, own, i, entry, cells):
        yield Violation("pool", where, f"cells differ from the pool's codes: {v.message}")


def _segment_codes(entry: Layer, q: np.ndarray) -> np.ndarray:
    """The codes ``q (Cout, rows)`` as per-segment filters ``(S·Cout, C, kh, kw)``: segment ``s``'s
    filter starts at its first input channel ``c_lo = row_start // k`` (the form of
    ``model.cim.onnx``'s ``cell_codes``, which ``check.quant.expected_columns`` reads)."""
    k = entry.kernel[0] * entry.kernel[1]
    starts = np.array([s.row_start for s in entry.segments], dtype=np.int64)
    width = entry.rows
    row = (starts // k * k)[:, None] + np.arange(width)[None, :]  # (S, rows)
    valid = row < entry.rows
    gathered = np.where(valid[:, None, :], q[:, np.minimum(row, entry.rows - 1)].transpose(1, 0, 2), 0)
    return gathered.reshape(len(starts) * entry.cout, width // k, *entry.kernel).astype(np.float32)


def recomputed_pool(build: BuildDir, arrays: dict[str, np.ndarray], pooled: dict[int, Layer],
                    quant: dict[str, Any]) -> PoolCost:
    """The report's ``weight_pool`` figures from the file and the layout (``cimc.cost.pool``)."""
    pool = arrays["pool"]
    layers = [layer_pool_cost(x.node, arrays[layer_key(i, "index")], arrays.get(layer_key(i, "error")),
                              int(arrays[layer_key(i, "scale")].shape[0]), int(pool.shape[0]), x.rows, x.out_pixels,
                              x.w_slices, x.a_slices, x.groups) for i, x in pooled.items()]
    return model_pool_cost(layers, int(pool.shape[0]), int(pool.shape[1]), int(arrays["multiplier"][0]),
                           max(x.w_slices for x in pooled.values()), build.macro.bitlines)


def _check_report(build: BuildDir, arrays: dict[str, np.ndarray], pooled: dict[int, Layer],
                  quant: dict[str, Any]) -> Iterator[Violation]:
    got = (build.report or {}).get("weight_pool")
    want = recomputed_pool(build, arrays, pooled, quant).to_dict()
    if got != want:
        keys = sorted(k for k in want if not isinstance(got, dict) or got.get(k) != want[k])
        yield Violation("pool", "report.json", f"weight_pool differs from the figures recomputed from {FILE}: "
                        f"{', '.join(keys[:5]) or 'the section'}")
