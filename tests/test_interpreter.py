"""Every IR op, imported from a tiny ONNX model, matches onnxruntime in the reference interpreter.

Each case is also exported back to ONNX and re-run with onnxruntime (round trip).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from cimc.frontend import export_onnx, import_onnx
from cimc.ir.interpreter import run
from cimc.ops import op_table
from tests.onnx_builders import assert_close, feeds_for, make_model, rand, run_ort, single

X = {"x": (1, 3, 8, 8)}
W = rand(4, 3, 3, 3, seed=1)
B = rand(4, seed=2)
I64 = np.int64


def _conv(**kw: Any) -> onnx.ModelProto:
    return single("Conv", X, {"w": W, "b": B}, **kw)


def _pool(op: str, shape: tuple[int, ...] = (1, 2, 7, 7), **kw: Any) -> onnx.ModelProto:
    return single(op, {"x": shape}, **kw)


def _gemm(a: tuple[int, int], b: tuple[int, int], c: tuple[int, ...] | None, **kw: Any) -> onnx.ModelProto:
    inits = {"b": rand(*b, seed=3)} | ({"c": rand(*c, seed=4)} if c else {})
    return single("Gemm", {"a": a}, inits, **kw)


def _bn() -> onnx.ModelProto:
    inits = {"s": rand(3, seed=5), "bias": rand(3, seed=6), "m": rand(3, seed=7),
             "v": rand(3, seed=8, low=0.5, high=2.0)}
    return single("BatchNormalization", X, inits, epsilon=1e-3)


def _clip(lo: float | None, hi: float | None) -> onnx.ModelProto:
    inits = {k: np.array(v, np.float32) for k, v in (("lo", lo), ("hi", hi)) if v is not None}
    extra = ["lo" if lo is not None else "", "hi" if hi is not None else ""]
    while extra and not extra[-1]:
        extra.pop()
    node = helper.make_node("Clip", ["x", *extra], ["y"], name="clip0")
    return make_model([node], {"x": (2, 5)}, ["y"], inits)


def _pad(mode: str, value: float | None = None, axes: list[int] | None = None) -> onnx.ModelProto:
    pads = [0, 1, 1, 1, 0, 0, 2, 2] if axes is None else [1, 2, 2, 0]
    inits: dict[str, np.ndarray] = {"p": np.array(pads, I64)}
    extra = ["p", "v" if value is not None else ""]
    if value is not None:
        inits["v"] = np.array(value, np.float32)
    if axes is not None:
        inits["ax"] = np.array(axes, I64)
        extra.append("ax")
    node = helper.make_node("Pad", ["x", *extra], ["y"], name="pad0", mode=mode)
    return make_model([node], {"x": (1, 2, 4, 5)}, ["y"], inits, opset=18 if axes else 17)


def _slice(starts: list[int], ends: list[int], axes: list[int] | None, steps: list[int] | None) -> onnx.ModelProto:
    inits = {"s": np.array(starts, I64), "e": np.array(ends, I64)}
    names = ["x", "s", "e"]
    for key, v in (("a", axes), ("st", steps)):
        if v is not None:
            inits[key] = np.array(v, I64)
        names.append(key if v is not None else "")
    while not names[-1]:
        names.pop()
    node = helper.make_node("Slice", names, ["y"], name="slice0")
    return make_model([node], {"x": (3, 6, 5)}, ["y"], inits)


def _reshape(shape: list[int], src: tuple[int, ...] = (2, 3, 4), **kw: Any) -> onnx.ModelProto:
    return single("Reshape", {"x": src}, {"shape": np.array(shape, I64)}, **kw)


def _reduce(op: str, axes: list[int] | None, *, opset: int, shape: tuple[int, ...] = (2, 3, 4, 5),
            **kw: Any) -> onnx.ModelProto:
    """``op`` over ``axes``: an attribute before opset 18 (ReduceSum: 13), a constant input after."""
    as_input = opset >= (13 if op == "ReduceSum" else 18)
    if axes is None:
        return single(op, {"x": shape}, opset=opset, **kw)
    if as_input:
        return single(op, {"x": shape}, {"axes": np.array(axes, I64)}, opset=opset, **kw)
    return single(op, {"x": shape}, opset=opset, axes=axes, **kw)


def _silu() -> onnx.ModelProto:
    """SiLU as torch exports it: ``x · sigmoid(x)``."""
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"], name="sig0"),
             helper.make_node("Mul", ["x", "s"], ["y"], name="mul0")]
    return make_model(nodes, {"x": (1, 3, 4, 4)}, ["y"])


def _split(shape: tuple[int, ...], outputs: int, *, opset: int, sizes: list[int] | None = None,
           **kw: Any) -> onnx.ModelProto:
    """Split into ``outputs`` parts (``sizes`` an input from opset 13, else an attribute)."""
    names, inits = ["x"], {}
    if sizes is not None and opset >= 13:
        names, inits = ["x", "s"], {"s": np.array(sizes, I64)}
    elif sizes is not None:
        kw["split"] = sizes
    outs = [f"y{k}" for k in range(outputs)]
    axis = kw.get("axis", 0)  # the parts concatenated in reverse order: one output, every part read
    nodes = [helper.make_node("Split", names, outs, name="split0", **kw),
             helper.make_node("Concat", outs[::-1], ["y"], name="cat0", axis=axis)]
    return make_model(nodes, {"x": shape}, ["y"], inits, opset=opset)


def _convtranspose(x: tuple[int, ...], w: tuple[int, ...], bias: bool = True, **kw: Any) -> onnx.ModelProto:
    """ConvTranspose with weight ``w`` = ``(C, M_g, k…)`` (imported as a Conv and data movement)."""
    inits = {"w": rand(*w, seed=11)} | ({"b": rand(w[1] * kw.get("group", 1), seed=12)} if bias else {})
    return single("ConvTranspose", {"x": x}, inits, **kw)


def _resize(shape: tuple[int, ...], *, scales: list[float] | None = None, sizes: list[int] | None = None,
            opset: int = 13, **kw: Any) -> onnx.ModelProto:
    """Resize with constant ``scales`` or ``sizes`` (operands ``x, roi, scales, sizes``; roi absent)."""
    if scales is not None:
        names, inits = ["x", "", "scales"], {"scales": np.array(scales, np.float32)}
    else:
        names, inits = ["x", "", "", "sizes"], {"sizes": np.array(sizes, I64)}
    node = helper.make_node("Resize", names, ["y"], name="resize0", **kw)
    return make_model([node], {"x": shape}, ["y"], inits, opset=opset)


def _upsample(opset: int, mode: str, scales: list[float]) -> onnx.ModelProto:
    """Upsample (opset 7: ``scales`` attribute; 9: operand) and Resize-10 (operand)."""
    if opset == 7:
        return single("Upsample", {"x": (1, 2, 3, 4)}, opset=7, mode=mode, scales=scales)
    op = "Upsample" if opset == 9 else "Resize"
    return single(op, {"x": (1, 2, 3, 4)}, {"s": np.array(scales, np.float32)}, opset=opset, mode=mode)


def _chain() -> onnx.ModelProto:
    """Identity and Dropout are removed; their readers are rewired."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Identity", ["r"], ["i"]),
             helper.make_node("Dropout", ["i"], ["d"]), helper.make_node("Sigmoid", ["d"], ["y"])]
    return make_model(nodes, {"x": (2, 3)}, ["y"])


