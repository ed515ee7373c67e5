"""ConvTranspose (1-D or 2-D, grouped, any stride, pads, output_padding, dilation, auto_pad,
output_shape): ``y[n, g·M_g + m, o] = b[g·M_g + m] + Σ_{c ∈ group g, i : o = h·s − p_b + i·d} x[n, c, h] · W[c, m, i]``
(per spatial axis; ``W`` is ``(C, M_g, k…)``).

It is imported (``replace``) as one ordinary ``Conv`` — a CIM layer, weight-stationary on the
macro, named as the ConvTranspose — between digital ops that only move data (Reshape, Pad,
Slice, Transpose: exact in every executor). Two exact lowerings; ``choose`` takes sub-pixel
whenever there is no dilation and its kernel holds at most 4× the weights (fewer cycles, see
``docs/architecture.md``, "ConvTranspose on the macro", and ``scripts/convtranspose_cost.py``);
zero insertion refuses (``ResourceLimitError``) an input it would grow to more than 16× the
node's input or output, which the import's memory budget has checked:

* ``sub_pixel`` (dilation 1): with ``q = o + p_b = m·s + φ``, output phase ``φ`` is
  ``Σ_t x[m − t] · W[φ + t·s]``: one conv over the input with ``M·s_h·s_w`` outputs (channel
  ``(g·M_g + m)·s_h·s_w + φ_h·s_w + φ_w``), kernel ``⌈k/s⌉`` (taps past ``k`` zero), the bias
  repeated per phase; then a pixel shuffle (Reshape ``(N, M, s_h, s_w, H', W')``, Transpose
  ``(0, 1, 4, 2, 5, 3)``, Reshape) and a crop to ``[p_b, p_b + H_out)``.
* ``zero_insertion`` (any dilation): ``Reshape (N, C, H, 1, W, 1)`` → ``Pad`` ``s − 1`` zeros after
  axes 3 and 5 → ``Reshape (N, C, H·s_h, W·s_w)``; conv pads ``B = (k − 1)·d − p_b`` before and
  ``E = (k − 1)·d − p_e + a − (s − 1)`` after (``a`` = output_padding; the last step's ``s − 1``
  zeros are already there), a negative one crops the input (``Slice``); the conv has stride 1,
  dilation ``d``, the same groups and bias, ``W'[g·M_g + m, c, i, j] = W[g·C_g + c, m, k_h − 1 − i,
  k_w − 1 − j]`` (kernel flipped, in/out channels swapped per group).

``H_out = (H − 1)·s + a + (k − 1)·d + 1 − p_b − p_e`` as ONNX defines it. With ``output_shape``
(or ``auto_pad`` SAME_*, which asks for ``H·s``) the total padding
``t = (H − 1)·s + a + (k − 1)·d + 1 − H_out`` (at least 0) is split as ONNX and onnxruntime split
it: SAME_UPPER puts ``⌊t/2⌋`` before, every other mode ``⌈t/2⌉``. An ``output_shape`` larger than
the un-padded output is unsupported; where onnx's shape inference and these rules disagree
(SAME_* with output_padding) the import refuses the node. A 1-D ConvTranspose is the 2-D one over
``(N, C, 1, L)``. The ConvTranspose op itself never reaches the IR: every concern is the
imported ops'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cimc.errors import InvalidModelError, ResourceLimitError, UnsupportedError
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


@dataclass(frozen=True)
class Geometry:
    """A ConvTranspose lifted to 2-D: input ``(N, C, H, W)``, weight ``(C, M_g, kh, kw)``,
    ``group``, ``strides``, ``dilations``, output padding ``adj``, ``pads`` (begins, ends), bias
    input name (or ``""``) and the output ``(H_out, W_out)``."""

    shape: tuple[int, int, int, int]
    w: np.ndarray
    group: int
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    adj: tuple[int, ...]
    pads: Pads
    bias: str

    @property
    def out_hw(self) -> tuple[int, int]:
        """``(H − 1)·s + a + (k − 1)·d + 1 − p_b − p_e`` per axis."""
        h, w = ((n - 1) * s + a + (k - 1) * d + 1 - b - e for n, s, a, k, d, b, e in
                zip(self.shape[2:], self.strides, self.adj, self.w.shape[2:], self.dilations, *self.pads, strict=True))
        return h, w

    @property
    def cout(self) -> int:
        return self.group * int(self.w.shape[1])

    @property
    def sub_pixel_weights(self) -> int:
        """Weights of the sub-pixel conv: ``M·s_h·s_w · C_g · ⌈k_h/s_h⌉·⌈k_w/s_w⌉``."""
        taps = [-(-k // s) for k, s in zip(self.w.shape[2:], self.strides, strict=True)]
        return self.cout * self.strides[0] * self.strides[1] * int(self.w.shape[0]) // self.group * taps[0] * taps[1]


def _geometry(node: onnx.NodeProto, ctx: OpContext) -> Geometry:
    """The node's attributes checked and resolved (module doc)."""
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
    too_big = any(p >= max(s, d) for p, s, d in zip(adj, strides, dilations, strict=True))
    if min(*strides, *dilations) < 1 or min(adj) < 0 or too_big:
        raise InvalidModelError(f"node '{node.name}' (ConvTranspose): strides {strides}, dilations {dilations} "
                                f"and output_padding {adj} are invalid")
    begin, end = _pads(node, shape[2:], kernel[-rank:], strides[-rank:], dilations[-rank:], adj[-rank:])
    if rank == 1:
        begin, end = [0, *begin], [0, *end]
    bias = node.input[2] if len(node.input) > 2 else ""
    g = Geometry(lift_1d(shape), w, group, strides, dilations, adj, (begin, end), bias)  # type: ignore[arg-type]
    inferred = ctx.shapes.get(node.output[0])
    if min(g.out_hw) < 1 or (inferred is not None and lift_1d(inferred)[2:] != g.out_hw):
        raise InvalidModelError(f"node '{node.name}' (ConvTranspose): the attributes give output size "
                                f"{g.out_hw[-rank:]}, shape inference {inferred}")
    return g


