"""Reshape: ``y = x`` viewed with the canonical ``shape`` (resolved: no 0 or −1 left at import).

Morph: a Reshape keeping axes 0 and 1 maps channel c to c; one that flattens ``(N, C, …)``
to ``(N, C·m)`` keeps the C channels with multiplicity m, and its target width is recomputed
when the channels change. The exporter writes ``shape`` back as an operand.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from cimc.errors import InvalidModelError
from cimc.ops.base import Attrs, OpDef, Shape, always, attrs_except, sign_of_inputs
from cimc.ops.canon import ints

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext
    from cimc.frontend.onnx_export import ExportBuilder
    from cimc.ir.node import Node
    from cimc.morph.channel_rules import ChannelBuilder
    from cimc.morph.channels_pass import RewriteContext


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    src = ctx.shape(node.input[0])
    spec = list(ints(ctx.const(node, 1, "shape")))
    if not a.get("allowzero", 0):
        spec = [src[i] if d == 0 and i < len(src) else d for i, d in enumerate(spec)]
    if spec.count(-1) > 1 or any(d < -1 for d in spec):
        raise InvalidModelError(f"node '{node.name}' (Reshape): invalid shape {spec}")
    return [node.input[0]], {"shape": _resolve(src, spec, node.name)}


def _resolve(src: Shape, spec: list[int], name: str) -> Shape:
    """``spec`` with its −1 (if any) replaced by the size that keeps ``prod(src)`` elements."""
    total, known = math.prod(src), math.prod(d for d in spec if d != -1)
    if -1 in spec:
        if known == 0 or total % known:
            raise InvalidModelError(f"node '{name}' (Reshape): cannot reshape {src} to {spec}")
        spec = [total // known if d == -1 else d for d in spec]
    if math.prod(spec) != total:
        raise InvalidModelError(f"node '{name}' (Reshape): cannot reshape {src} to {spec}")
    return tuple(spec)


def _shape(shapes: list[Shape], a: Attrs) -> Shape:
    return _resolve(shapes[0], list(a["shape"]), "")


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return ins[0].reshape(a["shape"])


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return ins[0].reshape(a["shape"])


def flatten_channels(b: ChannelBuilder, node: Node) -> None:
    """``(N, C, *rest) → (N, C·prod(rest))``: C channels of multiplicity ×``prod(rest)``;
    Reshapes keeping axes 0 and 1 are identities; anything else is fixed."""
    x = b.get(node.inputs[0])
    xs, ys = b.shape(node.inputs[0]), b.shape(node.outputs[0])
    if x is None:
        return b.opaque(node)
    if node.op == "Reshape" and ys[:2] == xs[:2]:
        return b.identity(node)
    flat = len(ys) == 2 and ys[0] == xs[0] and ys[1] == math.prod(xs[1:])
    if not flat or (node.op == "Flatten" and int(node.attrs["axis"]) != 1):
        return b.opaque(node)
    y = b.add(node.outputs[0], x.mult * math.prod(xs[2:]))
    if y is None or y.count != x.count:
        return b.opaque(node)
    b.tie(x.atoms, y.atoms)


def _rewrite(c: RewriteContext, node: Node) -> None:
    """Target width ``shape[1]`` = new channel count × multiplicity."""
    ymap = c.map(node.outputs[0])
    if ymap is not None:
        shape = list(node.attrs["shape"])
        shape[1] = len(ymap) * c.mult(node.outputs[0])
        node.attrs["shape"] = type(node.attrs["shape"])(shape)


def _export(b: ExportBuilder, node: Node) -> tuple[list[str], Attrs]:
    """Operand ``shape`` (int64); ``allowzero=1`` when it holds a 0 (a real empty dim)."""
    shape = b.constant(node, "shape", np.array(node.attrs["shape"], np.int64).reshape(-1))
    return [shape], attrs_except(node, "shape") | ({"allowzero": 1} if 0 in node.attrs["shape"] else {})


DEFS = (OpDef("Reshape", (1, 1), ("shape",), canonicalize=_canonicalize, shape=_shape, kernel=_kernel, torch=_torch,
              channels=flatten_channels, rewrite=_rewrite, export=_export, nonnegative=sign_of_inputs,
              homogeneous=always, mixes_batch=lambda a: not a["shape"] or a["shape"][0] != -1),)