def _scaled(op: str, scale: float = 4.0, shape: tuple[int, ...] = (2, 3, 4, 5), opset: int = 17,
            **kw: Any) -> onnx.ModelProto:
    """``op(scale · x)``: the inputs span [−scale, scale] (the tails of Erf, Gelu, Elu, …)."""
    nodes = [helper.make_node("Mul", ["x", "k"], ["s"], name="scale0"),
             helper.make_node(op, ["s"], ["y"], name=f"{op.lower()}0", **kw)]
    return make_model(nodes, {"x": shape}, ["y"], {"k": np.array(scale, np.float32)}, opset=opset)


def _positive(op: str, **kw: Any) -> onnx.ModelProto:
    """``op(|x| + 0.1)``: a positive input (Sqrt, Log, Reciprocal, Pow 0.5)."""
    extra, inits = kw.pop("extra", []), kw.pop("inits", {})
    nodes = [helper.make_node("Abs", ["x"], ["a"], name="abs0"),
             helper.make_node("Add", ["a", "e"], ["p"], name="add0"),
             helper.make_node(op, ["p", *extra], ["y"], name=f"{op.lower()}0", **kw)]
    return make_model(nodes, {"x": (2, 3, 4)}, ["y"], {"e": np.array(0.1, np.float32), **inits})


