"""The exponential activations, elementwise (ONNX default attributes in brackets):

* Elu: ``y = x`` for ``x ≥ 0``, ``α · (eˣ − 1)`` below  (``alpha`` 1);
* Selu: ``y = γ · x`` for ``x > 0``, ``γ · (α · eˣ − α)`` else  (``alpha`` 1.6732632, ``gamma`` 1.0507010);
* Celu: ``y = max(0, x) + min(0, α · (e^(x/α) − 1))``  (``alpha`` 1);
* Softplus: ``y = ln(1 + eˣ)``, computed as ``max(x, 0) + ln(1 + e^(−|x|))`` (no overflow).

``eˣ − 1`` and ``ln(1 + t)`` are ``cimc.ops.formula.expm1`` and ``log1p`` (short series near 0,
so no cancellation magnifies a last-bit difference of ``exp`` between engines).

Computed in float64 and rounded once (``double``) by one formula (``cimc.ops.formula``), which
``model.cim.onnx`` writes as float64 ONNX nodes (onnxruntime has none of the four in float64);
a float export writes the ops themselves. Channel-preserving; Softplus is > 0, the others can be
negative; none is homogeneous (the exponential branch is not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from cimc.errors import InvalidModelError
from cimc.ops.base import Attrs, Canonicalize, OpDef, always, never
from cimc.ops.formula import Backend, expm1, in_float64, log1p, to_onnx
from cimc.ops.unary import unary_op

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext
    from cimc.frontend.onnx_export import ExportBuilder
    from cimc.ir.node import Node

T = TypeVar("T")
SELU_ALPHA, SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875


def _elu(be: Backend[T], x: T, a: Attrs) -> T:
    alpha = be.const(a["alpha"])
    return be.where_less(x, be.const(0.0), be.mul(alpha, expm1(be, x)), x)


def _selu(be: Backend[T], x: T, a: Attrs) -> T:
    neg = be.mul(be.const(a["alpha"]), expm1(be, x))
    return be.mul(be.const(a["gamma"]), be.where_less(be.const(0.0), x, x, neg))


def _celu(be: Backend[T], x: T, a: Attrs) -> T:
    alpha = be.const(a["alpha"])
    zero = be.const(0.0)
    neg = be.mul(alpha, expm1(be, be.div(x, alpha)))
    return be.add(be.op("Max", x, zero), be.op("Min", neg, zero))


def _softplus(be: Backend[T], x: T, a: Attrs) -> T:
    tail = log1p(be, be.op("Exp", be.op("Neg", be.op("Abs", x))))
    return be.add(be.op("Max", x, be.const(0.0)), tail)


def _attrs(defaults: dict[str, float]) -> Canonicalize:
    def rule(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
        values = {k: float(a.get(k, v)) for k, v in defaults.items()}
        if node.op_type == "Celu" and values["alpha"] == 0:
            raise InvalidModelError(f"node '{node.name}' (Celu) has alpha = 0")
        return [node.input[0]], values
    return rule


def _op(name: str, formula: Any, torch_forward: Any, defaults: dict[str, float], *, nonnegative: Any = never) -> OpDef:
    def kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
        return in_float64(lambda be, x: formula(be, x, a), ins)

    def decompose(b: ExportBuilder, node: Node, wide: bool) -> bool:
        if wide:
            to_onnx(b, node, True, lambda be, x: formula(be, x, node.attrs))
        return wide

    return unary_op(name, kernel, torch_forward, nonnegative=nonnegative, homogeneous=never, attrs=tuple(defaults),
                    canonicalize=_attrs(defaults), double=True, decompose=decompose)


def _elu_torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    import torch.nn.functional as F

    return F.elu(ins[0], a["alpha"])


def _selu_torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    import torch

    x = ins[0]
    return a["gamma"] * torch.where(x > 0, x, a["alpha"] * x.exp() - a["alpha"])


def _celu_torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    import torch.nn.functional as F

    return F.celu(ins[0], a["alpha"])


def _softplus_torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    import torch.nn.functional as F

    return F.softplus(ins[0])


DEFS = (
    _op("Elu", _elu, _elu_torch, {"alpha": 1.0}),
    _op("Selu", _selu, _selu_torch, {"alpha": SELU_ALPHA, "gamma": SELU_GAMMA}),
    _op("Celu", _celu, _celu_torch, {"alpha": 1.0}),
    _op("Softplus", _softplus, _softplus_torch, {}, nonnegative=always),
)
