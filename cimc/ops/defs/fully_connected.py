"""Gemm and MatMul, the fully connected layers (weights constant, mapped to CIM with ``map_fc``).

* Gemm: ``y = alpha · A' · B' + beta · C`` with ``A' = Aᵀ`` if ``transA``, ``B' = Bᵀ`` if ``transB``.
* MatMul: ``y = A · B`` (numpy ``matmul`` broadcasting).

Both compute in the wider dtype of their operands (``promotes``): in the quantized reference's
float64 run a float32 weight is cast a block of ``CAST_BLOCK_BYTES`` at a time (output columns),
not as one float64 copy, which for a 25088×4096 weight is 822 MB. Columns are independent dot
products, so the blocks give the one-call product (checked bit for bit by the tests).

They share the channel rule (outputs are fresh channels; a flattened ``C·m`` input is consumed
in blocks of ``m``) and the morph rewrite of the weight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cimc.errors import InvalidModelError
from cimc.ops.base import Attrs, OpDef, Shape, export_attributes, never, plain_inputs

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext
    from cimc.ir.node import Node
    from cimc.morph.channel_rules import ChannelBuilder
    from cimc.morph.channels_pass import RewriteContext


#: Bytes of float64 weight one block of ``product`` casts.
CAST_BLOCK_BYTES = 64 * 2**20
#: Fewest multiply-adds in one block of ``product``: OpenBLAS computes a product below 2^19
#: of them on one thread, with another blocking of the sum, so smaller blocks of a larger
#: product could round differently. Real blocks (``CAST_BLOCK_BYTES``) are far above it.
MIN_BLOCK_MACS = 2**20


def product(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` (numpy ``matmul``) in the wider dtype of the two. A weight of the narrower
    dtype, at least 2-D and over ``CAST_BLOCK_BYTES`` once cast, is cast and multiplied a block
    of output columns at a time: blocks of a multiple of 64 columns and ``MIN_BLOCK_MACS``, the
    remainder joining the last block, so each column's dot product is summed as in one call."""
    dtype = np.result_type(x, w)
    wide_bytes = w.size * dtype.itemsize
    if w.dtype == dtype or w.ndim < 2 or wide_bytes <= CAST_BLOCK_BYTES:
        return np.matmul(x, w)
    n, k = w.shape[-1], w.shape[-2]
    fewest = -(-MIN_BLOCK_MACS // max(1, x.size // max(1, k) * k))
    cols = -(-max(64, fewest, CAST_BLOCK_BYTES * n // wide_bytes) // 64) * 64
    starts = list(range(0, n, cols))
    if len(starts) > 1 and n - starts[-1] < cols:
        starts.pop()  # the remainder joins the last full block
    ends = [*starts[1:], n]
    return np.concatenate([np.matmul(x, w[..., a:b].astype(dtype)) for a, b in zip(starts, ends, strict=True)],
                          axis=-1)


def _gemm_canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    attrs = {"alpha": float(a.get("alpha", 1.0)), "beta": float(a.get("beta", 1.0)),
             "transA": int(a.get("transA", 0)), "transB": int(a.get("transB", 0))}
    return [t for t in node.input if t], attrs


def _gemm_shape(shapes: list[Shape], a: Attrs) -> Shape:
    """``(M, N)`` of ``A' (M, K) · B' (K, N)``."""
    x, w = shapes[0], shapes[1]
    if len(x) != 2 or len(w) != 2:
        raise InvalidModelError(f"Gemm needs 2-D operands, got {x} and {w}")
    return (x[1] if a["transA"] else x[0], w[0] if a["transB"] else w[1])


def _gemm_kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    x = ins[0].T if a["transA"] else ins[0]
    w = ins[1].T if a["transB"] else ins[1]
    y = a["alpha"] * product(x, w)
    if len(ins) > 2:  # the bias in the product's dtype (a float32 bias in a float64 run: promoted first)
        y = y + a["beta"] * np.asarray(ins[2], dtype=y.dtype)
    return np.asarray(y, dtype=ins[0].dtype)


def _gemm_torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    x = ins[0].t() if a["transA"] else ins[0]
    w = ins[1].t() if a["transB"] else ins[1]
    y = a["alpha"] * (x @ w)
    return y + a["beta"] * ins[2] if len(ins) > 2 else y


def _matmul_shape(shapes: list[Shape], a: Attrs) -> Shape:
    """numpy ``matmul``: ``(…, M, K) · (…, K, N) → (…, M, N)``, batch dims broadcast; a 1-D
    operand gets a unit M (or N) dim that is dropped from the result."""
    x, w = shapes[0], shapes[1]
    xs, ws = (1, *x) if len(x) == 1 else x, (*w, 1) if len(w) == 1 else w
    if not x or not w or xs[-1] != ws[-2]:
        raise InvalidModelError(f"MatMul operands {x} and {w} do not match")
    out = (*np.broadcast_shapes(xs[:-2], ws[:-2]), xs[-2], ws[-1])
    drop = {len(out) - 2} if len(x) == 1 else set()
    drop |= {len(out) - 1} if len(w) == 1 else set()
    return tuple(d for i, d in enumerate(out) if i not in drop)


def _matmul_kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return product(ins[0], ins[1])


def _matmul_torch(ins: list[Any], a: Attrs) -> Any:
    import torch

    return torch.matmul(ins[0], ins[1])


def _channels(b: ChannelBuilder, node: Node) -> None:
    """Outputs are fresh channels; the input (``C`` channels of multiplicity ``m``) is consumed."""
    x = b.get(node.inputs[0])
    w = node.inputs[1]
    ok = x is not None and b.const(w) and len(b.shape(w)) == 2 and len(b.shape(node.inputs[0])) == 2
    ok = ok and all(b.const(t) for t in node.inputs[2:] if t) and not node.attrs.get("transA", 0)
    if not ok or x is None:
        return b.opaque(node)
    k = b.shape(w)[1] if node.attrs.get("transB", 0) else b.shape(w)[0]
    if k != x.count * x.mult or b.add(node.outputs[0]) is None:
        return b.opaque(node)
    b.weight_layer(node, "gemm", x.name)


def _rewrite(c: RewriteContext, node: Node) -> None:
    """The weight's input axis follows the input map, a flattened ``C·m`` axis in blocks of
    ``m`` (``W'[:, c'·m + p] = W[:, old(c')·m + p]``); its output axis and bias the output map."""
    xmap, ymap = c.map(node.inputs[0]), c.map(node.outputs[0])
    w = c.param(node, 1)
    if w is None or (xmap is None and ymap is None):
        return
    out_axis, in_axis = (0, 1) if node.attrs.get("transB", 0) else (1, 0)
    w = c.init.filters(w, out_axis, ymap) if ymap is not None else w
    w = c.init.columns(w, in_axis, xmap, c.mult(node.inputs[0])) if xmap is not None else w
    c.replace(node, 1, w)
    bias = c.param(node, 2)
    if bias is not None and bias.ndim and bias.shape[-1] > 1:
        c.bias(node, 2, ymap, axis=bias.ndim - 1)


DEFS = (
    OpDef("Gemm", (2, 3), ("alpha", "beta", "transA", "transB"), canonicalize=_gemm_canonicalize, shape=_gemm_shape,
          kernel=_gemm_kernel, torch=_gemm_torch, channels=_channels, rewrite=_rewrite, export=export_attributes,
          nonnegative=never, homogeneous=never, mixes_batch=lambda a: bool(a["transA"]), weight_inputs=(1, 2),
          double=True, promotes=True),
    OpDef("MatMul", (2, 2), (), canonicalize=plain_inputs, shape=_matmul_shape, kernel=_matmul_kernel,
          torch=_matmul_torch, channels=_channels, rewrite=_rewrite, export=export_attributes, nonnegative=never,
          homogeneous=never, mixes_batch=never, weight_inputs=(1,), double=True, promotes=True),
)
