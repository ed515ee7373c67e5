"""HardSwish (ONNX opset 14, MobileNetV3): ``y = x · clip(x/6 + 1/2, 0, 1)``.

No attributes (ONNX fixes ``alpha = 1/6``, ``beta = 1/2``). Elementwise: channel-preserving for
morph, nothing to rewrite, exported as is; it can be negative (down to −3/8) and is not
homogeneous. Computed in the input's dtype with float32 constants
in numpy and torch alike, so the two forwards agree to rounding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.ops.base import Attrs, never
from cimc.ops.unary import unary_op

if TYPE_CHECKING:
    import torch

_SIXTH = float(np.float32(1 / 6))


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    x = ins[0]
    gate = np.clip(x * x.dtype.type(_SIXTH) + x.dtype.type(0.5), 0, 1)
    return (x * gate).astype(x.dtype)


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    x = ins[0]
    return x * (x * _SIXTH + 0.5).clamp(0.0, 1.0)


DEFS = (unary_op("HardSwish", _kernel, _torch, nonnegative=never, homogeneous=never),)