def _pow(exponent: float, positive: bool = False) -> onnx.ModelProto:
    p = {"ex": np.array(exponent, np.float32)}
    if positive:
        return _positive("Pow", extra=["ex"], inits=p)
    return single("Pow", {"x": (2, 3, 4)}, p)


def _gelu_erf_decomposed() -> onnx.ModelProto:
    """GELU as the legacy exporters wrote it before opset 20: ``x · 0.5 · (1 + erf(x / √2))``."""
    nodes = [helper.make_node("Mul", ["x", "k"], ["s"]), helper.make_node("Div", ["s", "r2"], ["d"]),
             helper.make_node("Erf", ["d"], ["e"]), helper.make_node("Add", ["e", "one"], ["a"]),
             helper.make_node("Mul", ["s", "a"], ["m"]), helper.make_node("Mul", ["m", "half"], ["y"])]
    inits = {"k": np.array(4, np.float32), "r2": np.array(2**0.5, np.float32), "one": np.array(1, np.float32),
             "half": np.array(0.5, np.float32)}
    return make_model(nodes, {"x": (2, 8, 3)}, ["y"], inits)


def _gelu_tanh_decomposed() -> onnx.ModelProto:
    """The tanh GELU decomposed: ``0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))``."""
    nodes = [helper.make_node("Pow", ["x", "three"], ["c"]), helper.make_node("Mul", ["c", "a"], ["ca"]),
             helper.make_node("Add", ["x", "ca"], ["i"]), helper.make_node("Mul", ["i", "k"], ["ik"]),
             helper.make_node("Tanh", ["ik"], ["t"]), helper.make_node("Add", ["t", "one"], ["t1"]),
             helper.make_node("Mul", ["x", "t1"], ["m"]), helper.make_node("Mul", ["m", "half"], ["y"])]
    inits = {"three": np.array(3, np.float32), "a": np.array(0.044715, np.float32),
             "k": np.array((2 / np.pi) ** 0.5, np.float32), "one": np.array(1, np.float32),
             "half": np.array(0.5, np.float32)}
    return make_model(nodes, {"x": (2, 8, 3)}, ["y"], inits)


def _layernorm(shape: tuple[int, ...], axis: int, scale: tuple[int, ...], bias: bool = True,
               **kw: Any) -> onnx.ModelProto:
    inits = {"g": rand(*scale, seed=3, low=0.5, high=1.5)} | ({"b": rand(*scale, seed=4)} if bias else {})
    return single("LayerNormalization", {"x": shape}, inits, axis=axis, **kw)


def _layernorm_decomposed() -> onnx.ModelProto:
    """LayerNorm over the last axis as older exporters wrote it (ReduceMean, Sub, Pow, Sqrt, Div)."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["mu"], axes=[-1]), helper.make_node("Sub", ["x", "mu"], ["d"]),
             helper.make_node("Pow", ["d", "two"], ["d2"]), helper.make_node("ReduceMean", ["d2"], ["var"], axes=[-1]),
             helper.make_node("Add", ["var", "eps"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["sd"]),
             helper.make_node("Div", ["d", "sd"], ["n"]), helper.make_node("Mul", ["n", "g"], ["ng"]),
             helper.make_node("Add", ["ng", "b"], ["y"])]
    inits = {"two": np.array(2, np.float32), "eps": np.array(1e-5, np.float32), "g": rand(6, seed=3),
             "b": rand(6, seed=4)}
    return make_model(nodes, {"x": (2, 4, 6)}, ["y"], inits)


def _layernorm_channels_last() -> onnx.ModelProto:
    """ConvNeXt's LayerNorm2d: Transpose to NHWC, LayerNorm over C, Transpose back."""
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("LayerNormalization", ["t", "g", "b"], ["n"], axis=-1, epsilon=1e-6),
             helper.make_node("Transpose", ["n"], ["y"], perm=[0, 3, 1, 2])]
    return make_model(nodes, X, ["y"], {"g": rand(3, seed=3), "b": rand(3, seed=4)})


def _groupnorm(groups: int) -> onnx.ModelProto:
    """GroupNormalization (opset 21: per-channel scale and bias) of 6 channels in ``groups`` groups; the
    output's shape declared, as exporters write it (onnx 1.23 infers none for GroupNormalization)."""
    inits = {"g": rand(6, seed=3, low=0.5, high=1.5), "b": rand(6, seed=4)}
    model = single("GroupNormalization", {"x": (2, 6, 3, 4)}, inits, num_groups=groups, opset=21)
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 6, 3, 4]))
    return model


