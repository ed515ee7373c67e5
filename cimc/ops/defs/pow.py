"""Pow by a constant exponent: ``y = x^p`` (elementwise), canonical attribute ``exponent`` (float).

Only a constant scalar exponent is supported (``x²`` of the decomposed LayerNorm, ``x³`` of
the tanh Gelu, ``x^0.5``); a computed or per-element exponent is refused with a hint. Computed
in float64 and rounded once (``double``; onnxruntime's float64 Pow in ``model.cim.onnx``): for
``p = 2`` that is the exact square rounded once, as float32 ``x · x``. Exported with the
exponent as a float32 scalar operand.

Channel-preserving; ≥ 0 for an even integer exponent or a non-negative input; homogeneous only
for ``p = 1`` (``(c·x)^p = c^p · x^p``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from cimc.errors import UnsupportedError
from cimc.ops.base import Attrs
from cimc.ops.unary import unary_op

if TYPE_CHECKING:
    from collections.abc import Set as AbstractSet

    import onnx
    import torch

    from cimc.frontend.canonical import OpContext
    from cimc.frontend.onnx_export import ExportBuilder
    from cimc.ir.node import Node

_HINT = "only x^c with a constant scalar c is supported; compute a runtime power as Exp(c·Log(x)) before export"


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    if node.input[1] not in ctx.initializers:
        raise UnsupportedError(f"node '{node.name}' (Pow): exponent '{node.input[1]}' is computed at run time",
                               hint=_HINT)
    value = ctx.const(node, 1, "exponent")
    assert value is not None
    if value.size != 1:
        raise UnsupportedError(f"node '{node.name}' (Pow): exponent of shape {value.shape}, not a scalar",
                               hint=_HINT)
    return [node.input[0]], {"exponent": float(value.reshape(-1)[0])}


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return np.power(ins[0].astype(np.float64), a["exponent"]).astype(ins[0].dtype)


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return ins[0].pow(a["exponent"])


def _export(b: ExportBuilder, node: Node) -> tuple[list[str], Attrs]:
    return [b.constant(node, "exponent", np.array(node.attrs["exponent"], np.float32))], {}


def _nonnegative(node: Node, known: AbstractSet[str]) -> bool:
    p = node.attrs["exponent"]
    return (math.isfinite(p) and p == int(p) and int(p) % 2 == 0) or node.inputs[0] in known


DEFS = (unary_op("Pow", _kernel, _torch, nonnegative=_nonnegative,
                 homogeneous=lambda node: node.attrs["exponent"] == 1.0, attrs=("exponent",),
                 canonicalize=_canonicalize, export=_export, double=True),)
