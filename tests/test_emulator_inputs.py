"""What the emulator refuses before running (``Emulator.feeds``, ``Emulator._layer``): a bare
array for a model of two inputs, a mapping without one of them, and a CIM layer handed a tensor
its bitline product cannot take, and a digital op that cannot run on its inputs are typed
errors, not numpy or onnxruntime tracebacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from cimc.api import CompileOptions, compile_model
from cimc.emulator import Emulator
from cimc.emulator.workspace import Workspace
from cimc.errors import BuildError, UsageError
from tests.cim_helpers import compile_ir, small_cnn, write
from tests.onnx_builders import make_model, node, rand

pytestmark = pytest.mark.torch  # the compile helpers import the zoo


def _two_inputs(tmp_path: Path) -> Emulator:
    """conv(x) + z, compiled: inputs ``x`` (1, 3, 4, 4) and ``z`` (1, 1)."""
    nodes = [node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv0"), node("Add", ["c", "z"], ["y"])]
    path = tmp_path / "m.onnx"
    onnx.save(make_model(nodes, {"x": (1, 3, 4, 4), "z": (1, 1)}, ["y"], {"w": rand(8, 3, 3, 3, seed=1)}), str(path))
    compile_model(str(path), tmp_path / "b", CompileOptions(calib_size=4))
    return Emulator.open(tmp_path / "b")


def test_a_bare_array_for_a_model_of_two_inputs_is_a_usage_error(tmp_path: Path) -> None:
    emu = _two_inputs(tmp_path)
    with pytest.raises(UsageError, match="the model has 2 inputs; pass them by name"):
        emu.run(np.zeros((1, 3, 4, 4), np.float32))


def test_a_mapping_without_one_of_the_inputs_is_a_usage_error(tmp_path: Path) -> None:
    emu = _two_inputs(tmp_path)
    with pytest.raises(UsageError, match="missing input 'z'"):
        emu.run({"x": np.zeros((1, 3, 4, 4), np.float32)})
    both = emu.run({"x": np.zeros((1, 3, 4, 4), np.float32), "z": np.ones((1, 1), np.float32)})
    assert both.outputs["y"].shape == (1, 8, 4, 4)


def test_a_cim_layer_fed_a_tensor_of_other_channels_is_a_build_error(tmp_path: Path) -> None:
    """``graph.json`` wiring a CIM layer to a tensor with fewer channels than its rows read."""
    emu = _two_inputs(tmp_path)
    layer_node = next(n for n, _ in emu.nodes if n.cim_layer is not None)
    with pytest.raises(BuildError, match="cannot run on its input 'x' of shape \\[1, 2, 4, 4\\]"):
        emu._layer(layer_node, 0, np.zeros((1, 2, 4, 4), np.float32), False, Workspace())


def test_a_digital_op_that_cannot_run_on_its_inputs_is_a_build_error(tmp_path: Path) -> None:
    """A MaxPool whose ``graph.json`` attributes ask for a 9×9 window over a 4×4 map: numpy's
    broadcasting error becomes a ``BuildError`` naming the node."""
    graph, ctx = compile_ir(small_cnn(batch=2))
    emu = Emulator.open(write(graph, ctx, tmp_path / "pool"))
    i = next(i for i, (n, _) in enumerate(emu.nodes) if n.op == "MaxPool")
    pool, attrs = emu.nodes[i]
    emu.nodes[i] = (pool, {**attrs, "kernel_shape": [9, 9]})
    with pytest.raises(BuildError, match="node 'mp' \\(MaxPool\\) cannot run on its inputs: ValueError"):
        emu.run(np.zeros((2, 3, 8, 8), np.float32))
