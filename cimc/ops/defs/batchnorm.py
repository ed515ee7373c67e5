"""BatchNormalization (inference): ``y = γ · (x − μ) / √(σ² + ε) + β`` per channel (axis 1).

Canonical attr: ``epsilon``. ``γ, β, μ, σ²`` are constants; ``training_mode=1`` is unsupported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.errors import UnsupportedError
from cimc.ops.base import Attrs, OpDef, Unsupported, export_attributes, never, same_shape

if TYPE_CHECKING:
    import onnx

    from cimc.frontend.canonical import OpContext
    from cimc.ir.node import Node
    from cimc.morph.channel_rules import ChannelBuilder
    from cimc.morph.channels_pass import RewriteContext


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    if int(a.get("training_mode", 0)):
        raise UnsupportedError(f"node '{node.name}' (BatchNormalization): training_mode=1 is not supported",
                               hint="export the model in eval mode")
    return list(node.input), {"epsilon": float(a.get("epsilon", 1e-5))}


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    x, g, beta, mean, var = ins
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = g / np.sqrt(var + np.float32(a["epsilon"]))
    return (x - mean.reshape(shape)) * scale.reshape(shape) + beta.reshape(shape)


def _channels(b: ChannelBuilder, node: Node) -> None:
    """Output channel c = input channel c; γ is recorded for importance (parameters must be constant)."""
    if not all(b.const(t) for t in node.inputs[1:]):
        return b.opaque(node)
    b.identity(node)
    b.batchnorm(node)


def _rewrite(c: RewriteContext, node: Node) -> None:
    """``γ, β, μ, σ²`` follow the channel map (new channels: ``γ`` initialised, ``β = μ = 0``, ``σ² = 1``)."""
    cmap = c.map(node.inputs[0])
    if cmap is None or node.inputs[1] not in c.graph.initializers:
        return
    gamma = c.graph.initializers[node.inputs[1]]
    c.replace(node, 1, c.init.gamma(gamma, cmap))
    for index, fill in ((2, 0.0), (3, 0.0), (4, 1.0)):
        c.replace(node, index, c.init.constant(c.graph.initializers[node.inputs[index]], 0, cmap, fill))


DEFS = (OpDef(
    "BatchNormalization", (5, 5), ("epsilon",), canonicalize=_canonicalize, shape=same_shape, kernel=_kernel,
    torch=Unsupported("BatchNormalization", "torch", "cimc.train.module runs BN itself (batch statistics in "
                      "training, folded into its layer in phases 1-2)"),
    channels=_channels, rewrite=_rewrite, export=export_attributes, nonnegative=never, homogeneous=never,
    mixes_batch=never, weight_inputs=(1, 2, 3, 4), double=True),)
