"""GroupNormalization (ONNX opset 18 and 21): the ``C`` channels of each sample split into
``G = num_groups`` consecutive groups, each normalised over its channels and spatial axes:

    μ_g, σ²_g = mean and variance of x[n, g·C/G : (g+1)·C/G, …]
    y[n, c] = (x[n, c] − μ_g) / √(σ²_g + ε) · scale_c + bias_c        (g the group of c)

``scale`` and ``bias`` are constant ``(C,)`` vectors (opset 21; opset 18's per-group form is
deprecated, and the ONNX checker refuses it). Canonical attributes ``num_groups`` and
``epsilon`` (default 1e-5); ``stash_type`` is dropped (float64 here).

Computed in float64 and rounded once (``double``) by one formula: Reshape to ``(N, G, −1)``,
``cimc.ops.formula.normalise`` over axis 2, Reshape back, ``· scale + bias``; the exporter and
``model.cim.onnx`` write those ONNX nodes (opset 17 has no GroupNormalization), in float64.

Morph keeps the widths (opaque: the groups fix the channel count). Not homogeneous
(scale-invariant), can be negative, samples stay apart.
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
    shape = ctx.shape(node.input[0])
    groups = int(a.get("num_groups", 0))
    if len(shape) < 3 or groups < 1 or shape[1] % groups:
        raise InvalidModelError(f"node '{node.name}' (GroupNormalization): num_groups {groups} does not divide "
                                f"the {shape[1] if len(shape) > 1 else '?'} channels of a rank-{len(shape)} input")
    for index, what in ((1, "scale"), (2, "bias")):
        value = ctx.const(node, index, what)
        if value is None or value.shape != (shape[1],):
            raise InvalidModelError(f"node '{node.name}' (GroupNormalization): {what} must be ({shape[1]},)")
    inputs = list(node.input[:3])
    return inputs, {"num_groups": groups, "epsilon": float(a.get("epsilon", 1e-5))}


def _shape(shapes: list[Shape], a: Attrs) -> Shape:
    c = shapes[0][1]
    if len(shapes) != 3 or shapes[1] != (c,) or shapes[2] != (c,) or c % a["num_groups"]:
        raise InvalidModelError(f"GroupNormalization: {a['num_groups']} groups, scale/bias {shapes[1:]} "
                                f"for {c} channels")
    return shapes[0]


def _formula(shape: tuple[int, ...], groups: int, epsilon: float) -> Formula:
    rank = len(shape)

    def formula(be: Backend[T], x: T, scale: T, bias: T) -> T:
        grouped = be.op("Reshape", x, shape=(0, groups, -1))
        y = be.op("Reshape", normalise(be, grouped, (2,), epsilon), shape=(0, *shape[1:]))
        per_channel = (-1,) + (1,) * (rank - 2)
        return be.add(be.mul(y, be.op("Reshape", scale, shape=per_channel)), be.op("Reshape", bias, shape=per_channel))
    return formula


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return in_float64(_formula(ins[0].shape, a["num_groups"], a["epsilon"]), ins)


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    import torch.nn.functional as F

    return F.group_norm(ins[0], a["num_groups"], weight=ins[1], bias=ins[2], eps=a["epsilon"])


def _decompose(b: ExportBuilder, node: Node, wide: bool) -> bool:
    to_onnx(b, node, wide, _formula(output_shape(b, node), node.attrs["num_groups"], node.attrs["epsilon"]),
            n_inputs=3)
    return True


DEFS = (OpDef("GroupNormalization", (3, 3), ("num_groups", "epsilon"), canonicalize=_canonicalize, shape=_shape,
              kernel=_kernel, torch=_torch, channels=channel_opaque, rewrite=no_rewrite, export=export_attributes,
              nonnegative=never, homogeneous=never, mixes_batch=never, weight_inputs=(1, 2), double=True,
              decompose=_decompose),)
