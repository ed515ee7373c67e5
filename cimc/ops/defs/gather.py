"""Gather with constant indices: ``y[i₀…, j…, k…] = x[i₀…, idx[j…], k…]`` along ``axis``.

Canonical attributes: ``axis`` (non-negative), ``indices`` (the flat, non-negative indices) and
``indices_shape``; a computed index tensor is unsupported (the frontend folds the constant ones).
The output shape is ``x.shape[:axis] + indices_shape + x.shape[axis + 1:]``. Exported with the
indices as an int64 operand.

A Gather whose indices are ``0, 1, …, d − 1`` in order (``d = x.shape[axis]``) only reshapes:
it is imported as a ``Reshape`` (torch's dynamo exporter writes ``as_strided`` this way in the
ConvNeXt head).

A selection: ≥ 0 when its input is, homogeneous; morph does not follow the channels through it
(opaque); ``axis = 0`` picks samples (mixes the batch).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from cimc.errors import InvalidModelError, UnsupportedError
from cimc.ops.base import Attrs, OpDef, Shape, always, attrs_except, channel_opaque, no_rewrite, sign_of_inputs
from cimc.ops.canon import axis, ints

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext
    from cimc.frontend.onnx_export import ExportBuilder
    from cimc.ir.node import Node


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    shape = ctx.shape(node.input[0])
    if not shape:
        raise InvalidModelError(f"node '{node.name}' (Gather) gathers from a scalar")
    ax = axis(node, int(a.get("axis", 0)), len(shape))
    if node.input[1] not in ctx.initializers:
        raise UnsupportedError(f"node '{node.name}' (Gather): indices '{node.input[1]}' must be a constant",
                               hint="only constant indices are supported (a lookup by computed indices is not)")
    value = ctx.const(node, 1, "indices")
    if value is None or value.dtype.kind not in "iu":
        raise InvalidModelError(f"node '{node.name}' (Gather) needs integer indices")
    flat = np.asarray(value, np.int64).reshape(-1)
    size = shape[ax]
    if flat.size and (flat.min() < -size or flat.max() >= size):
        raise InvalidModelError(f"node '{node.name}' (Gather): an index is out of range for axis size {size}")
    return [node.input[0]], {"axis": ax, "indices": ints(np.where(flat < 0, flat + size, flat)),
                             "indices_shape": ints(value.shape)}


def _reshape(node: onnx.NodeProto, ctx: OpContext) -> list[onnx.NodeProto] | None:
    """An in-order Gather of the whole axis: a Reshape to the output shape; ``None`` otherwise."""
    from onnx import helper

    if len(node.input) < 2 or node.input[1] not in ctx.initializers:
        return None
    _, a = _canonicalize(node, ctx, {k.name: helper.get_attribute_value(k) for k in node.attribute})
    size = ctx.shape(node.input[0])[a["axis"]]
    if a["indices"] != tuple(range(size)):
        return None
    out = _shape([ctx.shape(node.input[0])], a)
    target = ctx.add_constant(f"{node.name}_shape", np.array(out, np.int64))
    return [helper.make_node("Reshape", [node.input[0], target], [node.output[0]], name=node.name)]


def _shape(shapes: list[Shape], a: Attrs) -> Shape:
    x, ax = shapes[0], a["axis"]
    if math.prod(a["indices_shape"]) != len(a["indices"]) or any(i >= x[ax] for i in a["indices"]):
        raise InvalidModelError(f"Gather: indices {a['indices_shape']} do not fit axis {ax} of {x}")
    return (*x[:ax], *a["indices_shape"], *x[ax + 1:])


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    idx = np.asarray(a["indices"], np.int64).reshape(a["indices_shape"])
    return np.take(ins[0], idx, axis=a["axis"])


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    import torch

    x, ax = ins[0], a["axis"]
    picked = x.index_select(ax, torch.tensor(a["indices"], dtype=torch.long, device=x.device))
    return picked.reshape(*x.shape[:ax], *a["indices_shape"], *x.shape[ax + 1:])


def _export(b: ExportBuilder, node: Node) -> tuple[list[str], Attrs]:
    """``indices`` an int64 operand of shape ``indices_shape``, ``axis`` an attribute."""
    value = np.asarray(node.attrs["indices"], np.int64).reshape(node.attrs["indices_shape"])
    return [b.constant(node, "indices", value)], attrs_except(node, "indices", "indices_shape")


DEFS = (OpDef("Gather", (1, 1), ("axis", "indices", "indices_shape"), canonicalize=_canonicalize, shape=_shape,
              kernel=_kernel, torch=_torch, channels=channel_opaque, rewrite=no_rewrite, export=_export,
              nonnegative=sign_of_inputs, homogeneous=always, mixes_batch=lambda a: a["axis"] == 0,
              replace=_reshape),)
