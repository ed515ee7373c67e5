"""Slice: ``y = x[starts[k] : ends[k] : steps[k]]`` on each ``axes[k]`` (canonical: indices clamped
as ONNX does, non-negative except ``end = −1`` with a negative step, meaning "through index 0").

Morph follows the channels unless axis 1 is sliced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.errors import InvalidModelError
from cimc.ops.base import Attrs, OpDef, Shape, always, attrs_except, no_rewrite, sign_of_inputs
from cimc.ops.canon import axis, ints

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext
    from cimc.frontend.onnx_export import ExportBuilder
    from cimc.ir.node import Node
    from cimc.morph.channel_rules import ChannelBuilder

_INT64_MIN = -(2**63)


def _clamp(value: int, dim: int, step: int, *, end: bool) -> int:
    """ONNX Slice index clamping (negative indices count from the end)."""
    value = value + dim if value < 0 else value
    if step > 0:
        return min(max(value, 0), dim)
    return min(max(value, -1 if end else 0), dim - 1)


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    shape = ctx.shape(node.input[0])
    starts, ends = ints(ctx.const(node, 1, "starts")), ints(ctx.const(node, 2, "ends"))
    axes_v, steps_v = ctx.const(node, 3, "axes"), ctx.const(node, 4, "steps")
    axes = [axis(node, ax, len(shape)) for ax in ints(axes_v)] if axes_v is not None else list(range(len(starts)))
    steps = ints(steps_v) if steps_v is not None else (1,) * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps) or 0 in steps or len(set(axes)) != len(axes):
        raise InvalidModelError(f"node '{node.name}' (Slice): inconsistent starts/ends/axes/steps")
    dims = [shape[ax] for ax in axes]
    return [node.input[0]], {
        "starts": tuple(_clamp(s, d, st, end=False) for s, d, st in zip(starts, dims, steps, strict=True)),
        "ends": tuple(_clamp(e, d, st, end=True) for e, d, st in zip(ends, dims, steps, strict=True)),
        "axes": tuple(axes), "steps": tuple(steps)}


def _shape(shapes: list[Shape], a: Attrs) -> Shape:
    """Axis ``axes[k]`` keeps ``len(range(starts[k], ends[k], steps[k]))`` entries."""
    out = list(shapes[0])
    for s, e, ax, st in zip(a["starts"], a["ends"], a["axes"], a["steps"], strict=True):
        out[ax] = len(range(s, e, st))
    return tuple(out)


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    index = [slice(None)] * ins[0].ndim
    for s, e, ax, st in zip(a["starts"], a["ends"], a["axes"], a["steps"], strict=False):
        # a Python slice would read the canonical end -1 (negative step) as the last element
        index[ax] = slice(s, None if e < 0 else e, st)
    return ins[0][tuple(index)]


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    import torch

    x = ins[0]
    for s, e, ax, st in zip(a["starts"], a["ends"], a["axes"], a["steps"], strict=False):
        x = x.index_select(ax, torch.arange(s, e, st, device=x.device))
    return x


def _channels(b: ChannelBuilder, node: Node) -> None:
    """Identity unless axis 1 is sliced (then fixed)."""
    (b.identity if 1 not in tuple(node.attrs["axes"]) else b.opaque)(node)


def _export(b: ExportBuilder, node: Node) -> tuple[list[str], Attrs]:
    """Operands ``starts``, ``ends`` (a canonical −1 becomes INT64_MIN), ``axes``, ``steps`` (int64)."""
    ends = [_INT64_MIN if e < 0 else e for e in node.attrs["ends"]]
    fields = {"starts": node.attrs["starts"], "ends": ends, "axes": node.attrs["axes"], "steps": node.attrs["steps"]}
    return [b.constant(node, k, np.array(v, np.int64).reshape(-1)) for k, v in fields.items()], \
        attrs_except(node, *fields)


DEFS = (OpDef("Slice", (1, 1), ("starts", "ends", "axes", "steps"), canonicalize=_canonicalize, shape=_shape,
              kernel=_kernel, torch=_torch, channels=_channels, rewrite=no_rewrite, export=_export,
              nonnegative=sign_of_inputs, homogeneous=always, mixes_batch=lambda a: 0 in a["axes"]),)
