"""Models that mix their batch axis (found by fuzzing) compile, and run in chunks of their
static batch: calibration, the reference and the emulator agree with onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper as h
from onnx import numpy_helper as nh

from cimc.api import compile_model
from cimc.emulator import Emulator
from cimc.errors import UsageError
from cimc.frontend import import_onnx
from cimc.quant.batching import batch_safe, split_batch

pytestmark = pytest.mark.torch  # the zoo or the training hook


def flatten_axis0_model(path: Path) -> Path:
    rng = np.random.default_rng(0)
    inits = [nh.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             nh.from_array(rng.standard_normal((144, 10)).astype(np.float32), "fw")]
    nodes = [h.make_node("Conv", ["x", "w"], ["c"]), h.make_node("Relu", ["c"], ["r"]),
             h.make_node("Flatten", ["r"], ["f"], axis=0), h.make_node("MatMul", ["f", "fw"], ["y"])]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", 1, [1, 3, 8, 8])],
                         [h.make_tensor_value_info("y", 1, [1, 10])], inits)
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), path)
    return path


def test_batch_mixing_model_compiles_and_emulates(tmp_path: Path) -> None:
    model = flatten_axis0_model(tmp_path / "m.onnx")
    assert not batch_safe(import_onnx(model))
    compile_model(model, tmp_path / "b", map_fc=True)
    x = np.random.default_rng(1).standard_normal((3, 3, 8, 8)).astype(np.float32)
    got = next(iter(Emulator.open(tmp_path / "b").run(x).outputs.values()))
    session = ort.InferenceSession(str(tmp_path / "b" / "model.cim.onnx"), providers=["CPUExecutionProvider"])
    expected = np.concatenate([session.run(None, {"x": x[i:i + 1]})[0] for i in range(3)])
    np.testing.assert_array_equal(got, expected)


def test_zoo_models_are_batch_safe() -> None:
    from cimc.api import CompileOptions, load_source

    graph, _ = load_source("tiny_residual", CompileOptions())
    assert batch_safe(graph)


def test_split_batch_needs_whole_chunks() -> None:
    feeds = {"x": np.zeros((5, 2), np.float32)}
    assert [c["x"].shape[0] for c in split_batch(feeds, 1)] == [1] * 5
    with pytest.raises(UsageError, match="batches of 2"):
        split_batch(feeds, 2)



def test_reference_runs_a_batch_mixing_model_in_chunks_of_its_static_batch(tmp_path: Path) -> None:
    """Two samples of a model of static batch 1 that flattens over the batch axis: the numpy
    reference runs them as two chunks (one sample each), not as one batch the model cannot take."""
    from cimc.quant.reference import run_compiled

    graph = import_onnx(flatten_axis0_model(tmp_path / "m.onnx"))
    x = np.random.default_rng(2).standard_normal((2, 3, 8, 8)).astype(np.float32)
    got = run_compiled(graph, {"x": x}).outputs["y"]
    each = [run_compiled(graph, {"x": x[i:i + 1]}).outputs["y"] for i in range(2)]
    np.testing.assert_array_equal(got, np.concatenate(each))
    assert got.shape == (2, 10)
