"""HardSigmoid: ``y = clip(alpha · x + beta, 0, 1)``.

Canonical attrs ``alpha`` (ONNX default 0.2) and ``beta`` (default 0.5); torch's
``nn.Hardsigmoid`` exports ``alpha = 1/6``. Elementwise: channel-preserving for morph,
nothing to rewrite, exported with both attributes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.ops.base import Attrs
from cimc.ops.unary import unary_op

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    return [node.input[0]], {"alpha": float(a.get("alpha", 0.2)), "beta": float(a.get("beta", 0.5))}


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    x = ins[0]
    alpha, beta = x.dtype.type(a["alpha"]), x.dtype.type(a["beta"])
    return np.clip(x * alpha + beta, 0, 1).astype(x.dtype)


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return (ins[0] * float(a["alpha"]) + float(a["beta"])).clamp(0.0, 1.0)


DEFS = (unary_op("HardSigmoid", _kernel, _torch, attrs=("alpha", "beta"), canonicalize=_canonicalize),)
