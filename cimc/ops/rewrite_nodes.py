"""Helpers the ops' ``replace`` rules share: they emit plain ONNX nodes (with constant operands
registered in the ``OpContext``) that the frontend then imports as ordinary IR ops.

* ``onnx_node_attrs`` — an ONNX node's attributes as plain Python values;
* ``Emitter`` — appends ``Reshape``/``Pad``/``Slice``/``Conv``/… nodes to a list, giving each
  intermediate tensor a fresh name and its static shape;
* ``lift_1d`` — the shapes of a 1-D window op (``(N, C, L)``) seen as a 2-D one over
  ``(N, C, 1, L)`` (a Conv1d maps onto the macro as a 2-D conv of height 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx

    from cimc.frontend.canonical import OpContext


def onnx_node_attrs(node: onnx.NodeProto) -> dict[str, Any]:
    """The node's attributes as plain Python values (strings decoded, lists as tuples)."""
    from onnx import helper

    out: dict[str, Any] = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        elif isinstance(value, list):
            value = tuple(v.decode("utf-8") if isinstance(v, bytes) else v for v in value)
        out[attr.name] = value
    return out


@dataclass
class Emitter:
    """Builds the replacement nodes of ``node``: ``emit`` appends one and returns its output
    (a fresh tensor of the given shape, or ``out`` for the last node). The ``main`` node (the
    one computing the op: a ConvTranspose's or a Conv1d's Conv) keeps the node's name, the
    others get fresh names ``<node>_<tag>``."""

    node: onnx.NodeProto
    ctx: OpContext
    nodes: list[onnx.NodeProto] = field(default_factory=list)

    def const(self, tag: str, value: np.ndarray) -> str:
        return self.ctx.add_constant(f"{self.node.name}_{tag}", value)

    def emit(self, op: str, inputs: list[str], shape: tuple[int, ...], tag: str, *, out: str | None = None,
             main: bool = False, **attrs: Any) -> str:
        from onnx import helper

        name = self.node.name if main else self.ctx.fresh(f"{self.node.name}_{tag}")
        y = out if out is not None else self.ctx.fresh(f"{self.node.output[0]}_{tag}", shape)
        self.nodes.append(helper.make_node(op, inputs, [y], name=name, **attrs))
        return y

    def reshape(self, x: str, shape: tuple[int, ...], tag: str, *, out: str | None = None) -> str:
        return self.emit("Reshape", [x, self.const(f"{tag}_shape", np.array(shape, np.int64))], shape, tag, out=out)

    def pad(self, x: str, shape: tuple[int, ...], pads: list[int], tag: str) -> str:
        """Zero padding: ``pads`` = befores then afters over every axis of ``x``."""
        rank = len(shape)
        out = tuple(d + pads[i] + pads[i + rank] for i, d in enumerate(shape))
        return self.emit("Pad", [x, self.const(f"{tag}_pads", np.array(pads, np.int64))], out, tag, mode="constant")

    def crop(self, x: str, shape: tuple[int, ...], begins: list[int], ends: list[int], tag: str, *,
             out: str | None = None) -> str:
        """``x[..., b_k : d_k − e_k, ...]`` over the axes where ``b_k`` or ``e_k`` is not 0 (``x``
        itself when there are none and no ``out`` is asked for)."""
        axes = [i for i in range(len(shape)) if begins[i] or ends[i]]
        if not axes and out is None:
            return x
        axes = axes or [0]
        shape_out = tuple(d - begins[i] - ends[i] for i, d in enumerate(shape))
        operands = [self.const(f"{tag}_{k}", np.array(v, np.int64)) for k, v in
                    (("starts", [begins[i] for i in axes]), ("ends", [shape[i] - ends[i] for i in axes]),
                     ("axes", axes))]
        return self.emit("Slice", [x, *operands], shape_out, tag, out=out)


def lift_1d(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``(N, C, L)`` → ``(N, C, 1, L)``; a 4-D shape is returned as it is."""
    return (*shape[:2], 1, shape[2]) if len(shape) == 3 else shape


def window_1d_as_2d(node: onnx.NodeProto, ctx: OpContext) -> list[onnx.NodeProto] | None:
    """A 1-D window op (Conv, MaxPool, AveragePool over ``(N, C, L)``) as the 2-D op over
    ``(N, C, 1, L)`` between two Reshapes: ``kernel_shape``, ``strides``, ``dilations`` get a
    leading 1, ``pads (b, e)`` become ``(0, b, 0, e)``, a Conv's weight ``(M, C_g, k)`` becomes
    ``(M, C_g, 1, k)``; ``auto_pad`` and the other attributes are kept (an axis of length 1
    with kernel 1 and stride 1 gets no padding). ``None`` for any other rank."""

    shape = ctx.shape(node.input[0])
    out = ctx.shapes.get(node.output[0])
    if len(shape) != 3 or out is None or len(out) != 3:
        return None
    e = Emitter(node, ctx)
    inputs = [e.reshape(node.input[0], lift_1d(shape), "as_2d"), *node.input[1:]]
    if node.op_type == "Conv":
        w = ctx.const(node, 1, "weight")
        if w is None or w.ndim != 3:
            return None
        inputs[1] = e.const("weight", w[:, :, None, :])
    attrs = onnx_node_attrs(node)
    for key in ("kernel_shape", "strides", "dilations"):
        if key in attrs:
            attrs[key] = [1, *attrs[key]]
    if "pads" in attrs and len(attrs["pads"]) == 2:
        attrs["pads"] = [0, attrs["pads"][0], 0, attrs["pads"][1]]
    y = e.emit(node.op_type, inputs, lift_1d(out), "2d", main=True, **attrs)
    e.reshape(y, out, "as_1d", out=node.output[0])
    return e.nodes
