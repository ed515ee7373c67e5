"""Expand and Tile by constant shapes (the shape helpers exporters leave when shapes are static):

* Expand: ``y = x`` broadcast numpy-style against ``shape``; canonical attribute ``shape`` is the
  output shape (``broadcast(x.shape, shape)``, the ONNX rule, where a target dim 1 keeps x's);
* Tile: ``y = x`` repeated ``repeats[k]`` times along axis ``k``; canonical attribute ``repeats``.

The operand is a constant int64 input in ONNX (a computed one is unsupported) and is written back
as one. Both copy values: ≥ 0 when the input is, homogeneous. Morph keeps the widths (opaque).
The output shape is fixed, batch included, so a model with either runs at its static batch
(``mixes_batch``; a Tile with ``repeats[0] = 1`` keeps samples apart).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.errors import InvalidModelError
from cimc.ops.base import (
    Attrs,
    ExportRule,
    OpDef,
    Shape,
    always,
    attrs_except,
    channel_opaque,
    no_rewrite,
    sign_of_inputs,
)
from cimc.ops.canon import ints

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext
    from cimc.frontend.onnx_export import ExportBuilder
    from cimc.ir.node import Node


def _expand_canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    target = ints(ctx.const(node, 1, "shape"))
    try:
        shape = np.broadcast_shapes(ctx.shape(node.input[0]), target)
    except ValueError as exc:
        raise InvalidModelError(f"node '{node.name}' (Expand) cannot broadcast "
                                f"{ctx.shape(node.input[0])} to {target}") from exc
    return [node.input[0]], {"shape": ints(shape)}


def _tile_canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    repeats = ints(ctx.const(node, 1, "repeats"))
    if len(repeats) != len(ctx.shape(node.input[0])) or min(repeats, default=1) < 1:
        raise InvalidModelError(f"node '{node.name}' (Tile) has repeats {repeats} for rank "
                                f"{len(ctx.shape(node.input[0]))} (one positive count per axis)")
    return [node.input[0]], {"repeats": repeats}


def _expand_shape(shapes: list[Shape], a: Attrs) -> Shape:
    if np.broadcast_shapes(shapes[0], a["shape"]) != tuple(a["shape"]):
        raise InvalidModelError(f"Expand: {shapes[0]} does not broadcast to {a['shape']}")
    return tuple(a["shape"])


def _tile_shape(shapes: list[Shape], a: Attrs) -> Shape:
    if len(a["repeats"]) != len(shapes[0]):
        raise InvalidModelError(f"Tile: repeats {a['repeats']} for an input of shape {shapes[0]}")
    return tuple(d * r for d, r in zip(shapes[0], a["repeats"], strict=True))


def _expand(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(ins[0], a["shape"]))


def _tile(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return np.tile(ins[0], a["repeats"])


def _expand_torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return ins[0].expand(*a["shape"])


def _tile_torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return ins[0].repeat(*a["repeats"])


def _operand(field: str) -> ExportRule:
    """``field`` written back as an int64 operand."""
    def rule(b: ExportBuilder, node: Node) -> tuple[list[str], Attrs]:
        return [b.constant(node, field, np.array(node.attrs[field], np.int64))], attrs_except(node, field)
    return rule


DEFS = (
    OpDef("Expand", (1, 1), ("shape",), canonicalize=_expand_canonicalize, shape=_expand_shape, kernel=_expand,
          torch=_expand_torch, channels=channel_opaque, rewrite=no_rewrite, export=_operand("shape"),
          nonnegative=sign_of_inputs, homogeneous=always, mixes_batch=always),
    OpDef("Tile", (1, 1), ("repeats",), canonicalize=_tile_canonicalize, shape=_tile_shape, kernel=_tile,
          torch=_tile_torch, channels=channel_opaque, rewrite=no_rewrite, export=_operand("repeats"),
          nonnegative=sign_of_inputs, homogeneous=always, mixes_batch=lambda a: a["repeats"][0] != 1),
)
