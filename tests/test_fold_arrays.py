"""Folded weights reach the IR as arrays: a weight the model builds from its shape (the legacy
ONNX zoo's ``ConstantOfShape`` weights) is not serialised into a TensorProto and parsed back;
the IR holds the same values either way."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cimc.frontend import import_onnx
from cimc.frontend.fold_constants import fold_constants
from cimc.frontend.normalize import infer_shapes
from cimc.frontend.onnx_import import to_ir


def shaped_weight_model() -> onnx.ModelProto:
    """``Conv(x, ConstantOfShape([16, 8, 3, 3], 0.5) * M)``: a 1,152-element folded weight."""
    rng = np.random.default_rng(0)
    scale = numpy_helper.from_array(rng.standard_normal((16, 8, 3, 3)).astype(np.float32), "m")
    shape = numpy_helper.from_array(np.array([16, 8, 3, 3], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["ones"], name="cos",
                         value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])),
        helper.make_node("Mul", ["ones", "m"], ["w"], name="mul"),
        helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 6, 6])],
                              [scale, shape])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_large_folded_weight_goes_to_the_ir_without_its_data_in_the_model() -> None:
    arrays: dict[str, np.ndarray] = {}
    model = fold_constants(shaped_weight_model(), arrays=arrays)
    stand_in = {t.name: t for t in model.graph.initializer}["w"]
    assert list(stand_in.dims) == [16, 8, 3, 3] and not stand_in.raw_data and not stand_in.float_data
    assert set(arrays) == {"w"}


def test_the_ir_holds_the_same_weight_either_way() -> None:
    arrays: dict[str, np.ndarray] = {}
    lean = to_ir(infer_shapes(fold_constants(shaped_weight_model(), arrays=arrays)), arrays)
    serialised = to_ir(infer_shapes(fold_constants(shaped_weight_model())))
    assert set(lean.initializers) == set(serialised.initializers) == {"w"}
    for name, value in serialised.initializers.items():
        assert lean.initializers[name].dtype == value.dtype
        np.testing.assert_array_equal(lean.initializers[name], value)
    expected = 0.5 * numpy_helper.to_array(shaped_weight_model().graph.initializer[0])
    np.testing.assert_array_equal(import_onnx(shaped_weight_model()).initializers["w"], expected)
