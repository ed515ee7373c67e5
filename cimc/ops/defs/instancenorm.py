"""InstanceNormalization: every sample's every channel normalised over its spatial axes
``S = (2, …, rank − 1)``:

    μ = mean_S(x),  σ² = mean_S((x − μ)²),  y = (x − μ) / √(σ² + ε) · scale_c + bias_c

``scale`` and ``bias`` are constant ``(C,)`` vectors; canonical attribute ``epsilon`` (default
1e-5). Computed in float64 and rounded once (``double``; the statistics are long sums) by one
formula (``cimc.ops.formula.normalise``), which ``model.cim.onnx`` writes as float64 ReduceMean,
Sub, Mul, Add, Sqrt and Div nodes (onnxruntime has no float64 InstanceNormalization); a float
export writes the op itself.

Morph keeps the widths (opaque: the per-channel ``scale``/``bias`` are not sliced). Not
homogeneous (scale-invariant, like LayerNorm), can be negative, samples stay apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

from cimc.errors import InvalidModelError
from cimc.ops.base import Attrs, OpDef, Shape, channel_opaque, export_attributes, never, no_rewrite
from cimc.ops.formula import Backend, Formula, in_float64, normalise, output_shape, to_onnx

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext
    from cimc.frontend.onnx_export import ExportBuilder
    from cimc.ir.node import Node

T = TypeVar("T")


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    if len(ctx.shape(node.input[0])) < 3:
        raise InvalidModelError(f"node '{node.name}' (InstanceNormalization) needs an input of rank ≥ 3")
    return list(node.input[:3]), {"epsilon": float(a.get("epsilon", 1e-5))}


def _shape(shapes: list[Shape], a: Attrs) -> Shape:
    c = shapes[0][1]
    if len(shapes) != 3 or shapes[1] != (c,) or shapes[2] != (c,):
        raise InvalidModelError(f"InstanceNormalization: scale/bias {shapes[1:]} must be ({c},)")
    return shapes[0]


def _per_channel(be: Backend[T], v: T, rank: int) -> T:
    return be.op("Reshape", v, shape=(-1,) + (1,) * (rank - 2))


def _formula(rank: int, epsilon: float) -> Formula:
    def formula(be: Backend[T], x: T, scale: T, bias: T) -> T:
        y = normalise(be, x, range(2, rank), epsilon)
        return be.add(be.mul(y, _per_channel(be, scale, rank)), _per_channel(be, bias, rank))
    return formula


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return in_float64(_formula(ins[0].ndim, a["epsilon"]), ins)


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    import torch.nn.functional as F

    return F.instance_norm(ins[0], weight=ins[1], bias=ins[2], eps=a["epsilon"])


def _decompose(b: ExportBuilder, node: Node, wide: bool) -> bool:
    if wide:
        to_onnx(b, node, True, _formula(len(output_shape(b, node)), node.attrs["epsilon"]), n_inputs=3)
    return wide


DEFS = (OpDef("InstanceNormalization", (3, 3), ("epsilon",), canonicalize=_canonicalize, shape=_shape,
              kernel=_kernel, torch=_torch, channels=channel_opaque, rewrite=no_rewrite, export=export_attributes,
              nonnegative=never, homogeneous=never, mixes_batch=never, weight_inputs=(1, 2), double=True,
              decompose=_decompose),)
