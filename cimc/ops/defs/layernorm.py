"""LayerNormalization (ONNX opset 17) over the trailing axes ``A = (axis, …, rank − 1)``:

    μ = mean_A(x),  σ² = mean_A((x − μ)²),  y = (x − μ) / √(σ² + ε) · scale + bias

``scale`` and ``bias`` (optional) are constants broadcast over the normalised shape
``x.shape[axis:]``; canonical attributes ``axis`` (non-negative) and ``epsilon`` (default 1e-5).
``stash_type`` is read and dropped: cimc computes in float64 and rounds once (``double``; the
statistics are long sums), and onnxruntime's float64 LayerNormalization does the same in
``model.cim.onnx``. The decomposed form older exporters write (ReduceMean, Sub, Pow, ReduceMean,
Add, Sqrt, Div, Mul, Add) imports op by op.

Channels-last LayerNorm (ConvNeXt: Transpose to NHWC, LayerNorm over the last axis, Transpose
back) and channels-first (``axis = 1`` of NCHW) are both this op.

Morph: with ``axis ≥ 2`` every channel (axis 1) is normalised on its own and ``scale``/``bias``
span the normalised axes only, not the channels (identity, nothing to rewrite); ``axis ≤ 1``
mixes the channels (opaque).
Not homogeneous: LayerNorm is scale-invariant (``LN(c·x) = LN(x)`` for ``c > 0``, up to ε), not
``c·LN(x)``; can be negative. ``axis = 0`` mixes the batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.errors import InvalidModelError
from cimc.ops.base import Attrs, OpDef, Shape, export_attributes, never, no_rewrite
from cimc.ops.canon import axis

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext
    from cimc.ir.node import Node
    from cimc.morph.channel_rules import ChannelBuilder


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    rank = len(ctx.shape(node.input[0]))
    if len(node.input) < 2 or not node.input[1]:
        raise InvalidModelError(f"node '{node.name}' (LayerNormalization) lacks its Scale input")
    epsilon = float(a.get("epsilon", 1e-5))
    if not 0 <= epsilon < float("inf"):
        raise InvalidModelError(f"node '{node.name}' (LayerNormalization) has epsilon {epsilon} (must be ≥ 0)")
    return [t for t in node.input[:3] if t], {"axis": axis(node, int(a.get("axis", -1)), rank), "epsilon": epsilon}


def _shape(shapes: list[Shape], a: Attrs) -> Shape:
    """Same as ``x``; ``scale`` and ``bias`` must broadcast to ``x.shape[axis:]``."""
    normalised = shapes[0][a["axis"]:]
    for s in shapes[1:]:
        if len(s) > len(normalised) or np.broadcast_shapes(normalised, s) != normalised:
            raise InvalidModelError(f"LayerNormalization: scale/bias of shape {s} do not broadcast to {normalised}")
    return shapes[0]


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    x = ins[0].astype(np.float64)
    axes = tuple(range(a["axis"], x.ndim))
    d = x - x.mean(axis=axes, keepdims=True)
    y = d / np.sqrt((d * d).mean(axis=axes, keepdims=True) + a["epsilon"]) * ins[1].astype(np.float64)
    if len(ins) > 2:
        y = y + ins[2].astype(np.float64)
    return y.astype(ins[0].dtype)


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    import torch.nn.functional as F

    x = ins[0]
    y = F.layer_norm(x, tuple(x.shape[a["axis"]:]), eps=a["epsilon"]) * ins[1]
    return y + ins[2] if len(ins) > 2 else y


def _channels(b: ChannelBuilder, node: Node) -> None:
    """Identity when only axes ≥ 2 are normalised, else opaque."""
    (b.identity if node.attrs["axis"] >= 2 else b.opaque)(node)


DEFS = (OpDef("LayerNormalization", (2, 3), ("axis", "epsilon"), canonicalize=_canonicalize, shape=_shape,
              kernel=_kernel, torch=_torch, channels=_channels, rewrite=no_rewrite,
              export=export_attributes, nonnegative=never,
              homogeneous=never, mixes_batch=lambda a: a["axis"] == 0, weight_inputs=(1, 2), double=True),)
