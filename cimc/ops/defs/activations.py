"""The classic activations, elementwise on one tensor:

* Relu: ``y = max(x, 0)``;
* LeakyRelu: ``y = x`` if ``x ≥ 0`` else ``alpha · x`` (canonical attr ``alpha``, default 0.01);
* Sigmoid: ``y = 1 / (1 + e^(−x))``.

Sigmoid is computed in float64 and rounded once (``double``). ``model.cim.onnx`` writes it as
that very formula in float64 ONNX nodes (``Neg``, ``Exp``, ``Add``, ``Div``; ``decompose``), not
as onnxruntime's float64 Sigmoid, which computes ``1 − 1/(1 + e^x)`` for ``x < 0``: that
cancellation loses the low bits of a small result, so after rounding to float32 the two differed
on 0.06 % of inputs in (−15, −10], 6 % in (−20, −15], nearly all below −20 (0.6 % of inputs of
standard normal × 8, ``cimc validate``'s second probe batch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

from cimc.ops.base import Attrs, always, never
from cimc.ops.formula import Backend, NumpyBackend, to_onnx
from cimc.ops.unary import unary_op

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext
    from cimc.frontend.onnx_export import ExportBuilder
    from cimc.ir.node import Node

T = TypeVar("T")


def _relu(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return np.maximum(ins[0], 0).astype(ins[0].dtype, copy=False)  # a new array already: no second copy


def _relu_torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return ins[0].relu()


def _leaky_canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    return [node.input[0]], {"alpha": float(a.get("alpha", 0.01))}


def _leaky(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return np.where(ins[0] >= 0, ins[0], ins[0] * np.float32(a["alpha"]))


def _leaky_torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    import torch.nn.functional as F

    return F.leaky_relu(ins[0], a["alpha"])


def _sigmoid_formula(be: Backend[T], x: T) -> T:
    """``1 / (1 + e^(−x))``: no overflow to NaN (``e^(−x) = inf`` gives 0)."""
    one = be.const(1.0)
    return be.div(one, be.add(one, be.op("Exp", be.op("Neg", x))))


def _sigmoid(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    x = np.asarray(ins[0])
    return np.asarray(_sigmoid_formula(NumpyBackend(x.dtype), x)).astype(x.dtype)


def _sigmoid_decompose(b: ExportBuilder, node: Node, wide: bool) -> bool:
    """In ``model.cim.onnx`` (``wide``: float64 tensors) the formula's nodes; a float export keeps Sigmoid."""
    if wide:
        to_onnx(b, node, True, _sigmoid_formula)
    return wide


def _sigmoid_torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return ins[0].sigmoid()


DEFS = (
    unary_op("Relu", _relu, _relu_torch, nonnegative=always, homogeneous=always),
    unary_op("LeakyRelu", _leaky, _leaky_torch, nonnegative=never, homogeneous=always, attrs=("alpha",),
             canonicalize=_leaky_canonicalize),
    unary_op("Sigmoid", _sigmoid, _sigmoid_torch, nonnegative=always, homogeneous=never, double=True,
             decompose=_sigmoid_decompose),
)
