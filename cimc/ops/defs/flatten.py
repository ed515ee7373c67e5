"""Flatten: ``(d_0, …, d_{r−1}) → (d_0·…·d_{axis−1}, d_axis·…·d_{r−1})`` (canonical ``axis``, 0..rank).

With ``axis = 1`` a feature map ``(N, C, H, W)`` becomes ``(N, C·H·W)``: morph keeps its C
channels with multiplicity ``H·W`` (see ``cimc.ops.defs.reshape.flatten_channels``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from cimc.ops.base import (
    Attrs,
    OpDef,
    Shape,
    always,
    batch_axis,
    export_attributes,
    no_rewrite,
    sign_of_inputs,
)
from cimc.ops.canon import axis_rule
from cimc.ops.defs.reshape import flatten_channels

if TYPE_CHECKING:
    import torch


def _shape(shapes: list[Shape], a: Attrs) -> Shape:
    x, ax = shapes[0], a["axis"]
    return (math.prod(x[:ax]), math.prod(x[ax:]))


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    x = ins[0]
    lead = int(np.prod(x.shape[: a["axis"]], dtype=np.int64))
    rest = int(np.prod(x.shape[a["axis"]:], dtype=np.int64))
    return x.reshape(lead, rest)  # not (lead, -1): that fails for empty tensors


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    x = ins[0]
    return x.reshape(math.prod(x.shape[: a["axis"]]), math.prod(x.shape[a["axis"]:]))


DEFS = (OpDef("Flatten", (1, 1), ("axis",), canonicalize=axis_rule(1, inclusive=True), shape=_shape, kernel=_kernel,
              torch=_torch, channels=flatten_channels, rewrite=no_rewrite, export=export_attributes,
              nonnegative=sign_of_inputs, homogeneous=always, mixes_batch=batch_axis),)
