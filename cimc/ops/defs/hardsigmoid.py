"""HardSigmoid: ``y = clip(alpha · x + beta, 0, 1)``.

Canonical attrs ``alpha`` (ONNX default 0.2) and ``beta`` (default 0.5); torch's
``nn.Hardsigmoid`` exports ``alpha = 1/6``. Elementwise: channel-preserving for morph,
nothing to rewrite, exported with both attributes; its output is in [0, 1] (≥ 0: the CIM layer
after it gets unsigned DAC codes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.ops.base import Attrs, always, never
from cimc.ops.unary import unary_op

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext


_DEFAULTS = {"alpha": float(np.float32(0.2)), "beta": 0.5}  # as float32 attributes: export round-trips them


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    return [node.input[0]], {k: float(a.get(k, v)) for k, v in _DEFAULTS.items()}


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    x = ins[0]
    alpha, beta = x.dtype.type(a["alpha"]), x.dtype.type(a["beta"])
    return np.clip(x * alpha + beta, 0, 1).astype(x.dtype)


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return (ins[0] * float(a["alpha"]) + float(a["beta"])).clamp(0.0, 1.0)


DEFS = (unary_op("HardSigmoid", _kernel, _torch, nonnegative=always, homogeneous=never, attrs=("alpha", "beta"),
                 canonicalize=_canonicalize),)
