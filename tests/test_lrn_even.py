"""LRN of any size: the kernel follows ONNX's window (also for even sizes, which onnxruntime's
LRN refuses, and sizes beyond the channel count, in memory independent of the size), and a
model with an LRN of any size compiles to a ``model.cim.onnx`` that onnxruntime loads and runs
bit for bit like the emulator (``cimc.lowering.lrn``: onnxruntime's own float32 LRN differs
from the kernel in the last bit)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cimc.api import CompileOptions, compile_model
from cimc.errors import InvalidModelError
from cimc.frontend import import_onnx
from cimc.ir.interpreter import run
from cimc.lowering.model import cim_model, float_model, serialize
from cimc.ops import op_table
from cimc.quant.reference import PROBES, probe_feeds, run_compiled
from tests.cim_helpers import assert_three_way
from tests.onnx_builders import make_model, node, rand, single


def _spec(x: np.ndarray, size: int, alpha: float, beta: float, bias: float) -> np.ndarray:
    """ONNX's definition, channel by channel, in float64."""
    c_count, lo, hi = x.shape[1], (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = x.astype(np.float64) ** 2
    out = np.empty_like(sq)
    for c in range(c_count):
        window = sq[:, max(0, c - lo):min(c_count - 1, c + hi) + 1].sum(axis=1)
        out[:, c] = x[:, c] / (bias + alpha / size * window) ** beta
    return out


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6, 7, 8, 13, 20])
def test_kernel_follows_the_onnx_window(size: int) -> None:
    x = rand(2, 6, 3, 3, seed=size) * 3
    attrs = {"size": size, "alpha": 0.3, "beta": 0.75, "bias": 1.5}
    got = op_table()["LRN"].kernel([x], attrs)
    np.testing.assert_allclose(got, _spec(x, **attrs), rtol=2e-7, atol=0)


def test_a_huge_size_costs_no_memory() -> None:
    x = rand(1, 4, 2, 2)
    tracemalloc.start()
    try:
        got = op_table()["LRN"].kernel([x], {"size": 10**12, "alpha": 1.0, "beta": 0.5, "bias": 1.0})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(got, x / np.sqrt(1.0 + 1e-12 * (x.astype(np.float64) ** 2).sum(1, keepdims=True)),
                               rtol=1e-6)
    assert peak < 2**20


def test_size_must_be_positive() -> None:
    with pytest.raises(InvalidModelError, match="positive size"):
        import_onnx(single("LRN", {"x": (1, 4, 2, 2)}, size=0))


def _lrn_cnn(size: int) -> onnx.ModelProto:
    w1, w2 = rand(8, 3, 3, 3, seed=1), rand(4, 8, 1, 1, seed=2)
    nodes = [node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1], name="conv1"), node("Relu", ["c"], ["r"]),
             node("LRN", ["r"], ["n"], size=size, alpha=0.01, beta=0.75, bias=1.0, name="lrn"),
             node("Conv", ["n", "w2"], ["y"], name="conv2")]
    return make_model(nodes, {"x": (1, 3, 8, 8)}, ["y"], {"w1": w1, "w2": w2})


@pytest.mark.parametrize("size", [2, 3, 4, 5])
def test_lrn_compiles_to_a_model_onnxruntime_runs_bit_exact(tmp_path: Path, size: int) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_lrn_cnn(size), str(path))
    result = compile_model(str(path), tmp_path / "b", CompileOptions())
    cim = onnx.load(str(tmp_path / "b" / "model.cim.onnx"))
    assert "LRN" not in {n.op_type for n in cim.graph.node} and "CumSum" in {n.op_type for n in cim.graph.node}
    x = rand(3, 3, 8, 8, seed=7) * 2
    for optimize in (False, True):  # emulator == reference == onnxruntime, every layer and output
        assert_three_way(tmp_path / "b", result.graph, x, optimize=optimize)


@pytest.mark.parametrize(("size", "alpha", "beta", "bias"), [(3, 1e-4, 0.75, 1.0), (5, 0.01, 0.5, 2.0),
                                                          (7, 0.3, 1.0, 1.5)])
def test_odd_lrn_of_model_cim_onnx_equals_the_reference(size: int, alpha: float, beta: float, bias: float) -> None:
    """onnxruntime's own (float32) LRN differed from the kernel in the last bit on about half the
    values: ``model.cim.onnx`` writes the kernel's float64 steps instead; the float model keeps LRN."""
    graph = import_onnx(single("LRN", {"x": (64, 9, 4, 4)}, size=size, alpha=alpha, beta=beta, bias=bias))
    assert "LRN" in {n.op_type for n in float_model(graph).graph.node}
    model = cim_model(graph)
    assert "LRN" not in {n.op_type for n in model.graph.node}
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(serialize(model), opts, providers=["CPUExecutionProvider"])
    for seed, scale in PROBES:
        x = probe_feeds({"x": (64, 9, 4, 4)}, seed, scale)
        np.testing.assert_array_equal(session.run(None, x)[0], run_compiled(graph, x).outputs["y"])


@pytest.mark.parametrize(("size", "beta"), [(2, 0.75), (4, 0.5), (6, 1.0), (10, 0.75)])
def test_the_lowering_equals_the_kernel_bit_for_bit(size: int, beta: float) -> None:
    """The float model of a lone even-size LRN: onnxruntime gives exactly the kernel's values."""
    graph = import_onnx(single("LRN", {"x": (2, 7, 3, 3)}, size=size, alpha=0.2, beta=beta, bias=1.25))
    x = rand(2, 7, 3, 3, seed=size) * 4
    model = float_model(graph)
    assert "LRN" not in {n.op_type for n in model.graph.node}
    got = ort.InferenceSession(serialize(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, run(graph, {"x": x})["y"])
