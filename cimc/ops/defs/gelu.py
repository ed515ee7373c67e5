"""Gelu (ONNX opset 20): ``y = x · Φ(x)``, elementwise; canonical attribute ``approximate``:

* ``"none"`` (default): ``y = ½ · x · (1 + erf(x/√2))``;
* ``"tanh"``: ``y = ½ · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))``.

Computed in float64 and rounded once (``double``). ``1 + erf(z)`` is ``erfc(|z|)`` for ``z < 0``
(``cimc.ops.defs.erf``) and ``1 + tanh(u)`` is ``2 / (1 + e^(−2u))``, so the negative tail keeps
its relative precision (and a last-bit difference of ``exp`` between engines stays in the last bit). Written back as the
same float64 formula in ONNX nodes (``decompose``; opset 17 has no Gelu, onnxruntime no float64
Gelu or Erf), between Casts in a float export. The forms the legacy exporters write
(``Div``/``Erf``/``Add``/``Mul``/``Mul``, or ``Pow``/``Mul``/``Tanh``) import op by op and
compute the same to rounding.

Channel-preserving; can be negative (down to ≈ −0.17); not homogeneous (``Φ(c·x) ≠ Φ(x)``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from cimc.errors import InvalidModelError
from cimc.ops.base import Attrs, never
from cimc.ops.defs.erf import erf_parts
from cimc.ops.formula import Backend, in_float64, to_onnx
from cimc.ops.unary import unary_op

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext
    from cimc.frontend.onnx_export import ExportBuilder
    from cimc.ir.node import Node

T = TypeVar("T")
APPROXIMATIONS = ("none", "tanh")


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    approximate = a.get("approximate", "none")
    if approximate not in APPROXIMATIONS:
        raise InvalidModelError(f"node '{node.name}' (Gelu) has approximate='{approximate}' (none or tanh)")
    return [node.input[0]], {"approximate": approximate}


def _exact(be: Backend[T], x: T) -> T:
    z = be.mul(x, be.const(1 / math.sqrt(2)))
    _, erf_t, erfc_t = erf_parts(be, z)
    one_plus = be.where_less(z, be.const(0.0), erfc_t, be.add(be.const(1.0), erf_t))
    return be.mul(be.mul(x, be.const(0.5)), one_plus)


def _tanh(be: Backend[T], x: T) -> T:
    cube = be.mul(be.mul(x, x), x)
    inner = be.mul(be.add(x, be.mul(cube, be.const(0.044715))), be.const(math.sqrt(2 / math.pi)))
    one_plus_tanh = be.div(be.const(2.0), be.add(be.const(1.0), be.op("Exp", be.mul(inner, be.const(-2.0)))))
    return be.mul(be.mul(x, be.const(0.5)), one_plus_tanh)


def _formula(a: Attrs) -> Any:
    return _tanh if a["approximate"] == "tanh" else _exact


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return in_float64(_formula(a), ins)


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    import torch.nn.functional as F

    return F.gelu(ins[0], approximate=a["approximate"])


def _decompose(b: ExportBuilder, node: Node, wide: bool) -> bool:
    to_onnx(b, node, wide, _formula(node.attrs))
    return True


DEFS = (unary_op("Gelu", _kernel, _torch, nonnegative=never, homogeneous=never, attrs=("approximate",),
                 canonicalize=_canonicalize, double=True, decompose=_decompose),)
