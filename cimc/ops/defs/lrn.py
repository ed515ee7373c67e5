"""LRN: ``y = x / (bias + alpha/size · Σ_{c' ∈ window(c)} x[c']²)^beta``, ONNX's channel window
``[c − ⌊(size−1)/2⌋, c + ⌈(size−1)/2⌉]`` (canonical attrs ``alpha``, ``beta``, ``bias``, ``size``).

It mixes neighbouring channels, so morph cannot follow them (channels fixed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.ops.base import (
    Attrs,
    OpDef,
    channel_opaque,
    export_attributes,
    never,
    no_rewrite,
    same_shape,
)

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    return [node.input[0]], {"alpha": float(a.get("alpha", 1e-4)), "beta": float(a.get("beta", 0.75)),
                             "bias": float(a.get("bias", 1.0)), "size": int(a["size"])}


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    x, size = ins[0], a["size"]
    lo = (size - 1) // 2
    hi = size - 1 - lo
    sq = np.pad(x * x, ((0, 0), (lo, hi)) + ((0, 0),) * (x.ndim - 2))
    csum = np.cumsum(sq, axis=1, dtype=np.float64)
    csum = np.concatenate([np.zeros_like(csum[:, :1]), csum], axis=1)
    win = csum[:, size:] - csum[:, :-size]
    return (x / (a["bias"] + a["alpha"] / size * win) ** a["beta"]).astype(x.dtype)


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    import torch

    x, size = ins[0], a["size"]
    lo = (size - 1) // 2
    sq = (x * x).double()
    zeros = [sq.new_zeros((x.shape[0], n, *x.shape[2:])) for n in (lo + 1, size - 1 - lo)]
    csum = torch.cumsum(torch.cat([zeros[0], sq, zeros[1]], dim=1), dim=1)
    win = (csum[:, size:] - csum[:, :-size]).to(x.dtype)
    return x / (a["bias"] + a["alpha"] / size * win) ** a["beta"]


DEFS = (OpDef("LRN", (1, 1), ("alpha", "beta", "bias", "size"), canonicalize=_canonicalize, shape=same_shape,
              kernel=_kernel, torch=_torch, channels=channel_opaque, rewrite=no_rewrite, export=export_attributes,
              nonnegative=never, homogeneous=never, mixes_batch=never),)
