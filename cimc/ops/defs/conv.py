"""Conv (2-D, grouped):
``y[n,o,h,w] = b[o] + Σ_{c∈group(o), i, j} W[o,c,i,j] · x_pad[n, c, h·s_h + i·d_h, w·s_w + j·d_w]``.

Canonical attrs: ``strides``, ``pads`` (explicit ``(top, left, bottom, right)``), ``dilations``,
``group`` (``kernel_shape`` is kept when the model gives it). Weight and bias are constants.
A 1-D Conv (``(N, C, L)``, torch's Conv1d) is imported as this 2-D conv over ``(N, C, 1, L)``
between two Reshapes (``replace``: ``cimc.ops.rewrite_nodes.window_1d_as_2d``), so it maps onto
the macro like any conv.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.errors import InvalidModelError
from cimc.ops.base import Attrs, OpDef, Shape, Unsupported, export_attributes, never
from cimc.ops.canon import ints, rank4, window_attrs
from cimc.ops.rewrite_nodes import window_1d_as_2d
from cimc.ops.windows import conv2d, window_out

if TYPE_CHECKING:
    import onnx

    from cimc.frontend.canonical import OpContext
    from cimc.ir.node import Node
    from cimc.morph.channel_rules import ChannelBuilder
    from cimc.morph.channels_pass import RewriteContext


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    shape = rank4(node, ctx)
    weight = ctx.shape(node.input[1])
    attrs = window_attrs(node, a, shape, ints(a.get("kernel_shape", weight[2:])))
    attrs["group"] = int(a.get("group", 1))
    if len(weight) != 4:
        raise InvalidModelError(f"node '{node.name}' (Conv): weight shape {weight} is not 4-D")
    cout, cin_g = weight[:2]
    if attrs["group"] < 1 or cout % attrs["group"] or shape[1] != cin_g * attrs["group"]:
        raise InvalidModelError(f"node '{node.name}' (Conv): group={attrs['group']} does not fit input channels "
                                f"{shape[1]} and weight shape {weight}")
    return [t for t in node.input if t], attrs


def _shape(shapes: list[Shape], a: Attrs) -> Shape:
    """``(N, Cout, Ho, Wo)``, ``Ho = ⌊(H + pads − (kh − 1)·d_h − 1) / s_h⌋ + 1`` (likewise ``Wo``)."""
    x, w = shapes[0], shapes[1]
    group = int(a.get("group", 1))
    if len(w) != 4 or len(x) != 4:
        raise InvalidModelError(f"Conv must be 2-D (got weight {w}, input {x})")
    if w[0] % group or x[1] != w[1] * group:
        raise InvalidModelError(f"Conv channels do not match group={group}: input {x}, weight {w}")
    d = a["dilations"]
    span = ((w[2] - 1) * d[0] + 1, (w[3] - 1) * d[1] + 1)
    return (x[0], w[0], *window_out(x[2:], span, a["strides"], a["pads"]))


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    b = ins[2] if len(ins) > 2 else None
    return conv2d(ins[0], ins[1], b, a["strides"], a["pads"], a["dilations"], a["group"])


def _channels(b: ChannelBuilder, node: Node) -> None:
    """Group 1: the outputs are fresh channels, the inputs are consumed (no tie). Depthwise
    (``group = C = Cout``): output channel c = input channel c. Other groupings: fixed."""
    x = b.get(node.inputs[0])
    if x is None or not b.const(node.inputs[1]) or any(not b.const(t) for t in node.inputs[2:] if t):
        return b.opaque(node)
    group, cout = int(node.attrs["group"]), b.shape(node.inputs[1])[0]
    if group == 1:
        b.add(node.outputs[0])
        b.weight_layer(node, "conv", x.name)
    elif group == x.count == cout:
        b.identity(node)
        b.weight_layer(node, "depthwise", x.name)
    else:
        b.opaque(node)


def _rewrite(c: RewriteContext, node: Node) -> None:
    """``W'[o', c'] = W[old(o'), old(c')]`` (new filters/columns initialised); a depthwise conv's
    filters follow its output map and ``group`` becomes the new width; bias by the output map."""
    xmap, ymap = c.map(node.inputs[0]), c.map(node.outputs[0])
    w = c.param(node, 1)
    if w is None or (xmap is None and ymap is None):
        return
    depthwise = int(node.attrs["group"]) > 1
    if depthwise and ymap is not None:
        w = c.init.filters(w, 0, ymap)
        node.attrs["group"] = len(ymap)
    elif not depthwise:
        w = c.init.filters(w, 0, ymap) if ymap is not None else w
        w = c.init.columns(w, 1, xmap) if xmap is not None else w
    c.replace(node, 1, w)
    c.bias(node, 2, ymap, axis=0)


DEFS = (OpDef(
    "Conv", (2, 3), ("strides", "pads", "dilations", "group"), canonicalize=_canonicalize, shape=_shape,
    kernel=_kernel,
    torch=Unsupported("Conv", "torch", "every Conv is a CIM layer: cimc.train.module runs it through CimQuantLayer"),
    channels=_channels, rewrite=_rewrite, export=export_attributes, nonnegative=never, homogeneous=never,
    mixes_batch=never, replace=window_1d_as_2d, weight_inputs=(1, 2)),)
