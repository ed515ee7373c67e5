"""The compile path's fast paths give exactly what the plain implementations give.

* ``infer_shapes_lean`` (shape inference on a weight-less skeleton) equals
  ``onnx.shape_inference.infer_shapes``, serialised byte for byte, and fails alike;
* ``check_model_lean`` gives ``onnx.checker.check_model``'s verdict and message on the model
  and on copies broken in the ways the checker looks at;
* ``macro_arrays`` (whole-line copies, shifted columns cell by cell) equals a per-column
  loop, also when columns start above wordline 0 and share a bitline;
* ``macro_weights_bytes`` equals ``safetensors.numpy.save`` byte for byte;
* fold-batchnorm's folded weights are the float64 product rounded once to float32;
* ``segment_matmul`` (strided views of the uniform segments, no padded copies) equals a
  per-segment loop, for a short last segment, segments that fill the rows, and other bounds.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save

from cimc.backend.layout import layer_matrix, macro_arrays
from cimc.build.weights_file import macro_weights_bytes
from cimc.frontend import import_onnx
from cimc.frontend.lean_check import check_model_lean, checker_skeleton
from cimc.frontend.lean_infer import LEAN_MIN_ELEMENTS, infer_shapes_lean, inference_stand_in
from cimc.frontend.skeleton import skeleton
from cimc.ir.annotations import BitlinePlacement, WordlineTiling
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.ir.tensor import TensorInfo
from cimc.macro import MacroSpec
from cimc.mapping.select import conv_layer
from cimc.mapping.tiling import tiling_for
from cimc.passes.fold_batchnorm import FoldBatchNorm, bn_scale_shift
from cimc.passes.manager import PassContext
from tests.ir_builders import conv_bn_relu

META = {"format": "cimc-macro-weights/wordline-by-bitline"}


# -- shape inference on a skeleton ---------------------------------------------------------
def _conv_reshape_model(cout: int = 64) -> onnx.ModelProto:
    """Conv with a large weight, then a Reshape whose target shape is an int64 initializer."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((cout, 16, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([1, -1], np.int64), "shape"),
             numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), "b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["y", "shape"], ["z"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8, 8])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, None])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("strict", [False, True])
def test_lean_inference_equals_full_inference(strict: bool) -> None:
    model = _conv_reshape_model()
    want = onnx.shape_inference.infer_shapes(model, strict_mode=strict, data_prop=True)
    got = infer_shapes_lean(model, strict_mode=strict, data_prop=True)
    assert got.SerializeToString() == want.SerializeToString()
    assert [d.dim_value for d in got.graph.output[0].type.tensor_type.shape.dim] == [1, 64 * 8 * 8]


def test_in_place_inference_moves_only_the_shapes_into_the_model() -> None:
    model = _conv_reshape_model()
    want = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True).SerializeToString()
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    got = infer_shapes_lean(copy, strict_mode=True, data_prop=True, in_place=True)
    assert got is copy and got.SerializeToString() == want
    assert not model.graph.value_info  # without in_place the input is left alone
    assert infer_shapes_lean(model, strict_mode=True, data_prop=True) is not model and not model.graph.value_info


def test_import_leaves_a_given_model_alone() -> None:
    """The frontend works in place on its own copy, never on the caller's model."""
    model = _conv_reshape_model()
    before = model.SerializeToString()
    graph = import_onnx(model)
    assert model.SerializeToString() == before
    assert graph.shape("z") == (1, 64 * 8 * 8)


def test_skeleton_drops_only_large_float_data() -> None:
    model = _conv_reshape_model()
    sk = skeleton(model, inference_stand_in)
    data = {t.name: len(t.raw_data) for t in sk.graph.initializer}
    assert data == {"w": 0, "shape": 16, "b": 64 * 4}  # b has fewer than LEAN_MIN_ELEMENTS elements
    assert 64 < LEAN_MIN_ELEMENTS <= 64 * 16 * 9
    assert [list(t.dims) for t in sk.graph.initializer] == [list(t.dims) for t in model.graph.initializer]
    assert len(model.graph.initializer[0].raw_data) == 64 * 16 * 9 * 4  # the input is untouched


def test_lean_inference_fails_like_full_inference() -> None:
    model = _conv_reshape_model()
    model.graph.value_info.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8]))  # not 64
    with pytest.raises(onnx.shape_inference.InferenceError) as full:
        onnx.shape_inference.infer_shapes(model, strict_mode=True)
    with pytest.raises(onnx.shape_inference.InferenceError) as lean:
        infer_shapes_lean(model, strict_mode=True)
    assert str(lean.value) == str(full.value)


