"""LRN: ``y = x / (bias + alpha/size · Σ_{c' ∈ window(c)} x[c']²)^beta``, ONNX's channel window
``[c − ⌊(size−1)/2⌋, c + ⌈(size−1)/2⌉]`` (canonical attrs ``alpha``, ``beta``, ``bias``, ``size``).

The kernel sums the squares with a float64 prefix sum ``Z`` over the channels (``Z[0] = 0``)
and takes ``Z[min(c+hi, C−1)+1] − Z[max(c−lo, 0)]`` (``lo = ⌊(size−1)/2⌋``, ``hi = size−1−lo``):
the window clipped to the channels, the same sums as zero padding, in memory independent of
``size``. The rest is float64 too (``np.power``), rounded once to float32. onnxruntime's LRN
takes odd sizes only and computes in float32: every LRN is written to ``model.cim.onnx`` as
these very steps (``cimc.lowering.lrn``), bit-exact with this kernel.

It mixes neighbouring channels, so morph cannot follow them (channels fixed). ``size`` is
``1 … MAX_SIZE`` (onnxruntime, which runs ``model.cim.onnx``, allocates a buffer in proportion
to it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.errors import InvalidModelError, UnsupportedError
from cimc.ops.base import (
    Attrs,
    OpDef,
    channel_opaque,
    export_attributes,
    never,
    no_rewrite,
    same_shape,
)

MAX_SIZE = 4096

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    size = int(a.get("size", 0))
    if size < 1:
        raise InvalidModelError(f"node '{node.name}' (LRN) needs a positive size, not {a.get('size')}")
    if size > MAX_SIZE:  # onnxruntime (model.cim.onnx, cimc validate) allocates in proportion to size
        raise UnsupportedError(f"node '{node.name}' (LRN): size {size} is over the supported {MAX_SIZE}")
    return [node.input[0]], {"alpha": float(a.get("alpha", 1e-4)), "beta": float(a.get("beta", 0.75)),
                             "bias": float(a.get("bias", 1.0)), "size": size}



def window_indices(channels: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(upper, lower)`` indices into the prefix sum ``Z`` (module doc) of every channel's window."""
    lo = min((size - 1) // 2, channels)
    hi = min(size - 1 - (size - 1) // 2, channels)
    c = np.arange(channels, dtype=np.int64)
    return np.minimum(c + hi, channels - 1) + 1, np.maximum(c - lo, 0)


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    x, size = ins[0], a["size"]
    csum = np.cumsum(x * x, axis=1, dtype=np.float64)
    csum = np.concatenate([np.zeros_like(csum[:, :1]), csum], axis=1)
    upper, lower = window_indices(x.shape[1], size)
    win = np.take(csum, upper, axis=1) - np.take(csum, lower, axis=1)
    return (x / np.power(a["bias"] + a["alpha"] / size * win, a["beta"])).astype(x.dtype)


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    import torch

    x, size = ins[0], a["size"]
    csum = torch.cumsum((x * x).double(), dim=1)
    csum = torch.cat([csum.new_zeros((x.shape[0], 1, *x.shape[2:])), csum], dim=1)
    upper, lower = (torch.from_numpy(i).to(x.device) for i in window_indices(x.shape[1], size))
    win = (csum.index_select(1, upper) - csum.index_select(1, lower)).to(x.dtype)
    return x / (a["bias"] + a["alpha"] / size * win) ** a["beta"]


DEFS = (OpDef("LRN", (1, 1), ("alpha", "beta", "bias", "size"), canonicalize=_canonicalize, shape=same_shape,
              kernel=_kernel, torch=_torch, channels=channel_opaque, rewrite=no_rewrite, export=export_attributes,
              nonnegative=never, homogeneous=never, mixes_batch=never),)
