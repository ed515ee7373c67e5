"""PRelu with a constant slope: ``y = x`` for ``x ≥ 0``, ``slope · x`` below (elementwise, the
slope broadcast to ``x`` numpy-style: one value, or one per channel as ``(C, 1, 1)``).

One IEEE operation per element (float32 in every engine). Homogeneous (``PRelu(c·x) =
c·PRelu(x)`` for ``c > 0``), can be negative. Morph: a single slope keeps the channels
(identity); a per-channel or other shaped slope fixes them (opaque; morph does not slice it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.errors import InvalidModelError
from cimc.ops.base import Attrs, OpDef, Shape, always, export_attributes, never, no_rewrite, plain_inputs

if TYPE_CHECKING:
    import torch

    from cimc.ir.node import Node
    from cimc.morph.channel_rules import ChannelBuilder


def _shape(shapes: list[Shape], a: Attrs) -> Shape:
    """``x``'s shape; the slope must broadcast to it."""
    if np.broadcast_shapes(shapes[0], shapes[1]) != tuple(shapes[0]):
        raise InvalidModelError(f"PRelu: slope of shape {shapes[1]} does not broadcast to {shapes[0]}")
    return shapes[0]


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    x = ins[0]
    return np.where(x < 0, x * ins[1].astype(x.dtype), x).astype(x.dtype)


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    import torch

    x = ins[0]
    return torch.where(x < 0, x * ins[1], x)


def _channels(b: ChannelBuilder, node: Node) -> None:
    """Identity for a single slope, else opaque."""
    size = int(np.prod(b.shape(node.inputs[1])))
    (b.identity if size == 1 else b.opaque)(node)


DEFS = (OpDef("PRelu", (2, 2), (), canonicalize=plain_inputs, shape=_shape, kernel=_kernel, torch=_torch,
              channels=_channels, rewrite=no_rewrite, export=export_attributes, nonnegative=never,
              homogeneous=always, mixes_batch=never, weight_inputs=(1,)),)
