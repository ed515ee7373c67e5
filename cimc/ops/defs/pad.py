"""Pad: ``y = x`` with ``pads[i]`` values before and ``pads[i + rank]`` after axis i (canonical
``pads`` over every axis, ``mode`` constant/reflect/edge, fill ``value``).

Morph: a constant Pad on axis 1 is ``[b zeros][input channels][e zeros]`` (the zeros are new
channels) and its zero counts are recomputed when the channels change. The exporter writes
``pads`` (and ``value`` in constant mode) back as operands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.errors import InvalidModelError, UnsupportedError
from cimc.ops.base import Attrs, OpDef, Shape, attrs_except
from cimc.ops.canon import axis, ints

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext
    from cimc.frontend.onnx_export import ExportBuilder
    from cimc.ir.node import Node
    from cimc.morph.channel_rules import ChannelBuilder
    from cimc.morph.channels_pass import RewriteContext


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    rank = len(ctx.shape(node.input[0]))
    given = ints(ctx.const(node, 1, "pads"))
    axes_value = ctx.const(node, 3, "axes")
    axes = [axis(node, ax, rank) for ax in ints(axes_value)] if axes_value is not None else list(range(rank))
    if len(given) != 2 * len(axes):
        raise InvalidModelError(f"node '{node.name}' (Pad): {len(given)} pads for {len(axes)} axes")
    pads = [0] * (2 * rank)
    for i, ax in enumerate(axes):
        pads[ax], pads[ax + rank] = given[i], given[i + len(axes)]
    mode = str(a.get("mode", "constant"))
    if mode not in ("constant", "reflect", "edge") or min(pads) < 0:
        raise UnsupportedError(f"node '{node.name}' (Pad): mode '{mode}' with pads {pads} is not supported")
    value = ctx.const(node, 2, "constant_value")
    fill = 0.0 if value is None else float(np.asarray(value).reshape(-1)[0])
    return [node.input[0]], {"pads": tuple(pads), "mode": mode, "value": fill}


def _shape(shapes: list[Shape], a: Attrs) -> Shape:
    x, pads = shapes[0], a["pads"]
    return tuple(d + pads[i] + pads[i + len(x)] for i, d in enumerate(x))


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    x, pads = ins[0], a["pads"]
    width = [(pads[i], pads[i + x.ndim]) for i in range(x.ndim)]
    mode = a.get("mode", "constant")
    if mode == "constant":
        return np.pad(x, width, constant_values=a.get("value", 0.0))
    return np.pad(x, width, mode="reflect" if mode == "reflect" else "edge")


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    """Constant pads with ``F.pad``; reflect/edge by gathering ``np.pad``-ed indices per padded axis."""
    import torch
    import torch.nn.functional as F

    x, pads = ins[0], a["pads"]
    rank = x.ndim
    mode = a.get("mode", "constant")
    if mode == "constant":
        pairs = [p for ax in reversed(range(rank)) for p in (pads[ax], pads[ax + rank])]
        return F.pad(x, pairs, value=a.get("value", 0.0))
    for ax in range(rank):
        if pads[ax] or pads[ax + rank]:
            index = np.pad(np.arange(x.shape[ax]), (pads[ax], pads[ax + rank]), mode=mode)
            x = x.index_select(ax, torch.from_numpy(index).to(x.device))
    return x


def _channels(b: ChannelBuilder, node: Node) -> None:
    """No pads on axis 1: identity. Constant pads on axis 1: ``[b zeros][input][e zeros]``, the
    zeros fresh channels. Other modes on axis 1 or a flattened input: fixed."""
    x = b.get(node.inputs[0])
    rank = len(b.shape(node.inputs[0]))
    pads = node.attrs["pads"]
    front, back = int(pads[1]), int(pads[1 + rank])
    if x is None or (front == back == 0):
        return b.identity(node)
    if node.attrs.get("mode", "constant") != "constant" or x.mult != 1 or min(front, back) < 0:
        return b.opaque(node)
    y = b.add(node.outputs[0])
    if y is None:
        return b.opaque(node)
    b.tie(x.atoms, np.arange(y.offset + front, y.offset + front + x.count))


def _rewrite(c: RewriteContext, node: Node) -> None:
    """The zero counts before and after the channels: new-map entries before/after the input's."""
    xmap, ymap = c.maps.get(node.inputs[0]), c.map(node.outputs[0])
    if ymap is None or xmap is None:
        return
    rank = len(c.graph.shape(node.inputs[0]))
    pads = list(node.attrs["pads"])
    front = int(pads[1])
    pads[1] = int((ymap.src < front).sum())
    pads[1 + rank] = int((ymap.src >= front + xmap.old_count).sum())
    node.attrs["pads"] = type(node.attrs["pads"])(pads)


def _export(b: ExportBuilder, node: Node) -> tuple[list[str], Attrs]:
    """Operands ``pads`` (int64) and, in constant mode, ``constant_value`` (float32); attr ``mode``."""
    attrs = attrs_except(node, "pads", "value")
    pads = b.constant(node, "pads", np.array(node.attrs["pads"], np.int64))
    if node.attrs.get("mode", "constant") != "constant":
        return [pads], attrs
    return [pads, b.constant(node, "value", np.array(node.attrs.get("value", 0.0), np.float32))], attrs


DEFS = (OpDef("Pad", (1, 1), ("pads", "mode", "value"), canonicalize=_canonicalize, shape=_shape, kernel=_kernel,
              torch=_torch, channels=_channels, rewrite=_rewrite, export=_export,
              nonnegative=lambda node, known: node.inputs[0] in known and float(node.attrs.get("value", 0.0)) >= 0,
              homogeneous=lambda node: node.attrs.get("mode", "constant") == "constant"
              and float(node.attrs.get("value", 0.0)) == 0.0,
              mixes_batch=lambda a: bool(a["pads"][0] or a["pads"][len(a["pads"]) // 2])),)
