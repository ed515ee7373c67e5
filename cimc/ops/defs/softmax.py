"""Softmax: ``y_i = e^(x_i − max_j x_j) / Σ_j e^(x_j − max_j x_j)`` along ``axis`` (canonical,
non-negative; default −1). Morph follows the channels unless the softmax runs over them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.ops.base import Attrs, OpDef, always, batch_axis, export_attributes, never, no_rewrite, same_shape
from cimc.ops.canon import axis_rule

if TYPE_CHECKING:
    import torch

    from cimc.ir.node import Node
    from cimc.morph.channel_rules import ChannelBuilder


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    x = ins[0]
    e = np.exp(x - x.max(axis=a["axis"], keepdims=True))
    return e / e.sum(axis=a["axis"], keepdims=True)


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return ins[0].softmax(dim=a["axis"])


def _channels(b: ChannelBuilder, node: Node) -> None:
    """Identity unless ``axis = 1`` (then the channels are fixed)."""
    (b.identity if int(node.attrs["axis"]) != 1 else b.opaque)(node)


DEFS = (OpDef("Softmax", (1, 1), ("axis",), canonicalize=axis_rule(-1), shape=same_shape, kernel=_kernel,
              torch=_torch, channels=_channels, rewrite=no_rewrite, export=export_attributes, nonnegative=always,
              homogeneous=never, mixes_batch=batch_axis, double=True),)
