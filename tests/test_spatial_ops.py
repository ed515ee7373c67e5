"""The spatial ops against onnxruntime over many attribute combinations.

* ConvTranspose (imported as a Conv between data movement, both lowerings): the interpreter and
  the exported graph match onnxruntime (float tolerance: the conv sums in another order); the Conv
  is a CIM layer; a compiled ConvTranspose runs bit-exact in emulator, onnxruntime(model.cim.onnx)
  and the numpy reference.
* Resize (nearest and linear, every supported coordinate mode, scales or sizes, opsets 11–19) and
  Upsample-7/9 / Resize-10: the kernel equals onnxruntime **bit for bit**, for linear too (it
  computes in onnxruntime's float32 order), and so does the exported graph.
* Unsupported Resize attributes are refused with an ``UnsupportedError`` naming them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import onnx
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from onnx import helper

from cimc.api import compile_model
from cimc.check.validate import validate_build
from cimc.errors import CimcError, ResourceLimitError, UnsupportedError
from cimc.frontend import export_onnx, import_onnx
from cimc.ir.annotations import CimLayer
from cimc.ir.interpreter import run
from cimc.macro import MacroSpec
from cimc.morph.channel_groups import analyze
from cimc.morph.channels_pass import MorphChannels
from cimc.morph.plan import identity_plan, ratio_widths, widths_to_plan
from cimc.ops.defs import conv_transpose
from cimc.passes.manager import PassContext, run_passes
from tests.cim_helpers import assert_three_way
from tests.onnx_builders import make_model, rand, run_ort

I64 = np.int64
LOWERINGS = ("zero_insertion", "sub_pixel")
DATA_MOVEMENT = {"Reshape", "Pad", "Slice", "Transpose"}


def _import(model: onnx.ModelProto, lowering: str) -> Any:
    """``import_onnx`` with the ConvTranspose lowering forced (sub-pixel only where it applies:
    without dilation)."""
    def choose(g: conv_transpose.Geometry) -> str:
        return lowering if g.dilations == (1, 1) else "zero_insertion"

    with mock.patch.object(conv_transpose, "choose", choose):
        return import_onnx(model)


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray | None:
    """onnxruntime's output, or ``None`` where it refuses the model or warns about its shape."""
    try:
        y = run_ort(model, {"x": x})["y"]
    except Exception:  # onnxruntime refuses some attribute combinations outright
        return None
    inferred = onnx.shape_inference.infer_shapes(model).graph.output[0].type.tensor_type.shape
    dims = tuple(d.dim_value for d in inferred.dim)
    return y if dims == y.shape else None  # onnx's shape inference and onnxruntime disagree: not importable


@st.composite
def _convtranspose(draw: st.DrawFn) -> tuple[onnx.ModelProto, np.ndarray]:
    rank = draw(st.integers(1, 2))
    group = draw(st.integers(1, 2))
    cin, mg = group * draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kernel = draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank))
    strides = draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))
    dilations = draw(st.lists(st.integers(1, 2), min_size=rank, max_size=rank))
    adj = [draw(st.integers(0, max(s, d) - 1)) for s, d in zip(strides, dilations, strict=True)]
    size = draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank))
    attrs: dict[str, Any] = {"strides": strides, "dilations": dilations, "group": group, "output_padding": adj}
    how = draw(st.sampled_from(["pads", "auto_pad", "output_shape", "default"]))
    if how == "pads":
        attrs["pads"] = draw(st.lists(st.integers(0, 3), min_size=2 * rank, max_size=2 * rank))
    elif how == "auto_pad":
        attrs["auto_pad"] = draw(st.sampled_from(["SAME_UPPER", "SAME_LOWER", "VALID"]))
    elif how == "output_shape":
        natural = [(n - 1) * s + a + (k - 1) * d + 1 for n, s, a, k, d in zip(size, strides, adj, kernel, dilations,
                                                                               strict=True)]
        attrs["output_shape"] = [max(1, v - draw(st.integers(0, 2))) for v in natural]
    seed = draw(st.integers(0, 99))
    inits = {"w": rand(cin, mg, *kernel, seed=seed)}
    if draw(st.booleans()):
        inits["b"] = rand(group * mg, seed=seed + 1)
    node = helper.make_node("ConvTranspose", ["x", *inits], ["y"], name="up", **attrs)
    model = make_model([node], {"x": (2, cin, *size)}, ["y"], inits)
    return model, rand(2, cin, *size, seed=seed + 2)