def choose(g: Geometry) -> str:
    """The lowering: ``sub_pixel`` (fewer cycles) without dilation, unless its kernel would hold
    more than 4× the weights (a stride far above the kernel: mostly zero taps); else
    ``zero_insertion``."""
    fits = g.sub_pixel_weights <= 4 * g.w.size
    return "sub_pixel" if g.dilations == (1, 1) and fits else "zero_insertion"


def _replace(node: onnx.NodeProto, ctx: OpContext) -> list[onnx.NodeProto]:
    """The ConvTranspose as digital data movement around one ``Conv`` (module doc)."""
    g = _geometry(node, ctx)
    e = Emitter(node, ctx)
    x = node.input[0]
    rank = len(ctx.shape(x)) - 2
    if rank == 1:
        x = e.reshape(x, g.shape, "as_2d")
    out = node.output[0] if rank == 2 else None
    y = (sub_pixel if choose(g) == "sub_pixel" else zero_insertion)(e, g, x, out)
    if rank == 1:
        e.reshape(y, (g.shape[0], g.cout, g.out_hw[1]), "as_1d", out=node.output[0])
    return e.nodes


def _conv(e: Emitter, x: str, weight: np.ndarray, bias: str, shape: tuple[int, ...], pads: list[int],
          group: int, dilations: tuple[int, ...], out: str | None) -> str:
    inputs = [x, e.const("weight", np.ascontiguousarray(weight)), *([bias] if bias else [])]
    return e.emit("Conv", inputs, shape, "conv", out=out, main=True, group=group, kernel_shape=list(weight.shape[2:]),
                  strides=[1, 1], dilations=list(dilations), pads=pads)


def _pad_or_crop(e: Emitter, x: str, shape: tuple[int, ...], before: list[int], after: list[int]
                 ) -> tuple[str, tuple[int, ...], list[int]]:
    """Negative border pads crop ``x`` (Slice); the rest are the conv's pads ``(t, l, b, r)``."""
    crop_b, crop_e = [0, 0, *(max(-v, 0) for v in before)], [0, 0, *(max(-v, 0) for v in after)]
    x = e.crop(x, shape, crop_b, crop_e, "crop")
    shape = tuple(d - b - f for d, b, f in zip(shape, crop_b, crop_e, strict=True))
    return x, shape, [max(before[0], 0), max(before[1], 0), max(after[0], 0), max(after[1], 0)]


