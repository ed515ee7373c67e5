"""Squeeze and Unsqueeze: ``y = x`` with size-1 axes removed or inserted (canonical ``axes``:
sorted, non-negative; Squeeze's counted in the input, Unsqueeze's in the output).

``axes`` is a constant input (opset 13+) or an attribute (older models); a Squeeze without axes
removes every size-1 axis (canonical: those axes listed); a computed ``axes`` is unsupported.
Exported as opset-13 operands.
Morph follows the channels when axes 0 and 1 are left alone (a ``(N, C, 1, 1) → (N, C)``
Squeeze keeps them); otherwise they move and are fixed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.errors import InvalidModelError
from cimc.ops.base import (
    Attrs,
    Kernel,
    OpDef,
    Shape,
    ShapeRule,
    TorchForward,
    always,
    attrs_except,
    no_rewrite,
    sign_of_inputs,
)
from cimc.ops.canon import axis, ints

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext
    from cimc.frontend.onnx_export import ExportBuilder
    from cimc.ir.node import Node
    from cimc.morph.channel_rules import ChannelBuilder


def _given_axes(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[int, ...] | None:
    if len(node.input) > 1 and node.input[1]:
        return ints(ctx.const(node, 1, "axes"))
    return ints(a["axes"]) if "axes" in a else None


def _unique(node: onnx.NodeProto, axes: list[int]) -> tuple[int, ...]:
    if len(set(axes)) != len(axes):
        raise InvalidModelError(f"node '{node.name}' ({node.op_type}) repeats an axis: {axes}")
    return tuple(sorted(axes))


def _squeeze_canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    shape = ctx.shape(node.input[0])
    given = _given_axes(node, ctx, a)
    if not given:  # no axes (or an empty list): every size-1 axis
        return [node.input[0]], {"axes": tuple(i for i, d in enumerate(shape) if d == 1)}
    axes = _unique(node, [axis(node, v, len(shape)) for v in given])
    if any(shape[i] != 1 for i in axes):
        raise InvalidModelError(f"node '{node.name}' (Squeeze): axes {axes} of shape {shape} are not all 1")
    return [node.input[0]], {"axes": axes}


def _unsqueeze_canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    rank = len(ctx.shape(node.input[0]))
    given = _given_axes(node, ctx, a)
    if given is None:
        raise InvalidModelError(f"node '{node.name}' (Unsqueeze) has no axes")
    return [node.input[0]], {"axes": _unique(node, [axis(node, v, rank + len(given)) for v in given])}


def _squeeze_shape(shapes: list[Shape], a: Attrs) -> Shape:
    return tuple(d for i, d in enumerate(shapes[0]) if i not in set(a["axes"]))


def _unsqueeze_shape(shapes: list[Shape], a: Attrs) -> Shape:
    rest = iter(shapes[0])
    return tuple(1 if i in set(a["axes"]) else next(rest) for i in range(len(shapes[0]) + len(a["axes"])))


def _kernel(rule: ShapeRule) -> Kernel:
    def kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
        return ins[0].reshape(rule([ins[0].shape], a))
    return kernel


def _torch(rule: ShapeRule) -> TorchForward:
    def forward(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
        return ins[0].reshape(rule([tuple(ins[0].shape)], a))
    return forward


def _squeeze_channels(b: ChannelBuilder, node: Node) -> None:
    """Identity unless axis 0 or 1 is removed."""
    (b.opaque if {0, 1} & set(node.attrs["axes"]) else b.identity)(node)


def _unsqueeze_channels(b: ChannelBuilder, node: Node) -> None:
    """Identity when every new axis comes after the channels."""
    (b.opaque if {0, 1} & set(node.attrs["axes"]) else b.identity)(node)


def _export(b: ExportBuilder, node: Node) -> tuple[list[str], Attrs]:
    """Operand ``axes`` (int64); none for a Squeeze of no axis (its input has no size-1 axis)."""
    if not node.attrs["axes"]:
        return [], attrs_except(node, "axes")
    return [b.constant(node, "axes", np.array(node.attrs["axes"], np.int64).reshape(-1))], attrs_except(node, "axes")


DEFS = (
    OpDef("Squeeze", (1, 1), ("axes",), canonicalize=_squeeze_canonicalize, shape=_squeeze_shape,
          kernel=_kernel(_squeeze_shape), torch=_torch(_squeeze_shape), channels=_squeeze_channels,
          rewrite=no_rewrite, export=_export, nonnegative=sign_of_inputs, homogeneous=always,
          mixes_batch=lambda a: 0 in a["axes"]),
    OpDef("Unsqueeze", (1, 1), ("axes",), canonicalize=_unsqueeze_canonicalize, shape=_unsqueeze_shape,
          kernel=_kernel(_unsqueeze_shape), torch=_torch(_unsqueeze_shape), channels=_unsqueeze_channels,
          rewrite=no_rewrite, export=_export, nonnegative=sign_of_inputs, homogeneous=always,
          mixes_batch=lambda a: 0 in a["axes"]),
)
