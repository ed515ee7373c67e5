"""``model.cim.onnx``'s checker run (``cimc.lowering.model.check_lean``): the full ONNX check
with shape inference, without handing the checker a second copy of the large weights."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import cimc.lowering.model as lowering_model
from cimc.errors import PassError
from cimc.lowering.model import LEAN_CHECK_BYTES, check_lean, checked_bytes


def _conv_model(declared_cout: int = 1024) -> onnx.ModelProto:
    """x (1, 3, 8, 8) → Conv with a large weight (1024, 3, 3, 3) plus a bias, its output
    declared with ``declared_cout`` channels."""
    w = np.ones((64, 3, 3, 3), np.float32) * np.arange(64, dtype=np.float32).reshape(64, 1, 1, 1)
    w = np.repeat(w, 16, axis=0)  # 1,024 output channels: well over LEAN_CHECK_BYTES
    b = np.zeros(w.shape[0], np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, declared_cout, 8, 8])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_the_checker_is_handed_the_model_without_its_large_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _conv_model()
    assert len(model.graph.initializer[0].raw_data) >= LEAN_CHECK_BYTES
    seen: list[onnx.ModelProto] = []
    real = onnx.checker.check_model
    monkeypatch.setattr(onnx.checker, "check_model", lambda m, **kw: (seen.append(m), real(m, **kw))[1])
    data = checked_bytes(model)
    assert onnx.load_from_string(data) == model  # what is written is the whole model
    (lean,) = seen
    assert [t.name for t in lean.graph.initializer] == ["b"]  # the small bias stays an initializer
    assert "w" in {i.name for i in lean.graph.input}
    assert lean.ByteSize() < LEAN_CHECK_BYTES


def test_shape_inference_still_sees_the_shape_of_a_weight_handed_over_as_an_input() -> None:
    """An output declared with 1,000 channels where the weight gives 1,024: the full check's
    shape inference refuses it, as it does with the weight as an initializer."""
    bad = _conv_model(declared_cout=1000)
    with pytest.raises(onnx.shape_inference.InferenceError):
        onnx.checker.check_model(bad, full_check=True)
    with pytest.raises(onnx.shape_inference.InferenceError):
        check_lean(bad)
    with pytest.raises(PassError, match="fails the ONNX checker"):
        checked_bytes(bad)


def test_a_model_without_large_weights_is_checked_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lowering_model, "LEAN_CHECK_BYTES", 1 << 40)
    seen: list[onnx.ModelProto] = []
    real = onnx.checker.check_model
    monkeypatch.setattr(onnx.checker, "check_model", lambda m, **kw: (seen.append(m), real(m, **kw))[1])
    model = _conv_model()
    check_lean(model)
    assert seen == [model]
