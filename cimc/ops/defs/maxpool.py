"""MaxPool (2-D): ``y[n,c,h,w] = max_{i,j} x_pad[n, c, h·s_h + i·d_h, w·s_w + j·d_w]``, padding −∞.

Canonical attrs: ``kernel_shape``, ``strides``, ``pads``, ``dilations``, ``ceil_mode`` (its
extra end padding is ``cimc.ops.windows.ceil_extra``); ``storage_order=1`` is unsupported.
A 1-D MaxPool is imported as the 2-D one over ``(N, C, 1, L)`` (``replace``, as Conv1d).
"""

from __future__ import annotations

import functools
import math
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
from cimc.ops.windows import pad_hw, pool_pads, pool_shape, window_tap

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    attrs = window_attrs(node, a, rank4(node, ctx), ints(a["kernel_shape"]))
    if int(a.get("storage_order", 0)) != 0:
        raise UnsupportedError(f"node '{node.name}' (MaxPool): storage_order=1 is not supported")
    attrs["ceil_mode"] = int(a.get("ceil_mode", 0))
    return [node.input[0]], attrs


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    """``max`` over the ``kh·kw`` taps of each window, reduced tap by tap (−∞ padding)."""
    x = ins[0]
    xp = pad_hw(x, pool_pads(x.shape[2:], a), -np.inf)
    d, out = tuple(a.get("dilations", (1, 1))), pool_shape([x.shape], a)[2:]
    taps = (window_tap(xp, tap, a["strides"], d, out) for tap in np.ndindex(*a["kernel_shape"]))
    return np.ascontiguousarray(functools.reduce(np.maximum, taps), dtype=x.dtype)


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    import torch.nn.functional as F

    x = ins[0]
    t, l, b, r = pool_pads(tuple(x.shape[2:]), a)
    xp = F.pad(x, (l, r, t, b), value=-math.inf) if any((t, l, b, r)) else x
    return F.max_pool2d(xp, tuple(a["kernel_shape"]), a["strides"], 0, tuple(a.get("dilations", (1, 1))))


DEFS = (OpDef("MaxPool", (1, 1), ("kernel_shape", "strides", "pads", "dilations", "ceil_mode"),
              canonicalize=_canonicalize, shape=pool_shape, kernel=_kernel, torch=_torch, channels=channel_identity,
              rewrite=no_rewrite, export=export_attributes, nonnegative=sign_of_inputs, homogeneous=always,
              mixes_batch=never, replace=window_1d_as_2d),)
