"""AveragePool (2-D): ``y[n,c,h,w] = Σ_{i,j} x_pad[n, c, h·s_h + i, w·s_w + j] / count``.

``count`` is the number of window cells inside the input, or inside input plus explicit pads
with ``count_include_pad`` (``ceil_mode``'s extra end padding never counts). Canonical attrs:
``kernel_shape``, ``strides``, ``pads``, ``ceil_mode``, ``count_include_pad``; no dilations.
A 1-D AveragePool is imported as the 2-D one over ``(N, C, 1, L)`` (``replace``, as Conv1d).
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
from cimc.ops.windows import pad_hw, pool_pads, pool_shape, windows

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


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    x = ins[0]
    k = tuple(a["kernel_shape"])
    pads = pool_pads(x.shape[2:], a)
    total = windows(pad_hw(x, pads, 0.0), k, a["strides"], (1, 1)).sum(axis=(4, 5))
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
