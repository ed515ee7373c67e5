"""Concat: ``y = [x_1, …, x_k]`` joined along ``axis`` (canonical, non-negative).

Along axis 1 input k's channels are a segment of the output's; along another axis every
input shares the output's channels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.errors import InvalidModelError
from cimc.ops.base import (
    Attrs,
    OpDef,
    Shape,
    batch_axis,
    export_attributes,
    never,
    no_rewrite,
    sign_of_inputs,
)
from cimc.ops.canon import axis_rule

if TYPE_CHECKING:
    import torch

    from cimc.ir.node import Node
    from cimc.morph.channel_rules import ChannelBuilder


def _shape(shapes: list[Shape], a: Attrs) -> Shape:
    """Every input's shape, the ``axis`` sizes summed (the other dims must agree)."""
    ax = a["axis"]
    rest = {s[:ax] + s[ax + 1:] for s in shapes}
    if len(rest) != 1:
        raise InvalidModelError(f"Concat inputs {shapes} differ off axis {ax}")
    first = shapes[0]
    return (*first[:ax], sum(s[ax] for s in shapes), *first[ax + 1:])


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return np.concatenate(ins, axis=a["axis"])


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    import torch

    return torch.cat(ins, dim=a["axis"])


def _channels(b: ChannelBuilder, node: Node) -> None:
    parts = [b.get(t) for t in node.inputs]
    mults = {p.mult if p is not None else -1 for p in parts}
    if len(mults) != 1 or -1 in mults:
        return b.opaque(node)
    inputs = [p for p in parts if p is not None]
    y = b.add(node.outputs[0], mults.pop())
    along_channels = int(node.attrs["axis"]) == 1
    if y is None or y.count != (sum(p.count for p in inputs) if along_channels else inputs[0].count):
        return b.opaque(node)
    starts = np.cumsum([0] + [p.count for p in inputs[:-1]]) if along_channels else np.zeros(len(inputs), int)
    for p, start in zip(inputs, starts, strict=True):
        if not along_channels and p.count != y.count:
            return b.opaque(node)
        b.tie(p.atoms, np.arange(y.offset + start, y.offset + start + p.count))


DEFS = (OpDef("Concat", (1, 2**16), ("axis",), canonicalize=axis_rule(None), shape=_shape, kernel=_kernel,
              torch=_torch, channels=_channels, rewrite=no_rewrite, export=export_attributes,
              nonnegative=sign_of_inputs, homogeneous=never, mixes_batch=batch_axis),)