def _gather(shape: tuple[int, ...], indices: Any, axis: int) -> onnx.ModelProto:
    return single("Gather", {"x": shape}, {"i": np.array(indices, I64)}, axis=axis)


def _where() -> onnx.ModelProto:
    """Where with a constant (3, 1) condition between an activation and a constant."""
    cond = np.array([[True], [False], [True]])
    return make_model([helper.make_node("Where", ["c", "x", "z"], ["y"], name="where0")], {"x": (2, 3, 4)}, ["y"],
                      {"c": cond, "z": rand(4, seed=5)})


def _castlike() -> onnx.ModelProto:
    """CastLike of an activation to a float32 constant's type (a float32 → float32 cast)."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("CastLike", ["r", "like"], ["y"])]
    return make_model(nodes, {"x": (2, 3)}, ["y"], {"like": np.zeros(1, np.float32)})


CASES: dict[str, Callable[[], onnx.ModelProto]] = {
    "conv_bias": lambda: _conv(pads=[1, 1, 1, 1]),
    "conv_nobias": lambda: single("Conv", X, {"w": W}),
    "conv_group2": lambda: single("Conv", {"x": (1, 4, 6, 6)}, {"w": rand(6, 2, 3, 3)}, group=2),
    "conv_depthwise": lambda: single("Conv", {"x": (1, 4, 6, 6)}, {"w": rand(4, 1, 3, 3), "b": rand(4)}, group=4),
    "conv_stride2": lambda: _conv(strides=[2, 2], pads=[1, 1, 1, 1]),
    "conv_dilation2": lambda: _conv(dilations=[2, 2], pads=[2, 2, 2, 2]),
    "conv_asym_pads": lambda: _conv(pads=[0, 1, 2, 1], strides=[1, 2]),
    "conv_same_upper": lambda: single("Conv", X, {"w": rand(4, 3, 2, 2)}, auto_pad="SAME_UPPER"),
    "conv_same_lower": lambda: single("Conv", X, {"w": rand(4, 3, 2, 2)}, auto_pad="SAME_LOWER"),
    "conv_same_upper_s2": lambda: single("Conv", {"x": (1, 3, 7, 7)}, {"w": W}, auto_pad="SAME_UPPER",
                                         strides=[2, 2]),
    "conv_valid": lambda: _conv(auto_pad="VALID", strides=[2, 2]),
    "maxpool": lambda: _pool("MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
    "maxpool_pads": lambda: _pool("MaxPool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    "maxpool_ceil": lambda: _pool("MaxPool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
    "maxpool_dilation": lambda: _pool("MaxPool", kernel_shape=[2, 2], dilations=[2, 2]),
    "maxpool_same_upper": lambda: _pool("MaxPool", kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    "avgpool": lambda: _pool("AveragePool", kernel_shape=[2, 2], strides=[2, 2]),
    "avgpool_pads": lambda: _pool("AveragePool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    "avgpool_pads_incl": lambda: _pool("AveragePool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 2],
                                       count_include_pad=1),
    "avgpool_ceil": lambda: _pool("AveragePool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
    "avgpool_ceil_incl": lambda: _pool("AveragePool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                       ceil_mode=1, count_include_pad=1),
    "avgpool_same_lower": lambda: _pool("AveragePool", kernel_shape=[2, 2], auto_pad="SAME_LOWER"),
    "globalavgpool": lambda: _pool("GlobalAveragePool"),
    "gemm": lambda: _gemm((2, 5), (5, 3), (3,)),
    "gemm_transA": lambda: _gemm((5, 2), (5, 3), (2, 3), transA=1),
    "gemm_transB_alpha_beta": lambda: _gemm((2, 5), (3, 5), (1, 3), transB=1, alpha=0.5, beta=2.0),
    "gemm_noC": lambda: _gemm((2, 5), (5, 3), None),
    "matmul": lambda: single("MatMul", {"a": (2, 5)}, {"b": rand(5, 4)}),
    "matmul_batched": lambda: single("MatMul", {"a": (2, 3, 5)}, {"b": rand(5, 4)}),
    "batchnorm": _bn,
    "relu": lambda: single("Relu", X),
    "sigmoid": lambda: single("Sigmoid", X),
    "leakyrelu_default": lambda: single("LeakyRelu", X),
    "leakyrelu_alpha": lambda: single("LeakyRelu", X, alpha=0.2),
    "clip_minmax": lambda: _clip(-0.5, 0.5),
    "clip_min": lambda: _clip(0.0, None),
    "clip_max": lambda: _clip(None, 0.25),
    "clip_none": lambda: _clip(None, None),
    "add_broadcast": lambda: single("Add", X, {"c": rand(3, 1, 1)}),
    "add_runtime": lambda: single("Add", {"x": (2, 3, 4), "z": (3, 1)}),
    "mul_broadcast": lambda: single("Mul", X, {"c": rand(8)}),
    "sub_broadcast": lambda: single("Sub", X, {"c": rand(3, 1, 1)}),
    "sub_runtime": lambda: single("Sub", {"x": (2, 3, 4), "z": (3, 1)}),
    "div_broadcast": lambda: single("Div", X, {"c": rand(3, 1, 1, low=0.5, high=2.0)}),
    "div_runtime": lambda: single("Div", {"x": (2, 3, 4), "z": (4,)}),
    "silu_sigmoid_mul": _silu,
    "squeeze_hw": lambda: single("Squeeze", {"x": (2, 3, 1, 1)}, {"axes": np.array([-1, 2], I64)}),
    "squeeze_all": lambda: single("Squeeze", {"x": (1, 3, 1, 4)}),
    "squeeze_opset11_attr": lambda: single("Squeeze", {"x": (2, 1, 4)}, opset=11, axes=[1]),
    "unsqueeze_hw": lambda: single("Unsqueeze", {"x": (2, 3)}, {"axes": np.array([-1, 2], I64)}),
    "unsqueeze_batch": lambda: single("Unsqueeze", {"x": (3, 4)}, {"axes": np.array([0], I64)}),
    "unsqueeze_opset11_attr": lambda: single("Unsqueeze", {"x": (2, 3)}, opset=11, axes=[1]),
    "split_sizes_channels": lambda: _split((2, 6, 3), 2, opset=13, sizes=[2, 4], axis=1),
    "split_equal_last": lambda: _split((2, 3, 6), 3, opset=13, axis=-1),
    "split_num_outputs": lambda: _split((7, 2), 3, opset=18, num_outputs=3),
    "split_opset11_attr": lambda: _split((3, 4), 2, opset=11, sizes=[1, 3], axis=1),
    "neg": lambda: single("Neg", {"x": (2, 3, 4, 5)}),
    "sum3": lambda: single("Sum", {"a": (2, 3), "b": (2, 3)}, {"c": rand(3)}),
    "concat": lambda: single("Concat", {"a": (1, 2, 3), "b": (1, 4, 3)}, axis=1),
    "concat_negative_axis": lambda: single("Concat", {"a": (2, 3), "b": (2, 1)}, {"c": rand(2, 2)}, axis=-1),
    "flatten": lambda: single("Flatten", X),
    "flatten_axis0": lambda: single("Flatten", X, axis=0),
    "flatten_negative": lambda: single("Flatten", X, axis=-1),
    "reshape_0_minus1": lambda: _reshape([0, -1]),
    "reshape_minus1_first": lambda: _reshape([-1, 4, 1]),
    "reshape_allowzero": lambda: _reshape([2, 0, 5], src=(0, 2, 3), allowzero=1),
    "transpose_default": lambda: single("Transpose", {"x": (2, 3, 4)}),
    "transpose_perm": lambda: single("Transpose", X, perm=[0, 2, 3, 1]),
    "softmax": lambda: single("Softmax", {"x": (2, 5)}),
    "softmax_axis1": lambda: single("Softmax", {"x": (2, 3, 4)}, axis=1),
    "lrn": lambda: single("LRN", {"x": (1, 6, 3, 3)}, size=3),
    "lrn_params": lambda: single("LRN", {"x": (1, 6, 3, 3)}, size=5, alpha=0.01, beta=0.5, bias=2.0),
    "pad_constant": lambda: _pad("constant", 1.5),
    "pad_constant_default": lambda: _pad("constant"),
    "pad_reflect": lambda: _pad("reflect"),
    "pad_edge": lambda: _pad("edge"),
    "pad_axes_opset18": lambda: _pad("constant", -2.0, axes=[-1, 2]),
    "slice_steps": lambda: _slice([0, 1], [3, 6], [0, 1], [2, 2]),
    "slice_negative": lambda: _slice([-2, -4], [100, -1], [-1, 1], None),
    "slice_reverse": lambda: _slice([-1, 4], [-(2**63), 0], [1, 2], [-1, -2]),
    "slice_default_axes": lambda: _slice([1], [-1], None, None),
    "identity_dropout_removed": _chain,
    "hardswish": lambda: single("HardSwish", {"x": (2, 3, 4, 5)}),
    "hardsigmoid_default": lambda: single("HardSigmoid", {"x": (2, 3, 4, 5)}),
    "hardsigmoid_torch": lambda: single("HardSigmoid", {"x": (2, 3, 4, 5)}, alpha=1 / 6, beta=0.5),
    "reducemean_hw_attr": lambda: _reduce("ReduceMean", [2, 3], opset=17),  # imported as GlobalAveragePool
    "reducemean_hw_input": lambda: _reduce("ReduceMean", [-1, -2], opset=18),
    "reducemean_hw_flat": lambda: _reduce("ReduceMean", [2, 3], opset=18, keepdims=0),  # + Flatten
    "reducemean_channels_attr": lambda: _reduce("ReduceMean", [1], opset=17),
    "reducemean_w_input": lambda: _reduce("ReduceMean", [-1], opset=18, keepdims=0),
    "reducemean_all": lambda: _reduce("ReduceMean", None, opset=18, shape=(2, 3, 4)),
    "reducesum_hw": lambda: _reduce("ReduceSum", [2, 3], opset=13),
    "reducesum_channels_flat": lambda: _reduce("ReduceSum", [1, -1], opset=18, keepdims=0),
    "reducesum_opset11_attr": lambda: _reduce("ReduceSum", [2], opset=11),
    "reducemax_hw_attr": lambda: _reduce("ReduceMax", [2, 3], opset=17),
    "reducemax_batch_input": lambda: _reduce("ReduceMax", [0], opset=18, keepdims=0),
    "reducemax_channels_input": lambda: _reduce("ReduceMax", [1], opset=18),
    "erf": lambda: _scaled("Erf"),
    "gelu_none": lambda: _scaled("Gelu", opset=20),
    "gelu_tanh": lambda: _scaled("Gelu", opset=20, approximate="tanh"),
    "gelu_erf_decomposed": _gelu_erf_decomposed,
    "gelu_tanh_decomposed": _gelu_tanh_decomposed,
    "layernorm_last": lambda: _layernorm((2, 4, 6), -1, (6,)),
    "layernorm_channels_first": lambda: _layernorm((2, 3, 4, 5), 1, (3, 1, 1), epsilon=1e-3),
    "layernorm_two_axes_nobias": lambda: _layernorm((2, 3, 4, 5), 2, (4, 5), bias=False),
    "layernorm_decomposed": _layernorm_decomposed,
    "layernorm_channels_last": _layernorm_channels_last,
    "instancenorm": lambda: single("InstanceNormalization", {"x": (2, 3, 4, 5)},
                                   {"g": rand(3, seed=3), "b": rand(3, seed=4)}, epsilon=1e-3),
    "groupnorm_3_groups": lambda: _groupnorm(3),
    "groupnorm_1_group": lambda: _groupnorm(1),
    "gather_list": lambda: _gather((2, 5, 3), [4, 0, 4], 1),
    "gather_scalar_negative": lambda: _gather((2, 5, 3), -1, -1),
    "gather_matrix_axis0": lambda: _gather((4, 3), [[0, 3], [-1, 1]], 0),
    "gather_in_order_is_reshape": lambda: _gather((6,), [[[0]], [[1]], [[2]], [[3]], [[4]], [[5]]], 0),
    "max3": lambda: single("Max", {"a": (2, 3, 4), "b": (3, 1)}, {"c": rand(4, seed=3)}),
    "min2": lambda: single("Min", {"a": (2, 3, 4), "b": (2, 3, 4)}),
    "mean3": lambda: single("Mean", {"a": (2, 3, 4), "b": (3, 4)}, {"c": rand(4, seed=3)}),
    "sqrt": lambda: _positive("Sqrt"),
    "reciprocal": lambda: _positive("Reciprocal"),
    "log": lambda: _positive("Log"),
    "abs": lambda: single("Abs", {"x": (2, 3, 4)}),
    "exp": lambda: _scaled("Exp"),
    "tanh": lambda: _scaled("Tanh"),
    "pow_square": lambda: _pow(2.0),
    "pow_cube": lambda: _pow(3.0),
    "pow_half": lambda: _pow(0.5, positive=True),
    "prelu_channel": lambda: single("PRelu", X, {"s": rand(3, 1, 1, seed=3)}),
    "prelu_scalar": lambda: single("PRelu", X, {"s": np.array([0.25], np.float32)}),
    "elu": lambda: _scaled("Elu"),
    "elu_alpha": lambda: _scaled("Elu", alpha=0.5),
    "selu": lambda: _scaled("Selu"),
    "celu_alpha": lambda: _scaled("Celu", alpha=2.0),
    "softplus": lambda: _scaled("Softplus", scale=30.0),
    "cast_float": lambda: single("Cast", {"x": (2, 3)}, to=onnx.TensorProto.FLOAT),
    "castlike_activation": _castlike,
    "expand": lambda: single("Expand", {"x": (3, 1)}, {"s": np.array([2, 1, 4], I64)}),
    "tile": lambda: single("Tile", {"x": (2, 3)}, {"r": np.array([1, 3], I64)}),
    "where_constant_condition": _where,
    "convtranspose_k2s2": lambda: _convtranspose((1, 4, 3, 3), (4, 3, 2, 2), strides=[2, 2]),
    "convtranspose_pads_output_padding": lambda: _convtranspose((1, 2, 4, 5), (2, 3, 3, 3), strides=[2, 2],
                                                                pads=[1, 0, 1, 1], output_padding=[1, 0]),
    "convtranspose_group_dilation": lambda: _convtranspose((1, 4, 3, 4), (4, 1, 3, 2), group=2, dilations=[2, 1],
                                                           strides=[1, 2]),
    "convtranspose_same_upper": lambda: _convtranspose((1, 2, 3, 3), (2, 2, 3, 3), strides=[2, 2],
                                                       auto_pad="SAME_UPPER"),
    "convtranspose_output_shape": lambda: _convtranspose((1, 2, 3, 3), (2, 2, 3, 3), False, strides=[2, 2],
                                                         output_shape=[6, 5]),
    "convtranspose_1d": lambda: _convtranspose((1, 3, 5), (3, 2, 3), strides=[3], pads=[1, 1]),
    "resize_nearest_asymmetric": lambda: _resize((1, 3, 4, 5), scales=[1, 1, 2, 2], mode="nearest",
                                                 coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
    "resize_nearest_sizes_half_pixel": lambda: _resize((1, 3, 4, 5), sizes=[1, 3, 7, 3]),
    "resize_linear_align_corners": lambda: _resize((1, 3, 4, 5), scales=[1, 1, 2, 2], mode="linear",
                                                   coordinate_transformation_mode="align_corners"),
    "resize_linear_pytorch_half_pixel": lambda: _resize((1, 2, 6, 5), sizes=[1, 2, 4, 7], mode="linear",
                                                        coordinate_transformation_mode="pytorch_half_pixel"),
    "resize_opset18_axes": lambda: _resize((1, 2, 4, 4), sizes=[6, 3], opset=18, axes=[2, 3], mode="linear"),
    "upsample_opset7_nearest": lambda: _upsample(7, "nearest", [1.0, 1.0, 2.0, 3.0]),
    "upsample_opset9_linear": lambda: _upsample(9, "linear", [1, 1, 1.5, 2]),
    "resize_opset10_linear": lambda: _upsample(10, "linear", [1, 1, 2, 1.5]),
    "globalmaxpool": lambda: _pool("GlobalMaxPool"),
    "conv1d": lambda: single("Conv", {"x": (2, 3, 9)}, {"w": rand(4, 3, 3), "b": rand(4)}, pads=[1, 2], strides=[2],
                             dilations=[2]),
    "conv1d_group_same_upper": lambda: single("Conv", {"x": (1, 4, 7)}, {"w": rand(4, 2, 2)}, group=2,
                                              auto_pad="SAME_UPPER"),
    "maxpool1d": lambda: single("MaxPool", {"x": (1, 3, 9)}, kernel_shape=[3], strides=[2], pads=[1, 1]),
    "avgpool1d_ceil": lambda: single("AveragePool", {"x": (1, 3, 9)}, kernel_shape=[2], strides=[2], ceil_mode=1),
}

COVERED_OPS = {"Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "Gemm", "MatMul", "BatchNormalization",
               "Relu", "Sigmoid", "LeakyRelu", "Clip", "Add", "Mul", "Sum", "Concat", "Flatten", "Reshape",
               "Transpose", "Softmax", "LRN", "Pad", "Slice", "HardSwish", "HardSigmoid", "ReduceMean",
               "ReduceSum", "ReduceMax", "Sub", "Div", "Neg", "Squeeze",
               "Unsqueeze", "Split", "Erf", "Gelu", "LayerNormalization", "InstanceNormalization",
               "GroupNormalization", "Gather", "Max", "Min", "Mean", "Sqrt", "Reciprocal", "Log", "Abs", "Exp", "Tanh",
               "Pow", "PRelu", "Elu", "Selu", "Celu", "Softplus", "Cast", "CastLike", "Expand", "Tile", "Where",
               "ConvTranspose", "Resize", "Upsample", "GlobalMaxPool"}


def test_every_op_is_covered() -> None:
    assert set(op_table()) <= COVERED_OPS


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_onnxruntime(case: str) -> None:
    model = CASES[case]()
    feeds = feeds_for(model)
    want = run_ort(model, feeds)
    graph = import_onnx(model)
    assert_close(run(graph, feeds), want)
    assert_close(run_ort(export_onnx(graph), feeds), want)  # round trip through the exporter


_INDEX = st.integers(-8, 8) | st.sampled_from([-(2**63), 2**63 - 1, -(2**40), 2**40])


@settings(max_examples=40, deadline=None)
@given(axis=st.integers(-3, 2), start=_INDEX, end=_INDEX, step=st.sampled_from([-3, -2, -1, 1, 2, 3]))
def test_slice_clamping_matches_onnxruntime(axis: int, start: int, end: int, step: int) -> None:
    """Canonical (clamped) Slice attributes give onnxruntime's result, also after export."""
    if end == 2**63 - 1 and step < 0:
        return  # onnxruntime reads INT64_MAX as "to the start" here; the ONNX spec (and cimc) as empty
    model = _slice([start], [end], [axis], [step])
    feeds = feeds_for(model)
    want = run_ort(model, feeds)
    graph = import_onnx(model)
    assert_close(run(graph, feeds), want)
    assert_close(run_ort(export_onnx(graph), feeds), want)


