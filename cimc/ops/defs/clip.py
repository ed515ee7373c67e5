"""Clip: ``y = min(max(x, min), max)``.

Canonical attrs ``min``/``max`` (``∓inf`` when absent), from the constant operands of opset ≥ 11
or the attributes of older opsets; the exporter writes them back as operands.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from cimc.ops.base import Attrs, attrs_except, never
from cimc.ops.unary import unary_op

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext
    from cimc.frontend.onnx_export import ExportBuilder
    from cimc.ir.node import Node


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    lo, hi = ctx.const(node, 1, "min"), ctx.const(node, 2, "max")
    attrs = {"min": -math.inf if lo is None else float(np.asarray(lo).reshape(-1)[0]),
             "max": math.inf if hi is None else float(np.asarray(hi).reshape(-1)[0])}
    return [node.input[0]], attrs


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return np.clip(ins[0], a["min"], a["max"]).astype(ins[0].dtype, copy=False)  # a new array already


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return ins[0].clamp(a["min"], a["max"])


def _export(b: ExportBuilder, node: Node) -> tuple[list[str], Attrs]:
    """Operands ``min``/``max`` (float32 scalars; an infinite bound is left out)."""
    lo, hi = float(node.attrs["min"]), float(node.attrs["max"])
    lo_name = b.constant(node, "min", np.array(lo, np.float32)) if lo != -math.inf else ""
    return [lo_name, b.constant(node, "max", np.array(hi, np.float32)) if hi != math.inf else ""], \
        attrs_except(node, "min", "max")


DEFS = (unary_op("Clip", _kernel, _torch, nonnegative=lambda node, known: float(node.attrs["min"]) >= 0,
                 homogeneous=never, attrs=("min", "max"), canonicalize=_canonicalize, export=_export),)
