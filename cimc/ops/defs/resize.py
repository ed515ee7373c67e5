"""Resize (opset 11–19; Upsample-7/9 and Resize-10 reach it through the opset upgrade) of the
spatial axes of an NCHW tensor, computed exactly as onnxruntime computes it, in float32.

Per resized axis of input length ``L``, output length ``R`` and scale ``s`` (the given scale,
or ``R / L`` in float32 when sizes are given), output index ``o`` reads the input coordinate

* ``half_pixel``: ``(o + ½) / s − ½``;  ``pytorch_half_pixel``: the same, 0 when ``R = 1``;
* ``align_corners``: ``o · (L − 1) / (R − 1)`` (0 when ``R = 1``);  ``asymmetric``: ``o / s``;
* ``tf_half_pixel_for_nn``: ``(o + ½) / s``;  (an axis with ``s = 1`` reads ``o``).

``nearest``: ``y = x[i]`` with ``i`` the coordinate rounded by ``nearest_mode``
(``round_prefer_floor`` ``⌈c − ½⌉``, ``round_prefer_ceil`` ``⌊c + ½⌋``, ``floor``, ``ceil``), clipped
to ``[0, L − 1]``. ``linear`` (bilinear): ``c`` clipped to ``[0, L − 1]``, ``i₁ = ⌊c⌋``,
``i₂ = min(i₁ + 1, L − 1)``, weights ``d₁ = |c − i₁|``, ``d₂ = |c − i₂|`` (both ½ when ``i₁ = i₂``),
``y = d₂ʸd₂ˣ·x₁₁ + d₂ʸd₁ˣ·x₁₂ + d₁ʸd₂ˣ·x₂₁ + d₁ʸd₁ˣ·x₂₂`` summed in that order in float32 —
onnxruntime's order, so the kernel equals onnxruntime bit for bit (tested).

Canonical attrs: ``mode``, ``coordinate_transformation_mode``, ``nearest_mode``, ``scales``
(float, per axis), ``sizes`` (the output shape) and ``given`` (``scales`` or ``sizes``: which
operand the exporter writes back, so onnxruntime derives the same scales; exported sizes take N
and C from the input's shape, so the exported model runs any batch). Unsupported, each
named: mode ``cubic``, ``antialias``, ``exclude_outside``, ``tf_crop_and_resize``,
``half_pixel_symmetric``, ``keep_aspect_ratio_policy`` other than ``stretch``, inputs that are not
4-D, resizing N or C, computed scales or sizes. The torch forward gathers with the same
indices and weights (differentiable in ``x``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.errors import InvalidModelError, UnsupportedError
from cimc.ops.base import (
    CONCERNS,
    Attrs,
    OpDef,
    Shape,
    Unsupported,
    always,
    attrs_except,
    channel_identity,
    never,
    sign_of_inputs,
)
from cimc.ops.canon import axis, ints

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext
    from cimc.frontend.onnx_export import ExportBuilder
    from cimc.ir.node import Node
    from cimc.morph.channels_pass import RewriteContext

COORDINATES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn")
NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
_HINT = "export with mode nearest or linear (bilinear), no antialias, on an NCHW tensor"


def _refuse(node: onnx.NodeProto, what: str) -> UnsupportedError:
    return UnsupportedError(f"node '{node.name}' (Resize): {what} is not supported", hint=_HINT)


def _check_modes(node: onnx.NodeProto, a: Attrs) -> tuple[str, str, str]:
    mode = str(a.get("mode", "nearest"))
    ctm = str(a.get("coordinate_transformation_mode", "half_pixel"))
    nearest = str(a.get("nearest_mode", "round_prefer_floor"))
    if mode not in ("nearest", "linear"):
        raise _refuse(node, f"mode '{mode}'")
    if ctm not in COORDINATES:
        raise _refuse(node, f"coordinate_transformation_mode '{ctm}'")
    if nearest not in NEAREST:
        raise _refuse(node, f"nearest_mode '{nearest}'")
    for name, default in (("antialias", 0), ("exclude_outside", 0)):
        if int(a.get(name, default)):
            raise _refuse(node, f"{name}={a[name]}")
    if str(a.get("keep_aspect_ratio_policy", "stretch")) != "stretch":
        raise _refuse(node, f"keep_aspect_ratio_policy '{a['keep_aspect_ratio_policy']}'")
    return mode, ctm, nearest


def _full(node: onnx.NodeProto, values: np.ndarray, axes: list[int], rank: int, fill: float) -> list[float]:
    """Per-axis values over every axis (``axes`` of opset 18 name the given ones)."""
    flat = [float(v) for v in np.asarray(values).reshape(-1)]
    if len(flat) != len(axes):
        raise InvalidModelError(f"node '{node.name}' (Resize): {len(flat)} values for {len(axes)} axes")
    out = [fill] * rank
    for ax, v in zip(axes, flat, strict=True):
        out[ax] = v
    return out


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    shape = ctx.shape(node.input[0])
    mode, ctm, nearest = _check_modes(node, a)
    if len(shape) != 4:
        raise _refuse(node, f"a {len(shape)}-D input (shape {shape})")
    axes = [axis(node, v, 4) for v in ints(a["axes"])] if "axes" in a else list(range(4))
    scales, sizes = ctx.const(node, 2, "scales"), ctx.const(node, 3, "sizes")
    if sizes is not None and sizes.size:
        out = [int(v) for v in _full(node, sizes, axes, 4, 0.0)]
        out = [d if ax not in axes else o for ax, (d, o) in enumerate(zip(shape, out, strict=True))]
        given = "sizes"
        f32 = [np.float32(o) / np.float32(d) if d else np.float32(1) for o, d in zip(out, shape, strict=True)]
    elif scales is not None and scales.size:
        f32 = [np.float32(v) for v in _full(node, scales, axes, 4, 1.0)]
        out = [int(np.float32(s) * np.float32(d)) for s, d in zip(f32, shape, strict=True)]
        given = "scales"
    else:
        raise InvalidModelError(f"node '{node.name}' (Resize) has neither scales nor sizes")
    if out[:2] != list(shape[:2]):
        raise _refuse(node, f"resizing {tuple(shape)} to {tuple(out)} (only H and W may change)")
    if min(out) < 1 or min(f32) <= 0:
        raise InvalidModelError(f"node '{node.name}' (Resize): {tuple(shape)} resized to an empty {tuple(out)}")
    return [node.input[0]], {"mode": mode, "coordinate_transformation_mode": ctm, "nearest_mode": nearest,
                             "scales": tuple(float(s) for s in f32), "sizes": tuple(out), "given": given}


def _shape(shapes: list[Shape], a: Attrs) -> Shape:
    if len(shapes[0]) != 4 or tuple(shapes[0][:2]) != tuple(a["sizes"][:2]):
        raise InvalidModelError(f"Resize of shape {shapes[0]} to {a['sizes']}: only H and W of NCHW change")
    return tuple(a["sizes"])


def coordinates(out: int, length: int, scale: float, ctm: str) -> np.ndarray:
    """Input coordinate (float32) read by each output index of one axis (module doc)."""
    o = np.arange(out, dtype=np.float32)
    s = np.float32(scale)
    half = np.float32(0.5)
    if s == 1:
        return o
    if ctm == "align_corners":
        return o * np.float32(length - 1) / np.float32(out - 1) if out > 1 else np.zeros(out, np.float32)
    if ctm == "asymmetric":
        return o / s
    if ctm == "tf_half_pixel_for_nn":
        return (o + half) / s
    if ctm == "pytorch_half_pixel" and out <= 1:
        return np.zeros(out, np.float32)
    return (o + half) / s - half


def nearest_index(c: np.ndarray, length: int, mode: str) -> np.ndarray:
    """``c`` rounded by ``nearest_mode`` (in float64, exact) and clipped to ``[0, length − 1]``."""
    wide = c.astype(np.float64)
    if mode == "round_prefer_floor":
        i = np.ceil(wide - 0.5)
    elif mode == "round_prefer_ceil":  # a coordinate one float32 step below a half rounds up, as in onnxruntime
        i = np.floor(np.nextafter(c.astype(np.float32), np.float32(np.inf)).astype(np.float64) + 0.5)
    else:
        i = np.floor(wide) if mode == "floor" else np.ceil(wide)
    return np.clip(i, 0, length - 1).astype(np.int64)


def linear_taps(c: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(i₁, i₂, d₁, d₂)`` of one axis (module doc), weights in float32."""
    c = np.clip(c, np.float32(0), np.float32(length - 1))
    i1 = np.minimum(c.astype(np.int64), length - 1)
    i2 = np.minimum(i1 + 1, length - 1)
    d1, d2 = np.abs(c - i1.astype(np.float32)), np.abs(c - i2.astype(np.float32))
    same = i1 == i2
    d1[same], d2[same] = np.float32(0.5), np.float32(0.5)
    return i1, i2, d1, d2