@settings(max_examples=80, deadline=None)
@given(case=_convtranspose(), lowering=st.sampled_from(LOWERINGS))
def test_convtranspose_matches_onnxruntime(case: tuple[onnx.ModelProto, np.ndarray], lowering: str) -> None:
    """Any stride, pads, output_padding, groups, dilation, auto_pad or output_shape, 1-D or 2-D:
    interpreter and exported graph == onnxruntime (``1e-5`` relative)."""
    model, x = case
    want = _ort(model, x)
    assume(want is not None)
    graph = _import(model, lowering)
    assert {n.op for n in graph.nodes} <= DATA_MOVEMENT | {"Conv"}
    assert [n.name for n in graph.nodes if n.op == "Conv"] == ["up"]
    got = run(graph, {"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * (1 + float(np.abs(want).max())))
    np.testing.assert_allclose(run_ort(export_onnx(graph), {"x": x})["y"], want, rtol=1e-5,
                               atol=1e-5 * (1 + float(np.abs(want).max())))


def _up_model(**attrs: Any) -> onnx.ModelProto:
    """x → Conv 3×3 → ConvTranspose → Relu → Resize ×2 (linear, scales) → Resize to 20×15 (nearest,
    sizes) → Conv 1×1."""
    inits = {"w0": rand(8, 3, 3, 3, seed=1), "b0": rand(8, seed=2), "wt": rand(8, 6, 3, 3, seed=3),
             "bt": rand(6, seed=4), "scales": np.array([1, 1, 2, 2], np.float32),
             "sizes": np.array([1, 6, 20, 15], I64), "w1": rand(4, 6, 1, 1, seed=5)}
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="c0", pads=[1, 1, 1, 1]),
             helper.make_node("ConvTranspose", ["c0", "wt", "bt"], ["up"], name="up", **attrs),
             helper.make_node("Relu", ["up"], ["r"], name="relu"),
             helper.make_node("Resize", ["r", "", "scales"], ["big"], name="resize", mode="linear"),
             helper.make_node("Resize", ["big", "", "", "sizes"], ["fit"], name="fit"),
             helper.make_node("Conv", ["fit", "w1"], ["y"], name="c1")]
    return make_model(nodes, {"x": (1, 3, 6, 6)}, ["y"], inits)


@pytest.mark.parametrize("lowering", LOWERINGS)
@pytest.mark.parametrize("attrs", [{"strides": [2, 2]},
                                   {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]},
                                   {"strides": [3, 2], "dilations": [1, 2], "pads": [0, 1, 2, 0]}],
                         ids=["s2", "s2_p1_op1", "s32_d2_asym"])
def test_convtranspose_compiles_to_a_cim_layer(lowering: str, attrs: dict[str, Any], tmp_path: Path) -> None:
    """The ConvTranspose's Conv is selected as a CIM layer; compile + validate; emulator ==
    onnxruntime(model.cim.onnx) == numpy reference, bit for bit, on a batch of two (the Resize
    by sizes exports its N from the input's shape)."""
    model = _up_model(**attrs)
    path = tmp_path / "up.onnx"
    onnx.save(model, path)
    graph = _import(model, lowering)
    computing = [n.op for n in graph.nodes if n.op not in DATA_MOVEMENT]
    assert computing == ["Conv", "Conv", "Relu", "Resize", "Resize", "Conv"]
    with mock.patch.object(conv_transpose, "choose", lambda g: lowering if g.dilations == (1, 1) else "zero_insertion"):
        result = compile_model(path, tmp_path / "build", calib_size=4)
    assert validate_build(result.out_dir).ok
    assert CimLayer in result.graph.node("up").ann
    assert_three_way(result.out_dir, result.graph, rand(2, 3, 6, 6, seed=7))