def zero_insertion(e: Emitter, g: Geometry, x: str, out: str | None) -> str:
    """Lowering (a): ``s − 1`` zeros between pixels, then a stride-1 conv with the flipped kernel."""
    n, c, h, wd = g.shape
    kernel = g.w.shape[2:]
    sh, sw = g.strides
    declared = max(n * c * h * wd, n * g.cout * g.out_hw[0] * g.out_hw[1])  # within the import's memory budget
    if n * c * h * sh * wd * sw > 16 * declared:
        raise ResourceLimitError(f"node '{e.node.name}' (ConvTranspose): its zero-inserted input would hold "
                                 f"{n * c * h * sh * wd * sw} elements, more than 16× its input or output")
    if (sh, sw) != (1, 1):
        x = e.reshape(x, (n, c, h, 1, wd, 1), "split")
        x = e.pad(x, (n, c, h, 1, wd, 1), [0] * 6 + [0, 0, 0, sh - 1, 0, sw - 1], "zeros")
        x = e.reshape(x, (n, c, h * sh, wd * sw), "zero_inserted")
    before = [(k - 1) * d - p for k, d, p in zip(kernel, g.dilations, g.pads[0], strict=True)]
    after = [(k - 1) * d - p + a - (s - 1) for k, d, p, a, s in zip(kernel, g.dilations, g.pads[1], g.adj, g.strides,
                                                                    strict=True)]
    x, _, pads = _pad_or_crop(e, x, (n, c, h * sh, wd * sw), before, after)
    cin, mg = c // g.group, g.w.shape[1]
    flipped = g.w.reshape(g.group, cin, mg, *kernel).transpose(0, 2, 1, 3, 4).reshape(g.cout, cin, *kernel)
    return _conv(e, x, flipped[:, :, ::-1, ::-1], g.bias, (n, g.cout, *g.out_hw), pads, g.group, g.dilations, out)


def sub_pixel(e: Emitter, g: Geometry, x: str, out: str | None) -> str:
    """Lowering (b), for dilation 1: one conv on the input with ``M·s_h·s_w`` outputs and kernel
    ``⌈k/s⌉`` (output phase ``φ`` of ``q = o + p_b = m·s + φ`` is ``Σ_t x[m − t]·W[φ + t·s]``), then
    a pixel shuffle (Reshape, Transpose, Reshape) and a crop to ``[p_b, p_b + H_out)``."""
    n, c, h, wd = g.shape
    s, kernel = g.strides, g.w.shape[2:]
    taps = [-(-k // st) for k, st in zip(kernel, s, strict=True)]
    first = [p // st for p, st in zip(g.pads[0], s, strict=True)]
    last = [(p + o - 1) // st for p, o, st in zip(g.pads[0], g.out_hw, s, strict=True)]
    hm = [b - a + 1 for a, b in zip(first, last, strict=True)]
    before = [t - 1 - f for t, f in zip(taps, first, strict=True)]
    after = [m + t - 1 - (size + b) for m, t, size, b in zip(hm, taps, (h, wd), before, strict=True)]
    x, _, pads = _pad_or_crop(e, x, g.shape, before, after)
    cin, mg = c // g.group, g.w.shape[1]
    w = np.pad(g.w, ((0, 0), (0, 0), (0, taps[0] * s[0] - kernel[0]), (0, taps[1] * s[1] - kernel[1])))
    w = w.reshape(g.group, cin, mg, taps[0], s[0], taps[1], s[1])[:, :, :, ::-1, :, ::-1, :]
    w = w.transpose(0, 2, 4, 6, 1, 3, 5).reshape(g.cout * s[0] * s[1], cin, *taps)
    b = e.ctx.const(e.node, 2, "bias")
    bias = "" if b is None else e.const("bias", np.repeat(b, s[0] * s[1]))
    phases = (n, g.cout * s[0] * s[1], *hm)
    full = (n, g.cout, hm[0] * s[0], hm[1] * s[1])
    offset = [p - f * st for p, f, st in zip(g.pads[0], first, s, strict=True)]
    ends = [full[2 + i] - offset[i] - g.out_hw[i] for i in (0, 1)]
    final = None if any(offset) or any(ends) else out
    if tuple(s) == (1, 1):
        y = _conv(e, x, w, bias, phases, pads, g.group, (1, 1), final)
    else:
        y = _conv(e, x, w, bias, phases, pads, g.group, (1, 1), None)
        y = e.reshape(y, (n, g.cout, s[0], s[1], *hm), "phases")
        y = e.emit("Transpose", [y], (n, g.cout, hm[0], s[0], hm[1], s[1]), "shuffle", perm=[0, 1, 4, 2, 5, 3])
        y = e.reshape(y, full, "interleaved", out=final)
    return y if final is not None else e.crop(y, full, [0, 0, *offset], [0, 0, *ends], "crop_out", out=out)


_WHY = "imported as a Conv (a CIM layer) between data-movement ops"

DEFS = (OpDef("ConvTranspose", (2, 3), (), replace=_replace,
              **{concern: Unsupported("ConvTranspose", concern, _WHY) for concern in CONCERNS}),)  # type: ignore[arg-type]
