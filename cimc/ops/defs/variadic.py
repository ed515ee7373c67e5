"""Max, Min and Mean of one or more tensors, elementwise with numpy broadcasting:

* Max: ``y = max_k x_k``;  Min: ``y = min_k x_k`` (selections, float32 in every engine);
* Mean: ``y = (x_1 + … + x_n) / n``, summed left to right in float64 and rounded once
  (``double``; ``model.cim.onnx`` writes the float64 Adds and the Div, onnxruntime has no
  float64 Mean).

Morph ties the channels of the full-width inputs to the output (as Add does) when no constant
operand is per channel; a per-channel constant fixes them (opaque: no identity element to give
new channels). Max is ≥ 0 when any input is, Min and Mean when all are; none is homogeneous (a
constant operand does not scale).
"""

from __future__ import annotations

import functools
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from cimc.ops.base import Attrs, OpDef, SignRule, export_attributes, never, no_rewrite, plain_inputs, sign_of_inputs
from cimc.ops.defs.broadcast import broadcast_channels, broadcast_shape, channel_dim
from cimc.ops.formula import Backend, in_float64, to_onnx

if TYPE_CHECKING:
    import torch

    from cimc.frontend.onnx_export import ExportBuilder
    from cimc.ir.node import Node
    from cimc.morph.channel_rules import ChannelBuilder

T = TypeVar("T")


def _channels(b: ChannelBuilder, node: Node) -> None:
    out = b.shape(node.outputs[0])
    per_channel = len(out) >= 2 and any(b.const(t) and channel_dim(b.shape(t), len(out)) > 1 for t in node.inputs)
    (b.opaque if per_channel else lambda n: broadcast_channels(b, n))(node)


def _mean(be: Backend[T], *xs: T) -> T:
    return be.div(functools.reduce(be.add, xs), be.const(float(len(xs))))


def _mean_kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return in_float64(_mean, ins)


def _mean_decompose(b: ExportBuilder, node: Node, wide: bool) -> bool:
    if wide:
        to_onnx(b, node, True, _mean, n_inputs=len(node.inputs))
    return wide


def _reduce(fn: Any) -> Any:
    def kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
        return np.asarray(functools.reduce(fn, ins)).astype(ins[0].dtype)
    return kernel


def _torch(fn: str) -> Any:
    def forward(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
        import torch

        return functools.reduce(getattr(torch, fn), ins)
    return forward


def _mean_torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return functools.reduce(lambda x, y: x + y, ins) / len(ins)


def _any_input(node: Node, known: AbstractSet[str]) -> bool:
    return any(t in known for t in node.inputs if t)


def _op(name: str, kernel: Any, torch_forward: Any, nonnegative: SignRule, **kw: Any) -> OpDef:
    return OpDef(name, (1, 2**16), (), canonicalize=plain_inputs, shape=broadcast_shape, kernel=kernel,
                 torch=torch_forward, channels=_channels, rewrite=no_rewrite, export=export_attributes,
                 nonnegative=nonnegative, homogeneous=never, mixes_batch=never, **kw)


DEFS = (
    _op("Max", _reduce(np.maximum), _torch("maximum"), _any_input),
    _op("Min", _reduce(np.minimum), _torch("minimum"), sign_of_inputs),
    _op("Mean", _mean_kernel, _mean_torch, sign_of_inputs, double=True, decompose=_mean_decompose),
)