# -- Resize ---------------------------------------------------------------------------------------
COORDINATES = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn"]
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
SCALES = [0.5, 0.6, 0.75, 1.0, 1.5, 1.7, 2.0, 2.5, 3.0]


def _resize_model(h: int, w: int, opset: int, how: str, values: list[float], axes: bool,
                  **attrs: Any) -> onnx.ModelProto:
    if how == "scales":
        given = np.array(values if axes else [1, 1, *values], np.float32)
        names = ["x", "", "v"]
    else:
        given = np.array(values if axes else [1, 3, *values], I64)
        names = ["x", "", "", "v"]
    if axes:
        attrs["axes"] = [2, 3]
    node = helper.make_node("Resize", names, ["y"], name="resize", **attrs)
    return make_model([node], {"x": (1, 3, h, w)}, ["y"], {"v": given}, opset=opset)


@settings(max_examples=120, deadline=None)
@given(mode=st.sampled_from(["nearest", "linear"]), ctm=st.sampled_from(COORDINATES), nearest=st.sampled_from(NEAREST),
       h=st.integers(1, 8), w=st.integers(1, 8), opset=st.sampled_from([13, 18, 19]),
       how=st.sampled_from(["scales", "sizes"]), scales=st.lists(st.sampled_from(SCALES), min_size=2, max_size=2),
       sizes=st.lists(st.integers(1, 12), min_size=2, max_size=2), axes=st.booleans(), seed=st.integers(0, 9))
def test_resize_is_bit_exact(mode: str, ctm: str, nearest: str, h: int, w: int, opset: int, how: str,
                             scales: list[float], sizes: list[int], axes: bool, seed: int) -> None:
    """Kernel and exported graph == onnxruntime exactly (nearest and linear)."""
    values = scales if how == "scales" else [float(v) for v in sizes]
    if how == "sizes":
        values = [int(v) for v in values]  # type: ignore[misc]
    elif min(int(np.float32(s) * np.float32(d)) for s, d in zip(scales, (h, w), strict=True)) < 1:
        return  # an empty output
    model = _resize_model(h, w, opset, how, values, axes and opset >= 18, mode=mode,
                          coordinate_transformation_mode=ctm, nearest_mode=nearest)
    x = rand(1, 3, h, w, seed=seed)
    want = run_ort(model, {"x": x})["y"]
    graph = import_onnx(model)
    np.testing.assert_array_equal(run(graph, {"x": x})["y"], want)
    np.testing.assert_array_equal(run_ort(export_onnx(graph), {"x": x})["y"], want)


@pytest.mark.parametrize("opset,op,mode,scales", [
    (7, "Upsample", "nearest", [1.0, 1.0, 2.0, 3.0]), (7, "Upsample", "linear", [1.0, 1.0, 1.5, 2.0]),
    (9, "Upsample", "nearest", [1.0, 1.0, 1.5, 2.5]), (9, "Upsample", "linear", [1.0, 1.0, 2.0, 2.0]),
    (10, "Resize", "linear", [1.0, 1.0, 0.5, 1.5]), (10, "Resize", "nearest", [1.0, 1.0, 3.0, 1.0]),
    (11, "Resize", "linear", [1.0, 1.0, 1.7, 0.6]), (11, "Resize", "nearest", [1.0, 1.0, 0.5, 2.5])])
