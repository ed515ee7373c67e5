"""AveragePool (2-D): ``y[n,c,h,w] = Σ_{i,j} x_pad[n, c, h·s_h + i, w·s_w + j] / count``.

``count`` is the number of window cells inside the input, or inside input plus explicit pads
with ``count_include_pad`` (``ceil_mode``'s extra end padding never counts). Canonical attrs:
``kernel_shape``, ``strides``, ``pads``, ``ceil_mode``, ``count_include_pad``; no dilations.
A 1-D AveragePool is imported as the 2-D one over ``(N, C, 1, L)`` (``replace``, as Conv1d).

The float32 sum is formed in the order of onnxruntime's CPU kernel (1.32, MLAS), so that the
emulator equals onnxruntime on ``model.cim.onnx`` bit for bit (float addition does not
associate). The order depends on the geometry (padded cells add 0, which changes nothing):

* ``ceil_mode`` with ``count_include_pad``: onnxruntime's own loop, one accumulator over the
  window row by row (``rows``);
* kernel = input, stride 1, no pads (a global pool): four lanes ``ℓ`` summing the flattened
  window's cells ``i ≡ ℓ (mod 4)`` in order, combined as ``(ℓ0 + ℓ2) + (ℓ1 + ℓ3)``, then the
  remaining ``H·W mod 4`` cells in order (``lanes``);
* stride along W ≤ 2, kernel ≤ 32 each way and ``W + pads_W ≤ 2045`` (MLAS's vector kernel):
  each window column summed top to bottom, then the column sums left to right (``columns``);
* otherwise MLAS's generic kernel, one accumulator row by row (``rows``).

The division is one float32 ``total / count``. Checked against onnxruntime on 4,500 random
geometries (tests/test_pool_kernels.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.errors import UnsupportedError
from cimc.ops.base import (
    Attrs,
    OpDef,
    always,
    channel_identity,
    export_attributes,
    never,
    no_rewrite,
    sign_of_inputs,
)
from cimc.ops.canon import ints, rank4, window_attrs
from cimc.ops.rewrite_nodes import window_1d_as_2d
from cimc.ops.windows import pad_hw, pool_pads, pool_shape, window_tap, windows

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    attrs = window_attrs(node, a, rank4(node, ctx), ints(a["kernel_shape"]))
    if attrs.pop("dilations") != (1, 1):
        raise UnsupportedError(f"node '{node.name}' (AveragePool): dilations are not supported")
    attrs["ceil_mode"] = int(a.get("ceil_mode", 0))
    attrs["count_include_pad"] = int(a.get("count_include_pad", 0))
    return [node.input[0]], attrs


MLAS_BUFFER = 2045  # MLAS's reduction buffer (2048 floats less 3 of over-read padding)


def summation_order(hw: tuple[int, ...], a: Attrs) -> str:
    """Which order onnxruntime sums a window in: ``rows``, ``lanes`` or ``columns`` (module doc)."""
    (kh, kw), (sh, sw), pads = a["kernel_shape"], a["strides"], a["pads"]
    if a.get("ceil_mode", 0) and a.get("count_include_pad", 0):
        return "rows"
    if (kh, kw) == tuple(hw) and (sh, sw) == (1, 1) and not any(pads):
        return "lanes"
    if sw <= 2 and max(kh, kw) <= 32 and hw[1] + pads[1] + pads[3] <= MLAS_BUFFER:
        return "columns"
    return "rows"


def _lane_sums(x: np.ndarray) -> np.ndarray:
    """``lanes``: a global window summed as four interleaved lanes, then the tail."""
    flat = x.reshape(*x.shape[:2], -1)
    whole = flat.shape[2] // 4 * 4
    lane = np.zeros((*x.shape[:2], 4), x.dtype)
    if whole:
        lane = np.add.accumulate(flat[:, :, :whole].reshape(*x.shape[:2], -1, 4), axis=2)[:, :, -1]
    total = (lane[..., 0] + lane[..., 2]) + (lane[..., 1] + lane[..., 3])
    for i in range(whole, flat.shape[2]):  # at most 3 cells
        total = total + flat[:, :, i]
    return total.reshape(*x.shape[:2], 1, 1)


def _column_sums(padded: np.ndarray, a: Attrs, out: tuple[int, ...]) -> np.ndarray:
    """``columns``: every window column summed top to bottom, the columns then left to right."""
    kh, kw = a["kernel_shape"]
    (sh, sw), width = a["strides"], padded.shape[3]
    column = np.zeros((*padded.shape[:2], out[0], width), padded.dtype)
    for i in range(kh):  # every column of the padded input, summed over window row i
        column = column + window_tap(padded, (i, 0), (sh, 1), (1, 1), (out[0], width))
    total = np.zeros((*padded.shape[:2], *out), padded.dtype)
    for j in range(kw):
        total = total + window_tap(column, (0, j), (1, sw), (1, 1), out)
    return total


def _row_sums(padded: np.ndarray, a: Attrs, out: tuple[int, ...]) -> np.ndarray:
    """``rows``: one accumulator over each window, row by row."""
    kh, kw = a["kernel_shape"]
    total = np.zeros((*padded.shape[:2], *out), padded.dtype)
    for tap in np.ndindex(kh, kw):
        total = total + window_tap(padded, tap, a["strides"], (1, 1), out)
    return total


def _window_sums(x: np.ndarray, a: Attrs) -> np.ndarray:
    """``Σ`` over each window of ``x`` (zero padded), in onnxruntime's order."""
    order = summation_order(x.shape[2:], a)
    if order == "lanes":
        return _lane_sums(x)
    padded, out = pad_hw(x, pool_pads(x.shape[2:], a), 0.0), pool_shape([x.shape], a)[2:]
    return _column_sums(padded, a, out) if order == "columns" else _row_sums(padded, a, out)


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    x = ins[0]
    k = tuple(a["kernel_shape"])
    pads = pool_pads(x.shape[2:], a)
    total = _window_sums(x, a)
    ones = np.ones((1, 1, *x.shape[2:]), dtype=x.dtype)
    if a.get("count_include_pad", 0):  # explicit pads count, ceil_mode's extra pads do not
        ones = pad_hw(ones, a["pads"], 1.0)
        pads = (0, 0, pads[2] - a["pads"][2], pads[3] - a["pads"][3])
    count = windows(pad_hw(ones, pads, 0.0), k, a["strides"], (1, 1)).sum(axis=(4, 5))
    return np.ascontiguousarray(total / count, dtype=x.dtype)


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    x, k = ins[0], tuple(a["kernel_shape"])
    t, l, b, r = pool_pads(tuple(x.shape[2:]), a)
    total = F.avg_pool2d(F.pad(x, (l, r, t, b)), k, a["strides"], 0, divisor_override=1)
    ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
    extra = (l, r, t, b)
    if a.get("count_include_pad", 0):  # explicit pads count, ceil_mode's extra pads do not
        et, el, eb, er = a["pads"]
        ones = F.pad(ones, (el, er, et, eb), value=1.0)
        extra = (0, r - er, 0, b - eb)
    count = F.avg_pool2d(F.pad(ones, extra), k, a["strides"], 0, divisor_override=1)
    return total / count


DEFS = (OpDef("AveragePool", (1, 1), ("kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad"),
              canonicalize=_canonicalize, shape=pool_shape, kernel=_kernel, torch=_torch, channels=channel_identity,
              rewrite=no_rewrite, export=export_attributes, nonnegative=sign_of_inputs, homogeneous=always,
              mixes_batch=never, replace=window_1d_as_2d),)
