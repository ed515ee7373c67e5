"""Which graph inputs carry the batch (``cimc.quant.batching.batch_inputs``), and the batches
built for a model that respect it: an input that broadcasts (a ``(1, 1)`` or ``(3, 1)`` operand
of an Add) keeps its static shape in the probe batches of the compile and of ``cimc validate``,
in synthetic calibration and in the chunks of a model that mixes its batch axis (reference
and emulator), and
``model.cim.onnx`` declares it static; a model of static batch 0 runs on an empty batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from cimc.api import CompileOptions, compile_model
from cimc.emulator.validate import validate_build
from cimc.errors import UsageError
from cimc.frontend import import_onnx
from cimc.quant.batching import batch_inputs, batch_safe, split_batch
from cimc.quant.calibration import load_feeds
from cimc.quant.reference import probe_feeds, run_compiled
from tests.onnx_builders import feeds_for, make_model, node, rand, run_ort, single
from tests.test_interpreter import CASES


@pytest.mark.parametrize(("inputs", "batched"), [
    ({"x": (2, 3, 4), "z": (3, 1)}, {"x"}),
    ({"x": (1, 3, 4), "z": (1, 1)}, {"x"}),      # dim 0 is the batch by chance: it broadcasts over (3, 4)
    ({"x": (2, 2, 2), "z": (2, 1)}, {"x"}),
    ({"x": (1, 3, 4), "z": (1, 3, 4)}, {"x", "z"}),
    ({"x": (2, 3, 4), "z": (2, 3, 4)}, {"x", "z"}),
    ({"x": (2, 3, 4), "z": (2, 1, 4)}, {"x", "z"}),
])
def test_batch_inputs(inputs: dict[str, tuple[int, ...]], batched: set[str]) -> None:
    assert batch_inputs(import_onnx(single("Add", inputs))) == batched


def test_probe_feeds_keep_every_inputs_shape() -> None:
    """A second input of shape (3, 1) next to a batch of 2 stays (3, 1): it broadcasts."""
    feeds = probe_feeds({"x": (2, 3, 4), "z": (3, 1), "s": ()}, seed=1, scale=8.0)
    assert {k: v.shape for k, v in feeds.items()} == {"x": (2, 3, 4), "z": (3, 1), "s": ()}
    assert all(v.dtype == np.float32 for v in feeds.values())
    np.testing.assert_array_equal(feeds["x"], probe_feeds({"x": (2, 3, 4)}, seed=1, scale=8.0)["x"])


def _conv_plus_operand() -> onnx.ModelProto:
    """A CIM layer whose output an Add broadcasts a runtime (1, 1) operand over."""
    nodes = [node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv0"), node("Add", ["c", "z"], ["y"])]
    return make_model(nodes, {"x": (1, 3, 4, 4), "z": (1, 1)}, ["y"], {"w": rand(8, 3, 3, 3, seed=1)})


def test_synthetic_calibration_keeps_a_broadcast_operand_whole(tmp_path: Path) -> None:
    graph = import_onnx(_conv_plus_operand())
    cal = load_feeds(graph, "synthetic", 16)
    assert {k: v.shape for k, v in cal.feeds.items()} == {"x": (16, 3, 4, 4), "z": (1, 1)}
    assert {k: v.shape for k, v in cal.take(5).items()} == {"x": (5, 3, 4, 4), "z": (1, 1)}
    path = tmp_path / "m.onnx"
    onnx.save(_conv_plus_operand(), str(path))
    compile_model(str(path), tmp_path / "b", CompileOptions(calib_size=16))
    result = validate_build(tmp_path / "b")
    assert result.ok, [str(v) for v in result.violations]
    declared = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
                for i in onnx.load(str(tmp_path / "b" / "model.cim.onnx")).graph.input}
    assert declared == {"x": ["N", 3, 4, 4], "z": [1, 1]}


def test_chunks_split_only_the_inputs_that_carry_the_batch() -> None:
    feeds = {"x": np.zeros((4, 3), np.float32), "z": np.ones((3, 1), np.float32)}
    chunks = split_batch(feeds, 2, frozenset({"x"}))
    assert [(c["x"].shape, c["z"].shape) for c in chunks] == [((2, 3), (3, 1))] * 2


def test_emulator_chunks_keep_a_broadcast_operand_whole(tmp_path: Path) -> None:
    """A model that mixes its batch axis (Flatten on axis 0) runs in chunks of its batch 2; the
    (4, 1) operand broadcast over the result is not cut to (2, 1)."""
    from cimc.emulator import Emulator

    path = tmp_path / "m.onnx"
    onnx.save(make_model([node("Flatten", ["x"], ["f"], axis=0), node("Add", ["f", "z"], ["y"])],
                         {"x": (2, 3), "z": (4, 1)}, ["y"]), str(path))
    compile_model(str(path), tmp_path / "b", CompileOptions(map_fc=True))
    feeds = probe_feeds({"x": (2, 3), "z": (4, 1)}, seed=0, scale=1.0)
    got = Emulator.open(tmp_path / "b").run(feeds).outputs["y"]
    np.testing.assert_array_equal(got, run_ort(onnx.load(str(tmp_path / "b" / "model.cim.onnx")), feeds)["y"])


def test_a_model_of_static_batch_zero_runs_on_an_empty_batch() -> None:
    """An empty input (batch 0) that a Reshape with ``allowzero`` keeps empty: the reference runs
    it as one chunk (it divided by the batch size 0) and equals onnxruntime; samples are refused."""
    model = CASES["reshape_allowzero"]()
    graph = import_onnx(model)
    assert not batch_safe(graph)
    feeds = feeds_for(model, seed=7)
    got = run_compiled(graph, feeds).outputs["y"]
    assert got.shape == (2, 0, 5) and got.shape == run_ort(model, feeds)["y"].shape
    with pytest.raises(UsageError, match="batches of 0"):
        split_batch({"x": np.zeros((2, 2, 3), np.float32)}, 0)
