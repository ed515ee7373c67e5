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
    (a fresh tensor of the given shape, or ``out`` for the last node)."""

    node: onnx.NodeProto
    ctx: OpContext
    nodes: list[onnx.NodeProto] = field(default_factory=list)

    def const(self, tag: str, value: np.ndarray) -> str:
        return self.ctx.add_constant(f"{self.node.name}_{tag}", value)

    def emit(self, op: str, inputs: list[str], shape: tuple[int, ...], tag: str, *, out: str | None = None,
             **attrs: Any) -> str:
        from onnx import helper

        first = not self.nodes
        name = self.node.name if first else self.ctx.fresh(f"{self.node.name}_{tag}")
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

    def crop(self, x: str, shape: tuple[int, ...], begins: list[int], ends: list[int], tag: str) -> str:
        """``x[..., b_k : d_k − e_k, ...]`` over the axes where ``b_k`` or ``e_k`` is not 0."""
        axes = [i for i in range(len(shape)) if begins[i] or ends[i]]
        if not axes:
            return x
        out = tuple(d - begins[i] - ends[i] for i, d in enumerate(shape))
        operands = [self.const(f"{tag}_{k}", np.array(v, np.int64)) for k, v in
                    (("starts", [begins[i] for i in axes]), ("ends", [shape[i] - ends[i] for i in axes]),
                     ("axes", axes))]
        return self.emit("Slice", [x, *operands], out, tag)


def lift_1d(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``(N, C, L)`` → ``(N, C, 1, L)``; a 4-D shape is returned as it is."""
    return (*shape[:2], 1, shape[2]) if len(shape) == 3 else shape