def test_legacy_opsets_keep_their_coordinates(opset: int, op: str, mode: str, scales: list[float]) -> None:
    """Upsample-7/9 and Resize-10 keep their asymmetric coordinates through the opset upgrade
    (onnx's converter alone gives them half_pixel), Resize-11 its own: bit-exact with onnxruntime
    on the original model."""
    inits: dict[str, np.ndarray] = {}
    if opset == 7:
        node = helper.make_node(op, ["x"], ["y"], name="up", mode=mode, scales=scales)
    elif opset == 11:
        node = helper.make_node(op, ["x", "roi", "s"], ["y"], name="up", mode=mode)
        inits = {"roi": np.zeros(0, np.float32), "s": np.array(scales, np.float32)}
    else:
        node = helper.make_node(op, ["x", "s"], ["y"], name="up", mode=mode)
        inits = {"s": np.array(scales, np.float32)}
    model = make_model([node], {"x": (1, 2, 5, 3)}, ["y"], inits, opset=opset)
    x = rand(1, 2, 5, 3, seed=3)
    graph = import_onnx(model)
    assert [n.op for n in graph.nodes] == ["Resize"]
    np.testing.assert_array_equal(run(graph, {"x": x})["y"], run_ort(model, {"x": x})["y"])


def test_legacy_nearest_downscale_is_refused() -> None:
    """A nearest Resize-10 that shrinks rounds up in onnxruntime: refused, not silently floored."""
    node = helper.make_node("Resize", ["x", "s"], ["y"], name="down", mode="nearest")
    model = make_model([node], {"x": (1, 2, 6, 6)}, ["y"], {"s": np.array([1, 1, 0.5, 0.5], np.float32)}, opset=10)
    with pytest.raises(UnsupportedError, match="scales below 1"):
        import_onnx(model)


@pytest.mark.parametrize("attrs,opset,shape,values,word", [
    ({"mode": "cubic"}, 13, (1, 2, 4, 4), [1, 1, 2, 2], "mode 'cubic'"),
    ({"mode": "linear", "antialias": 1}, 18, (1, 2, 4, 4), [1, 1, 0.5, 0.5], "antialias"),
    ({"mode": "cubic", "exclude_outside": 1}, 13, (1, 2, 4, 4), [1, 1, 2, 2], "mode 'cubic'"),
    ({"mode": "nearest", "exclude_outside": 1}, 13, (1, 2, 4, 4), [1, 1, 2, 2], "exclude_outside"),
    ({"coordinate_transformation_mode": "tf_crop_and_resize"}, 13, (1, 2, 4, 4), [1, 1, 2, 2], "tf_crop_and_resize"),
    ({"coordinate_transformation_mode": "half_pixel_symmetric"}, 19, (1, 2, 4, 4), [1, 1, 2, 2],
     "half_pixel_symmetric"),
    ({"keep_aspect_ratio_policy": "not_larger"}, 18, (1, 2, 4, 4), [1, 2, 8, 6], "keep_aspect_ratio_policy"),
    ({}, 13, (1, 2, 4, 4, 4), [1, 1, 2, 2, 2], "5-D input"),
    ({}, 13, (2, 4), [2, 2], "2-D input"),
    ({}, 13, (1, 2, 4, 4), [1, 2, 2, 2], "only H and W"),
])
def test_resize_refuses_what_it_does_not_compute(attrs: dict[str, Any], opset: int, shape: tuple[int, ...],
                                                 values: list[float], word: str) -> None:
    sizes = "keep_aspect_ratio_policy" in attrs
    value = np.array(values, I64 if sizes else np.float32)
    names = ["x", "", "", "v"] if sizes else ["x", "", "v"]
    node = helper.make_node("Resize", names, ["y"], name="resize", **attrs)
    model = make_model([node], {"x": shape}, ["y"], {"v": value}, opset=opset)
    with pytest.raises(UnsupportedError) as info:
        import_onnx(model)
    assert word in str(info.value) and "Resize" in str(info.value)


def test_resize_with_computed_scales_is_refused() -> None:
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], name="resize")
    model = make_model([node], {"x": (1, 2, 4, 4), "s": (4,)}, ["y"])
    with pytest.raises(CimcError, match="scales"):
        import_onnx(model)


