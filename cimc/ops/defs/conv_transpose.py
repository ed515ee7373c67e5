"""ConvTranspose (1-D or 2-D, grouped, any stride, pads, output_padding, dilation, auto_pad,
output_shape): ``y[n, g·M_g + m, o] = b[g·M_g + m] + Σ_{c ∈ group g, i : o = h·s − p_b + i·d} x[n, c, h] · W[c, m, i]``
(per spatial axis; ``W`` is ``(C, M_g, k…)``).

It is imported as an ordinary ``Conv`` (a CIM layer, weight-stationary on the macro) over the
input with ``s − 1`` zeros inserted between neighbouring pixels (``replace``, "zero insertion"):

* zero insertion — ``Reshape (N, C, H, 1, W, 1)`` → ``Pad`` ``s − 1`` zeros after axes 3 and 5
  → ``Reshape (N, C, H·s_h, W·s_w)`` (digital, pure data movement: exact in every executor);
* borders — the conv pads ``B = (k − 1)·d − p_b`` before and ``E = (k − 1)·d − p_e + a − (s − 1)``
  after (``a`` = output_padding; the ``s − 1`` trailing zeros of the last step are already
  there); a negative ``B`` or ``E`` crops the input instead (``Slice``);
* the conv — stride 1, dilation ``d``, the same groups, ``W'[g·M_g + m, c, i, j] =
  W[g·C_g + c, m, k_h − 1 − i, k_w − 1 − j]`` (kernel flipped, in/out channels swapped per group),
  the same bias.

Then ``H_out = (H − 1)·s + a + (k − 1)·d + 1 − p_b − p_e`` as ONNX defines it. With
``output_shape`` (or ``auto_pad`` SAME_*, which asks for ``H·s``) the total padding
``t = (H − 1)·s + a + (k − 1)·d + 1 − H_out`` is split as ONNX and onnxruntime split it: SAME_UPPER
puts ``⌊t/2⌋`` before, every other mode ``⌈t/2⌉``. An ``output_shape`` larger than the
un-padded output is unsupported. A 1-D ConvTranspose is the 2-D one over ``(N, C, 1, L)``.

The lowering costs ``s_h·s_w`` times the macro cycles of the un-dilated input (most inputs
are the inserted zeros); ``docs/architecture.md`` ("ConvTranspose on the macro") gives figures.
The ConvTranspose op itself never reaches the IR: every concern is the imported ops'.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.errors import InvalidModelError, UnsupportedError
from cimc.ops.base import CONCERNS, OpDef, Unsupported
from cimc.ops.canon import ints
from cimc.ops.rewrite_nodes import Emitter, lift_1d, onnx_node_attrs

if TYPE_CHECKING:
    import onnx

    from cimc.frontend.canonical import OpContext

Pads = tuple[list[int], list[int]]


def _weights(node: onnx.NodeProto, ctx: OpContext, channels: int) -> tuple[np.ndarray, int]:
    """The constant weight ``(C, M_g, kh, kw)`` (1-D lifted) and ``group``."""
    w = ctx.const(node, 1, "weight")
    if w is None or w.ndim not in (3, 4):
        raise UnsupportedError(f"node '{node.name}' (ConvTranspose): only 1-D and 2-D weights are supported")
    group = int(onnx_node_attrs(node).get("group", 1))
    if group < 1 or w.shape[0] != channels or channels % group:
        raise InvalidModelError(f"node '{node.name}' (ConvTranspose): weight {w.shape} and group={group} do not "
                                f"fit {channels} input channels")
    return (w[:, :, None, :] if w.ndim == 3 else w), group


def _pads(node: onnx.NodeProto, spatial: tuple[int, ...], kernel: tuple[int, ...], strides: tuple[int, ...],
          dilations: tuple[int, ...], adj: tuple[int, ...]) -> Pads:
    """Begin and end pads per spatial axis (module doc: explicit, auto_pad, output_shape)."""
    a = onnx_node_attrs(node)
    auto = str(a.get("auto_pad", "NOTSET"))
    rank = len(spatial)
    natural = [(n - 1) * s + p + (k - 1) * d + 1 for n, s, p, k, d in zip(spatial, strides, adj, kernel, dilations,
                                                                           strict=True)]
    wanted = ints(a["output_shape"])[-rank:] if "output_shape" in a else None
    if wanted is None and auto in ("SAME_UPPER", "SAME_LOWER"):
        wanted = tuple(n * s for n, s in zip(spatial, strides, strict=True))
    if wanted is None:
        if auto == "VALID":
            return [0] * rank, [0] * rank
        pads = ints(a.get("pads", (0,) * 2 * rank))
        if auto != "NOTSET" or len(pads) != 2 * rank or min(pads) < 0:
            raise InvalidModelError(f"node '{node.name}' (ConvTranspose): invalid auto_pad '{auto}' or pads {pads}")
        return list(pads[:rank]), list(pads[rank:])
    if len(wanted) != rank or ("output_shape" in a and any(w > n for w, n in zip(wanted, natural, strict=True))):
        raise UnsupportedError(f"node '{node.name}' (ConvTranspose): output_shape {tuple(wanted)} larger than "
                               f"the unpadded output {tuple(natural)} is not supported")
    total = [max(n - w, 0) for n, w in zip(natural, wanted, strict=True)]
    if auto == "SAME_UPPER":
        return [t // 2 for t in total], [t - t // 2 for t in total]
    return [t - t // 2 for t in total], [t // 2 for t in total]


def _attrs_2d(node: onnx.NodeProto, rank: int, name: str, default: int) -> tuple[int, ...]:
    """A per-axis attribute, lifted to 2-D (a 1-D op's value for H is the default)."""
    values = ints(onnx_node_attrs(node).get(name, (default,) * rank))
    if len(values) != rank:
        raise InvalidModelError(f"node '{node.name}' (ConvTranspose): {name} {values} for {rank} spatial axes")
    return values if rank == 2 else (default, *values)


def _replace(node: onnx.NodeProto, ctx: OpContext) -> list[onnx.NodeProto]:
    """Zero insertion, border pads or crops, and a ``Conv`` with the flipped, regrouped kernel."""
    shape = ctx.shape(node.input[0])
    if len(shape) not in (3, 4):
        raise UnsupportedError(f"node '{node.name}' (ConvTranspose): only 1-D and 2-D inputs are supported, "
                               f"got shape {shape}")
    rank = len(shape) - 2
    w, group = _weights(node, ctx, shape[1])
    kernel = tuple(int(k) for k in w.shape[2:])
    given = onnx_node_attrs(node).get("kernel_shape")
    if given is not None and tuple(ints(given)) != kernel[-rank:]:
        raise InvalidModelError(f"node '{node.name}' (ConvTranspose): kernel_shape {given} != weight {w.shape}")
    strides, dilations = _attrs_2d(node, rank, "strides", 1), _attrs_2d(node, rank, "dilations", 1)
    adj = _attrs_2d(node, rank, "output_padding", 0)
    if min(*strides, *dilations) < 1 or min(adj) < 0 or any(p >= max(s, d) for p, s, d in zip(adj, strides,
                                                                                                dilations, strict=True)):
        raise InvalidModelError(f"node '{node.name}' (ConvTranspose): strides {strides}, dilations {dilations} "
                                f"and output_padding {adj} are invalid")
    begin, end = _pads(node, shape[2:], kernel[-rank:], strides[-rank:], dilations[-rank:], adj[-rank:])
    if rank == 1:
        begin, end = [0, *begin], [0, *end]
    return _emit(Emitter(node, ctx), shape, w, group, strides, dilations, adj, (begin, end))


def _emit(e: Emitter, shape: tuple[int, ...], w: np.ndarray, group: int, strides: tuple[int, ...],
          dilations: tuple[int, ...], adj: tuple[int, ...], pads: Pads) -> list[onnx.NodeProto]:
    node, x = e.node, e.node.input[0]
    n, c, h, wd = lift_1d(shape)
    kernel = w.shape[2:]
    if len(shape) == 3:
        x = e.reshape(x, (n, c, h, wd), "as_2d")
    if strides != (1, 1):
        sh, sw = strides
        x = e.reshape(x, (n, c, h, 1, wd, 1), "split")
        x = e.pad(x, (n, c, h, 1, wd, 1), [0] * 6 + [0, 0, 0, sh - 1, 0, sw - 1], "zeros")
        x = e.reshape(x, (n, c, h * sh, wd * sw), "zero_inserted")
    size = (n, c, h * strides[0], wd * strides[1])
    before = [(k - 1) * d - p for k, d, p in zip(kernel, dilations, pads[0], strict=True)]
    after = [(k - 1) * d - p + a - (s - 1) for k, d, p, a, s in zip(kernel, dilations, pads[1], adj, strides,
                                                                    strict=True)]
    crop_b, crop_e = [0, 0, *(max(-v, 0) for v in before)], [0, 0, *(max(-v, 0) for v in after)]
    x = e.crop(x, size, crop_b, crop_e, "crop")
    size = tuple(d - b - f for d, b, f in zip(size, crop_b, crop_e, strict=True))
    out_hw = tuple(size[2 + i] + max(before[i], 0) + max(after[i], 0) - (kernel[i] - 1) * dilations[i] for i in (0, 1))
    if min(out_hw) < 1:
        raise InvalidModelError(f"node '{node.name}' (ConvTranspose): pads {pads} leave no output")
    cin, mg = w.shape[0] // group, w.shape[1]
    flipped = w.reshape(group, cin, mg, *kernel).transpose(0, 2, 1, 3, 4).reshape(group * mg, cin, *kernel)
    weight = e.const("weight", np.ascontiguousarray(flipped[:, :, ::-1, ::-1]))
    inputs = [x, weight, *([node.input[2]] if len(node.input) > 2 and node.input[2] else [])]
    conv_pads = [max(before[0], 0), max(before[1], 0), max(after[0], 0), max(after[1], 0)]
    out_shape = (n, group * mg, *out_hw)
    inferred = e.ctx.shapes.get(node.output[0])
    if inferred is not None and lift_1d(inferred) != out_shape:
        raise InvalidModelError(f"node '{node.name}' (ConvTranspose): the attributes give output shape "
                                f"{out_shape[:2] + out_hw[-len(shape) + 2:]}, shape inference {inferred}")
    last = len(shape) == 4
    y = e.emit("Conv", inputs, out_shape, "conv", out=node.output[0] if last else None, group=group,
               kernel_shape=list(kernel), strides=[1, 1], dilations=list(dilations), pads=conv_pads)
    if not last:
        e.reshape(y, (n, group * mg, out_hw[1]), "as_1d", out=node.output[0])
    return e.nodes


_WHY = "imported as zero insertion and a Conv (a CIM layer)"

DEFS = (OpDef("ConvTranspose", (2, 3), (), replace=_replace,
              **{concern: Unsupported("ConvTranspose", concern, _WHY) for concern in CONCERNS}),)  # type: ignore[arg-type]
