"""GlobalMaxPool: ``y[n,c,0,0] = max_{h,w} x[n,c,h,w]`` (NCHW input)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.ops.base import (
    Attrs,
    OpDef,
    Shape,
    always,
    channel_identity,
    export_attributes,
    never,
    no_rewrite,
    sign_of_inputs,
)
from cimc.ops.canon import rank4

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    rank4(node, ctx)
    return [node.input[0]], {}


def _shape(shapes: list[Shape], a: Attrs) -> Shape:
    """``(N, C, 1, 1)``."""
    return (*shapes[0][:2], 1, 1)


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return ins[0].max(axis=(2, 3), keepdims=True)


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return ins[0].amax(dim=(2, 3), keepdim=True)


DEFS = (OpDef("GlobalMaxPool", (1, 1), (), canonicalize=_canonicalize, shape=_shape, kernel=_kernel,
              torch=_torch, channels=channel_identity, rewrite=no_rewrite, export=export_attributes,
              nonnegative=sign_of_inputs, homogeneous=always, mixes_batch=never),)
