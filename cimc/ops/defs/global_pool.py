"""The global pools over H and W of an NCHW input, each to ``(N, C, 1, 1)``:

* GlobalAveragePool: ``y[n,c,0,0] = (1 / H·W) · Σ_{h,w} x[n,c,h,w]`` (a long reduction: float64,
  rounded once);
* GlobalMaxPool: ``y[n,c,0,0] = max_{h,w} x[n,c,h,w]``.

Both keep channels (morph follows them), are positively homogeneous and keep the sign of their
input.
"""

from __future__ import annotations

from collections.abc import Callable
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


def _average(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return ins[0].mean(axis=(2, 3), keepdims=True, dtype=ins[0].dtype)


def _average_torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return ins[0].mean(dim=(2, 3), keepdim=True)


def _max(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return ins[0].max(axis=(2, 3), keepdims=True)


def _max_torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return ins[0].amax(dim=(2, 3), keepdim=True)


def _global_pool(name: str, kernel: Callable[[list[np.ndarray], Attrs], np.ndarray],
                 forward: Callable[[list[torch.Tensor], Attrs], torch.Tensor], double: bool) -> OpDef:
    return OpDef(name, (1, 1), (), canonicalize=_canonicalize, shape=_shape, kernel=kernel, torch=forward,
                 channels=channel_identity, rewrite=no_rewrite, export=export_attributes, nonnegative=sign_of_inputs,
                 homogeneous=always, mixes_batch=never, double=double)


DEFS = (_global_pool("GlobalAveragePool", _average, _average_torch, double=True),
        _global_pool("GlobalMaxPool", _max, _max_torch, double=False))