def _axes(shape: Shape, a: Attrs) -> list[np.ndarray]:
    """Per spatial axis: the coordinates of the output indices."""
    return [coordinates(a["sizes"][ax], shape[ax], a["scales"][ax], a["coordinate_transformation_mode"])
            for ax in (2, 3)]


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    x = ins[0]
    (h, w), (cy, cx) = x.shape[2:], _axes(x.shape, a)
    if a["mode"] == "nearest":
        iy, ix = nearest_index(cy, h, a["nearest_mode"]), nearest_index(cx, w, a["nearest_mode"])
        return np.ascontiguousarray(x[:, :, iy][:, :, :, ix])
    y1, y2, dy1, dy2 = linear_taps(cy, h)
    x1, x2, dx1, dx2 = linear_taps(cx, w)
    rows1, rows2 = x[:, :, y1], x[:, :, y2]
    dy1, dy2 = dy1[:, None], dy2[:, None]
    out = (dx2 * dy2) * rows1[..., x1] + (dx1 * dy2) * rows1[..., x2]
    out = out + (dx2 * dy1) * rows2[..., x1]
    out = out + (dx1 * dy1) * rows2[..., x2]
    return np.ascontiguousarray(out, dtype=np.float32)


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    """The kernel's gathers and weighted sum in torch (differentiable in ``x``)."""
    import torch

    x = ins[0]
    (h, w), (cy, cx) = tuple(x.shape[2:]), _axes(tuple(x.shape), a)

    def t(v: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(v).to(x.device)

    if a["mode"] == "nearest":
        iy, ix = nearest_index(cy, h, a["nearest_mode"]), nearest_index(cx, w, a["nearest_mode"])
        return x.index_select(2, t(iy)).index_select(3, t(ix))
    y1, y2, dy1, dy2 = linear_taps(cy, h)
    x1, x2, dx1, dx2 = linear_taps(cx, w)
    rows1, rows2 = x.index_select(2, t(y1)), x.index_select(2, t(y2))
    wy1, wy2, wx1, wx2 = t(dy1)[:, None], t(dy2)[:, None], t(dx1), t(dx2)
    out = (wx2 * wy2) * rows1.index_select(3, t(x1)) + (wx1 * wy2) * rows1.index_select(3, t(x2))
    out = out + (wx2 * wy1) * rows2.index_select(3, t(x1))
    return out + (wx1 * wy1) * rows2.index_select(3, t(x2))


def _rewrite(c: RewriteContext, node: Node) -> None:
    """Morph changed the channels: ``sizes[1]`` is the new channel count."""
    ymap = c.map(node.outputs[0])
    if ymap is not None:
        sizes = list(node.attrs["sizes"])
        sizes[1] = len(ymap)
        node.attrs["sizes"] = tuple(sizes)


def _export(b: ExportBuilder, node: Node) -> tuple[list[str], Attrs]:
    """Opset 17 Resize: ``roi`` absent, then ``scales`` (float32) or ``sizes`` (int64), as given.
    Sizes are ``Concat(Shape(x)[0:2], [H_out, W_out])``, so the exported model runs any batch."""
    from onnx import helper

    attrs = attrs_except(node, "scales", "sizes", "given")
    if node.attrs["given"] == "scales":
        return ["", b.constant(node, "scales", np.array(node.attrs["scales"], np.float32))], attrs
    names = [b.fresh(f"{node.name}_{tag}") for tag in ("batch_channels", "sizes")]
    hw = b.constant(node, "hw", np.array(node.attrs["sizes"][2:], np.int64))
    b.nodes.append(helper.make_node("Shape", [node.inputs[0]], [names[0]], name=names[0], end=2))
    b.nodes.append(helper.make_node("Concat", [names[0], hw], [names[1]], name=names[1], axis=0))
    return ["", "", names[1]], attrs


def _upsample(node: onnx.NodeProto, ctx: OpContext) -> list[onnx.NodeProto]:
    """An Upsample left after the opset upgrade (which turns every Upsample of an opset < 13
    model into a Resize) is not an op of the model's opset."""
    raise InvalidModelError(f"node '{node.name}' (Upsample): Upsample is deprecated since opset 10; "
                            "cimc imports it from models of opset 7 to 12 (as Resize)")


_WHY = "the opset upgrade turns Upsample into Resize (asymmetric coordinates)"

DEFS = (OpDef("Upsample", (1, 2), (), replace=_upsample,
              **{concern: Unsupported("Upsample", concern, _WHY) for concern in CONCERNS}),  # type: ignore[arg-type]
        OpDef("Resize", (1, 1), ("mode", "coordinate_transformation_mode", "nearest_mode", "scales", "sizes", "given"),
              canonicalize=_canonicalize, shape=_shape, kernel=_kernel, torch=_torch, channels=channel_identity,
              rewrite=_rewrite, export=_export, nonnegative=sign_of_inputs,
              homogeneous=always, mixes_batch=never),)