# -- the checker on a skeleton -------------------------------------------------------------
def _mutations(model: onnx.ModelProto) -> list[tuple[str, onnx.ModelProto]]:
    """The model, and copies broken (or bent) in ways the checker looks at."""
    def bent(change: Callable[[onnx.ModelProto, onnx.TensorProto], None]) -> onnx.ModelProto:
        out = onnx.ModelProto()
        out.CopyFrom(model)
        change(out, out.graph.initializer[0])
        return out

    return [("as is", model),
            ("short raw", bent(lambda m, t: setattr(t, "raw_data", t.raw_data[:-4]))),
            ("long raw", bent(lambda m, t: setattr(t, "raw_data", t.raw_data + b"1234"))),
            ("string type", bent(lambda m, t: setattr(t, "data_type", TensorProto.STRING))),
            ("two value fields", bent(lambda m, t: t.float_data.append(1.0))),
            ("duplicate initializer", bent(lambda m, t: m.graph.initializer.append(t))),
            ("negative dims", bent(lambda m, t: t.dims.__setitem__(slice(0, 2), [-t.dims[0], -t.dims[1]]))),
            ("undefined input", bent(lambda m, t: m.graph.node[0].input.__setitem__(0, "nowhere")))]


def _verdict(check: Callable[[onnx.ModelProto], None], model: onnx.ModelProto) -> str:
    try:
        check(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def test_lean_checker_gives_the_checkers_verdicts() -> None:
    model = _conv_reshape_model()
    verdicts = [(name, _verdict(onnx.checker.check_model, m), _verdict(check_model_lean, m))
                for name, m in _mutations(model)]
    assert [(name, full) for name, full, _ in verdicts] == [(name, lean) for name, _, lean in verdicts]
    assert [name for name, full, _ in verdicts if full == "ok"] == ["as is", "long raw"]


def test_checker_skeleton_holds_no_weights() -> None:
    model = _conv_reshape_model()
    sk, sound = checker_skeleton(model)
    assert sound and [list(t.dims) for t in sk.graph.initializer] == [[0, 16, 3, 3], [2], [64]]
    assert sk.ByteSize() < 1000 < model.ByteSize()


# -- macro arrays --------------------------------------------------------------------------
def _placed_conv(cin: int, cout: int, macro: MacroSpec, wordline: np.ndarray | None) -> tuple[Graph, Node]:
    g = Graph("t")
    rng = np.random.default_rng(cin * cout)
    g.set_initializer("w", rng.standard_normal((cout, cin, 3, 3)).astype(np.float32))
    node = Node("conv", "Conv", ("x", "w"), ("y",), {"group": 1})
    g.tensors["y"] = TensorInfo("y", (1, cout, 4, 4), "float32")
    g.add_node(node)
    layer = conv_layer(g, node)
    tiling = tiling_for(layer, macro.wordlines, "channel")
    cols = tiling.num_segments * cout
    starts = np.zeros(cols, np.int64) if wordline is None else wordline
    node.ann.put(layer)
    node.ann.put(tiling)
    node.ann.put(BitlinePlacement(0, np.arange(cols) // macro.bitlines, np.arange(cols) % macro.bitlines, starts))
    return g, node


def _reference_arrays(graph: Graph, node: Node, macro: MacroSpec, macros: int) -> np.ndarray:
    """Per-column loop: column k = s·Cout + o holds W[o, bounds[s]:bounds[s+1]] from its first wordline."""
    out = np.zeros((macros, macro.wordlines, macro.bitlines), np.float32)
    matrix, p, bounds = layer_matrix(graph, node), node.ann[BitlinePlacement], node.ann[WordlineTiling].bounds
    cout = matrix.shape[0]
    for k in range(p.num_columns):
        s, o = divmod(k, cout)
        rows = matrix[o, bounds[s]:bounds[s + 1]]
        w0 = int(p.wordline[k])
        out[p.macro[k], w0:w0 + len(rows), p.bitline[k]] = rows[: macro.wordlines - w0]
    return out


@pytest.mark.parametrize("cin,cout", [(3, 5), (40, 7), (64, 33)])
def test_macro_arrays_equal_a_per_column_loop(cin: int, cout: int) -> None:
    macro = MacroSpec(name="t", wordlines=64, bitlines=32, adcs=8, bitlines_per_adc=4)
    g, node = _placed_conv(cin, cout, macro, None)
    macros = int(node.ann[BitlinePlacement].macro.max()) + 1
    assert np.array_equal(macro_arrays(g, [node], macro, macros), _reference_arrays(g, node, macro, macros))


def test_shifted_columns_are_not_erased_by_a_column_below() -> None:
    """Two columns per bitline: the second segment's columns sit on wordlines 32… of the bitlines
    whose wordlines 0… hold the first segment (written first, with a zero tail)."""
    macro = MacroSpec(name="t", wordlines=64, bitlines=8, adcs=2, bitlines_per_adc=4)
    g, node = _placed_conv(6, 8, macro, None)
    node.ann.put(WordlineTiling("channel", 64, (0, 27, 54)))  # two segments of 3 channels × 3×3
    cols = 2 * 8
    bitline = np.tile(np.arange(8), 2)
    start = np.repeat([0, 32], 8)
    node.ann.put(BitlinePlacement(0, np.zeros(cols, np.int64), bitline, start))
    got = macro_arrays(g, [node], macro, 1)
    assert np.array_equal(got, _reference_arrays(g, node, macro, 1))
    assert np.count_nonzero(got[0, 32:59]) == 27 * 8


# -- safetensors bytes ---------------------------------------------------------------------
@pytest.mark.parametrize("macros", [0, 1, 3, 12])
def test_weights_bytes_equal_the_library(macros: int) -> None:
    arrays = np.random.default_rng(macros).standard_normal((macros, 8, 16)).astype(np.float32).transpose(0, 2, 1)
    tensors = {f"macro_{m:04d}": np.ascontiguousarray(arrays[m]) for m in range(macros)}
    assert macro_weights_bytes(arrays, META) == save(tensors, metadata=META)


def test_integer_code_weights_equal_the_library() -> None:
    arrays = np.arange(-60, 60, dtype=np.int8).reshape(5, 4, 6).transpose(0, 2, 1)
    tensors = {f"macro_{m:04d}": np.ascontiguousarray(arrays[m]) for m in range(5)}
    assert macro_weights_bytes(arrays, META) == save(tensors, metadata=META)


def test_weights_bytes_order_past_ten_thousand_macros() -> None:
    """``macro_10000`` sorts before ``macro_1001``: the data follows the header's name order."""
    arrays = np.arange(10_002 * 2, dtype=np.float32).reshape(10_002, 1, 2)
    tensors = {f"macro_{m:04d}": arrays[m] for m in range(10_002)}
    assert macro_weights_bytes(arrays, META) == save(tensors, metadata=META)


# -- fold-batchnorm rounding ---------------------------------------------------------------
@pytest.mark.parametrize("bias", [False, True])
def test_folded_weights_are_the_float64_product_rounded_once(bias: bool) -> None:
    g = conv_bn_relu(cin=8, cout=16, bias=bias, seed=3)
    w = g.initializers["conv.w"]
    scale, _ = bn_scale_shift(g, g.node("bn"))
    out = FoldBatchNorm().run(g, PassContext(macro=MacroSpec())).graph
    folded = out.initializers[out.node("conv").inputs[1]]
    want = (w.astype(np.float64) * scale.reshape(-1, 1, 1, 1)).astype(np.float32)
    assert folded.dtype == np.float32
    assert np.array_equal(folded.view(np.int32), want.view(np.int32))


@pytest.mark.parametrize("bounds", [(0, 4, 8, 11), (0, 4, 8, 12), (0, 12), (0, 3, 8, 12), (0, 5, 6, 12)])
@pytest.mark.parametrize("groups", [1, 3])
def test_segment_matmul_equals_a_per_segment_loop(bounds: tuple[int, ...], groups: int) -> None:
    from dataclasses import dataclass

    from cimc.quant.reference import segment_matmul

    @dataclass(frozen=True)
    class Spec:  # the fields segment_matmul reads
        groups: int
        cout: int
        rows: int
        bounds: tuple[int, ...]

    rows, cout_g, m = bounds[-1], 5, 7
    rng = np.random.default_rng(len(bounds) * groups)
    cols = rng.standard_normal((groups, m, rows)).astype(np.float32)
    codes = rng.integers(-7, 8, (groups * cout_g, rows)).astype(np.float32)
    got = segment_matmul(cols, codes, Spec(groups, groups * cout_g, rows, bounds))
    w = codes.reshape(groups, cout_g, rows)
    want = np.stack([np.stack([cols[g, :, a:b] @ w[g, :, a:b].T for a, b in pairwise(bounds)])
                     for g in range(groups)])
    assert got.shape == want.shape == (groups, len(bounds) - 1, m, cout_g)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

