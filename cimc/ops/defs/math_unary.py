"""Elementwise functions of one tensor:

* Sqrt: ``y = √x``;  Reciprocal: ``y = 1/x``;  Abs: ``y = |x|`` — one correctly rounded IEEE
  operation each, the same in float32 in every engine;
* Exp: ``y = eˣ``;  Log: ``y = ln x``;  Tanh: ``y = tanh x`` — transcendental, computed in float64
  and rounded once (``double``; onnxruntime has float64 kernels for all three).

All keep the channels (morph identity). Abs is homogeneous (``|c·x| = c·|x|`` for ``c > 0``)
and ≥ 0, Sqrt and Exp are ≥ 0, Tanh keeps the sign of its input (``1/−0 = −∞``: Reciprocal
is not counted ≥ 0); the others can be negative and
none of them but Abs is homogeneous. The kernels compute in float64 and round to the input's
dtype (for Sqrt and Reciprocal that equals the float32 operation: a float64 result rounded to
float32 is the correctly rounded float32 one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cimc.ops.base import Attrs, always, never, sign_of_inputs
from cimc.ops.unary import unary_op

if TYPE_CHECKING:
    import torch


def _np(fn: Any) -> Any:
    def kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.asarray(fn(ins[0].astype(np.float64))).astype(ins[0].dtype)
    return kernel


def _torch(method: str) -> Any:
    def forward(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
        return getattr(ins[0], method)()
    return forward


DEFS = (
    unary_op("Sqrt", _np(np.sqrt), _torch("sqrt"), nonnegative=always, homogeneous=never),
    unary_op("Reciprocal", _np(np.reciprocal), _torch("reciprocal"), nonnegative=never, homogeneous=never),
    unary_op("Abs", _np(np.abs), _torch("abs"), nonnegative=always, homogeneous=always),
    unary_op("Exp", _np(np.exp), _torch("exp"), nonnegative=always, homogeneous=never, double=True),
    unary_op("Log", _np(np.log), _torch("log"), nonnegative=never, homogeneous=never, double=True),
    unary_op("Tanh", _np(np.tanh), _torch("tanh"), nonnegative=sign_of_inputs, homogeneous=never, double=True),
)
