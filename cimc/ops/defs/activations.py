"""The classic activations, elementwise on one tensor:

* Relu: ``y = max(x, 0)``;
* LeakyRelu: ``y = x`` if ``x ≥ 0`` else ``alpha · x`` (canonical attr ``alpha``, default 0.01);
* Sigmoid: ``y = 1 / (1 + e^(−x))``.
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


def _relu(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return np.maximum(ins[0], 0).astype(ins[0].dtype)


def _relu_torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return ins[0].relu()


def _leaky_canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    return [node.input[0]], {"alpha": float(a.get("alpha", 0.01))}


def _leaky(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return np.where(ins[0] >= 0, ins[0], ins[0] * np.float32(a["alpha"]))


def _leaky_torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    import torch.nn.functional as F

    return F.leaky_relu(ins[0], a["alpha"])


def _sigmoid(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-ins[0]))).astype(ins[0].dtype)


def _sigmoid_torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return ins[0].sigmoid()


DEFS = (
    unary_op("Relu", _relu, _relu_torch, nonnegative=always, homogeneous=always),
    unary_op("LeakyRelu", _leaky, _leaky_torch, nonnegative=never, homogeneous=always, attrs=("alpha",),
             canonicalize=_leaky_canonicalize),
    unary_op("Sigmoid", _sigmoid, _sigmoid_torch, nonnegative=always, homogeneous=never, double=True),
)
