"""ReduceMean, ReduceMax and ReduceSum over the canonical ``axes`` (sorted, non-negative):

* ReduceMean: ``y = (1 / Π_k d_k) · Σ x``;  ReduceSum: ``y = Σ x``;  ReduceMax: ``y = max x``,
  over the axes ``k`` in ``axes``, which are kept as size 1 when ``keepdims = 1``.

Both ONNX forms are read: ``axes`` as an attribute (ReduceMean/ReduceMax up to opset 17) or as
a constant int64 input (ReduceSum from opset 13, the others from 18); a computed ``axes`` is
unsupported. No axes reduce over every axis (``noop_with_empty_axes = 1``, an identity, is
unsupported). The exporter writes opset 17: ``axes`` an operand for ReduceSum, an attribute
for the others.

A ReduceMean over H and W of an NCHW tensor (what torch's dynamo exporter makes of
``AdaptiveAvgPool2d(1)``) is imported as ``GlobalAveragePool`` (followed by ``Flatten`` when
``keepdims = 0``), so it computes, lowers and morphs exactly like the legacy export's pool.
The other reductions are digital ops; Mean and Sum are long sums (``double``). Morph follows
the channels unless axis 1 is reduced (or axis 0 is dropped, which moves them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.errors import InvalidModelError, UnsupportedError
from cimc.ops.base import (
    Attrs,
    ExportRule,
    Kernel,
    OpDef,
    Replace,
    Shape,
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


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    rank = len(ctx.shape(node.input[0]))
    if len(node.input) > 1 and node.input[1]:
        if "axes" in a:
            raise InvalidModelError(f"node '{node.name}' ({node.op_type}) has axes both as attribute and input")
        values = ctx.const(node, 1, "axes")
    else:
        values = a.get("axes")
    given = [axis(node, v, rank) for v in ints(values)] if values is not None else []
    if len(set(given)) != len(given):
        raise InvalidModelError(f"node '{node.name}' ({node.op_type}) repeats an axis: {ints(values)}")
    if not given and int(a.get("noop_with_empty_axes", 0)):
        raise UnsupportedError(f"node '{node.name}' ({node.op_type}): noop_with_empty_axes=1 without axes "
                               "(an identity) is not supported")
    keepdims = int(a.get("keepdims", 1))
    if keepdims not in (0, 1):
        raise InvalidModelError(f"node '{node.name}' ({node.op_type}) has keepdims={keepdims}")
    return [node.input[0]], {"axes": tuple(sorted(given)) if given else tuple(range(rank)), "keepdims": keepdims}


def _global_pool(node: onnx.NodeProto, ctx: OpContext) -> list[onnx.NodeProto] | None:
    """A ReduceMean over axes (2, 3) of a 4-D tensor: ``GlobalAveragePool`` (+ ``Flatten(axis=1)``
    for ``keepdims = 0``); ``None`` for any other ReduceMean."""
    from onnx import helper

    shape = ctx.shape(node.input[0])
    _, a = _canonicalize(node, ctx, _attrs(node))
    if len(shape) != 4 or a["axes"] != (2, 3):
        return None
    if a["keepdims"]:
        return [helper.make_node("GlobalAveragePool", [node.input[0]], [node.output[0]], name=node.name)]
    pooled = ctx.fresh(f"{node.output[0]}_pooled", (*shape[:2], 1, 1))
    return [helper.make_node("GlobalAveragePool", [node.input[0]], [pooled], name=node.name),
            helper.make_node("Flatten", [pooled], [node.output[0]], name=ctx.fresh(f"{node.name}_flatten"), axis=1)]


def _attrs(node: onnx.NodeProto) -> Attrs:
    """The node's (int and ints) attributes as Python values."""
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _shape(shapes: list[Shape], a: Attrs) -> Shape:
    """Reduced axes become 1 (``keepdims``) or disappear."""
    axes = set(a["axes"])
    if a["keepdims"]:
        return tuple(1 if i in axes else d for i, d in enumerate(shapes[0]))
    return tuple(d for i, d in enumerate(shapes[0]) if i not in axes)


def _mean(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    x = ins[0]
    return np.asarray(x.mean(axis=tuple(a["axes"]), keepdims=bool(a["keepdims"]), dtype=x.dtype))


def _sum(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    x = ins[0]
    return np.asarray(x.sum(axis=tuple(a["axes"]), keepdims=bool(a["keepdims"]), dtype=x.dtype))


def _max(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return np.asarray(ins[0].max(axis=tuple(a["axes"]), keepdims=bool(a["keepdims"])))


def _mean_torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return ins[0].mean(dim=tuple(a["axes"]), keepdim=bool(a["keepdims"]))


def _sum_torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return ins[0].sum(dim=tuple(a["axes"]), keepdim=bool(a["keepdims"]))


def _max_torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return ins[0].amax(dim=tuple(a["axes"]), keepdim=bool(a["keepdims"]))


def _channels(b: ChannelBuilder, node: Node) -> None:
    """Identity unless axis 1 is reduced or axis 0 dropped (then the channels are fixed)."""
    axes = tuple(node.attrs["axes"])
    moved = 1 in axes or (0 in axes and not node.attrs["keepdims"])
    (b.opaque if moved else b.identity)(node)


def _export_attribute(b: ExportBuilder, node: Node) -> tuple[list[str], Attrs]:
    """Opset 17 ReduceMean/ReduceMax: ``axes`` and ``keepdims`` attributes."""
    return [], {"axes": tuple(node.attrs["axes"]), "keepdims": int(node.attrs["keepdims"])}


def _export_operand(b: ExportBuilder, node: Node) -> tuple[list[str], Attrs]:
    """ReduceSum (opset 13+): ``axes`` an int64 operand, ``keepdims`` an attribute."""
    axes = b.constant(node, "axes", np.array(node.attrs["axes"], np.int64).reshape(-1))
    return [axes], attrs_except(node, "axes")


def _op(name: str, kernel: Kernel, torch: TorchForward, export: ExportRule, *, double: bool,
        replace: Replace | None = None) -> OpDef:
    return OpDef(name, (1, 1), ("axes", "keepdims"), canonicalize=_canonicalize, shape=_shape, kernel=kernel,
                 torch=torch, channels=_channels, rewrite=no_rewrite, export=export,
                 nonnegative=sign_of_inputs, homogeneous=always, mixes_batch=lambda a: 0 in a["axes"],
                 double=double, replace=replace)


DEFS = (
    _op("ReduceMean", _mean, _mean_torch, _export_attribute, double=True, replace=_global_pool),
    _op("ReduceSum", _sum, _sum_torch, _export_operand, double=True),
    _op("ReduceMax", _max, _max_torch, _export_attribute, double=False),
)
