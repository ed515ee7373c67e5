"""LRN: ``y = x / (bias + alpha/size · Σ_{c' ∈ window(c)} x[c']²)^beta``, ONNX's channel window
``[c − ⌊(size−1)/2⌋, c + ⌈(size−1)/2⌉]`` (canonical attrs ``alpha``, ``beta``, ``bias``, ``size``).

It mixes neighbouring channels, so morph cannot follow them (channels fixed). ``size`` is
``1 … MAX_SIZE`` (onnxruntime, which runs ``model.cim.onnx``, allocates a buffer in proportion
to it; the kernels here sum over the clipped window and cost nothing extra).
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
    size = int(a["size"])
    if size < 1:
        raise InvalidModelError(f"node '{node.name}' (LRN): size is {size}, must be ≥ 1")
    if size > MAX_SIZE:  # onnxruntime (model.cim.onnx, cimc validate) allocates in proportion to size
        raise UnsupportedError(f"node '{node.name}' (LRN): size {size} is over the supported {MAX_SIZE}")
    return [node.input[0]], {"alpha": float(a.get("alpha", 1e-4)), "beta": float(a.get("beta", 0.75)),
                             "bias": float(a.get("bias", 1.0)), "size": size}


def _bounds(channels: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per channel ``c`` the window ``[c − lo, c + hi]`` clipped to ``[0, C)``, as indices
    ``(start, stop)`` into the channel axis' cumulative sum (no padding: a huge ``size``
    costs nothing)."""
    lo = (size - 1) // 2
    hi = size - 1 - lo
    c = np.arange(channels)
    return np.maximum(c - lo, 0), np.minimum(c + hi + 1, channels)


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    x, size = ins[0], a["size"]
    csum = np.cumsum(x * x, axis=1, dtype=np.float64)
    csum = np.concatenate([np.zeros_like(csum[:, :1]), csum], axis=1)
    start, stop = _bounds(x.shape[1], size)
    win = csum[:, stop] - csum[:, start]
    return (x / (a["bias"] + a["alpha"] / size * win) ** a["beta"]).astype(x.dtype)


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    import torch

    x, size = ins[0], a["size"]
    csum = torch.cumsum((x * x).double(), dim=1)
    csum = torch.cat([csum.new_zeros((x.shape[0], 1, *x.shape[2:])), csum], dim=1)
    start, stop = (torch.as_tensor(v, device=x.device) for v in _bounds(x.shape[1], size))
    win = (csum[:, stop] - csum[:, start]).to(x.dtype)
    return x / (a["bias"] + a["alpha"] / size * win) ** a["beta"]


DEFS = (OpDef("LRN", (1, 1), ("alpha", "beta", "bias", "size"), canonicalize=_canonicalize, shape=same_shape,
              kernel=_kernel, torch=_torch, channels=channel_opaque, rewrite=no_rewrite, export=export_attributes,
              nonnegative=never, homogeneous=never, mixes_batch=never),)