@pytest.mark.parametrize("lowering", LOWERINGS)
def test_morph_widens_through_convtranspose_and_resize(lowering: str) -> None:
    """Copy-widening every changeable channel group keeps the outputs: the ConvTranspose's data
    movement follows its input channels, and a Resize by sizes gets its new channel count."""
    inits = {"w0": rand(8, 3, 3, 3, seed=1), "b0": rand(8, seed=2), "wt": rand(8, 6, 3, 3, seed=3),
             "bt": rand(6, seed=4), "sizes": np.array([1, 6, 17, 10], I64), "w1": rand(4, 6, 1, 1, seed=5)}
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="c0", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c0"], ["r0"], name="r0"),
             helper.make_node("ConvTranspose", ["r0", "wt", "bt"], ["up"], name="up", strides=[2, 2]),
             helper.make_node("Relu", ["up"], ["r1"], name="r1"),
             helper.make_node("Resize", ["r1", "", "", "sizes"], ["fit"], name="fit"),
             helper.make_node("Conv", ["fit", "w1"], ["y"], name="c1")]
    graph = _import(make_model(nodes, {"x": (1, 3, 6, 6)}, ["y"], inits), lowering)
    groups = analyze(graph)
    plan = widths_to_plan(groups, identity_plan(groups), ratio_widths(groups.group_size, 7, 4, groups.changeable))
    morphed = run_passes(graph, [MorphChannels(plan=plan, init="copy", noise=0.0)], PassContext(macro=MacroSpec()))
    assert morphed.shape("c0") == (1, 14, 6, 6)
    if lowering == "zero_insertion":  # sub-pixel's pixel shuffle fixes the ConvTranspose's 6 outputs
        width = morphed.shape("fit")[1]
        assert width > 6 and morphed.node("fit").attrs["sizes"] == (1, width, 17, 10)
    x = rand(1, 3, 6, 6, seed=9)
    np.testing.assert_allclose(run(morphed, {"x": x})["y"], run(graph, {"x": x})["y"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(run_ort(export_onnx(morphed), {"x": x})["y"], run(graph, {"x": x})["y"],
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel,stride,dilation,lowering", [
    (2, 2, 1, "sub_pixel"), (3, 2, 1, "sub_pixel"), (4, 2, 1, "sub_pixel"), (1, 2, 1, "sub_pixel"),
    (1, 3, 1, "zero_insertion"), (3, 2, 2, "zero_insertion")])
def test_the_import_chooses_sub_pixel_unless_dilated_or_mostly_zero_taps(kernel: int, stride: int, dilation: int,
                                                                          lowering: str) -> None:
    """Sub-pixel (its pixel shuffle is a Transpose) when it holds ≤ 4× the weights and there is no
    dilation; zero insertion (a Pad) otherwise."""
    model = make_model([helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", strides=[stride, stride],
                                         dilations=[dilation, dilation])], {"x": (1, 4, 5, 5)}, ["y"],
                       {"w": rand(4, 3, kernel, kernel)})
    ops = {n.op for n in import_onnx(model).nodes}
    assert ("Transpose" in ops or stride == 1, "Pad" in ops) == (lowering == "sub_pixel", lowering == "zero_insertion")


def test_zero_insertion_growth_is_bounded() -> None:
    """A 1×1 stride-8 ConvTranspose from 64 channels to 1: zero insertion would make a tensor 64× its
    input — refused with ResourceLimitError instead of allocated."""
    model = make_model([helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", strides=[8, 8])],
                       {"x": (1, 64, 4, 4)}, ["y"], {"w": rand(64, 1, 1, 1)})
    with pytest.raises(ResourceLimitError, match="16×"):
        import_onnx(model)


def test_round_prefer_ceil_at_a_float32_half_matches_onnxruntime() -> None:
    """7 → 2 columns, asymmetric: output 1 reads x = 1 / (2/7) = 3.5, which float32 computes as
    3.4999998; onnxruntime still rounds it up (the hypothesis case that found this)."""
    from cimc.ops.defs.resize import coordinates, nearest_index

    c = coordinates(2, 7, float(np.float32(2) / np.float32(7)), "asymmetric")
    assert nearest_index(c, 7, "round_prefer_ceil").tolist() == [0, 4]
    assert nearest_index(c, 7, "round_prefer_floor").tolist() == [0, 3]