@settings(max_examples=30, deadline=None)
@given(size=st.integers(3, 9), kernel=st.integers(1, 4), stride=st.integers(1, 3), dilation=st.integers(1, 2),
       auto_pad=st.sampled_from(["SAME_UPPER", "SAME_LOWER", "VALID"]))
def test_conv_auto_pad_matches_onnxruntime(size: int, kernel: int, stride: int, dilation: int, auto_pad: str) -> None:
    """auto_pad is resolved into explicit (top, left, bottom, right) pads exactly as onnxruntime pads."""
    if (kernel - 1) * dilation + 1 > size or (dilation > 1 and auto_pad != "VALID"):
        return  # onnxruntime refuses dilated SAME_* convolutions
    model = single("Conv", {"x": (1, 2, size, size + 1)}, {"w": rand(3, 2, kernel, kernel)}, auto_pad=auto_pad,
                   strides=[stride, stride], dilations=[dilation, dilation])
    feeds = feeds_for(model)
    assert_close(run(import_onnx(model), feeds), run_ort(model, feeds))


@settings(max_examples=30, deadline=None)
@given(size=st.integers(2, 9), kernel=st.integers(1, 3), stride=st.integers(1, 3), pad=st.integers(0, 1),
       ceil_mode=st.integers(0, 1), include=st.integers(0, 1), op=st.sampled_from(["MaxPool", "AveragePool"]))
def test_pool_matches_onnxruntime(size: int, kernel: int, stride: int, pad: int, ceil_mode: int, include: int,
                                  op: str) -> None:
    """Pools with pads, ceil_mode and count_include_pad agree with onnxruntime."""
    if kernel > size + 2 * pad or pad >= kernel:
        return
    extra = {"count_include_pad": include} if op == "AveragePool" else {}
    model = _pool(op, (1, 2, size, size), kernel_shape=[kernel, kernel], strides=[stride, stride],
                  pads=[pad] * 4, ceil_mode=ceil_mode, **extra)
    feeds = feeds_for(model)
    assert_close(run(import_onnx(model), feeds), run_ort(model, feeds))
