"""equalize (cross-layer equalisation, ``--equalize``): the float function is unchanged
(onnxruntime on the original model against onnxruntime on the exported equalized graph),
ReLU6 bounds move per channel instead of changing the function, the ranges come out equal,
and the option reaches the pipeline and the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from cimc.api import CompileOptions
from cimc.cli.main import main
from cimc.errors import UsageError
from cimc.frontend import import_onnx
from cimc.frontend.onnx_export import export_onnx
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.passes import equalize as eq
from cimc.passes.fold_batchnorm import FoldBatchNorm
from cimc.passes.manager import PassContext
from cimc.passes.pipelines import DEFAULT
from tests.onnx_builders import make_model, node, run_ort


def _weights(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Random weights whose output channels span four decades of range (what CLE evens out)."""
    spread = 10.0 ** rng.uniform(-2, 2, size=(shape[0], 1, 1, 1))
    return (rng.standard_normal(shape) * spread).astype(np.float32)


def depthwise_net(act: str = "clip", seed: int = 0) -> onnx.ModelProto:
    """conv 3→8 → ReLU6 (or ``act``) → depthwise 3×3 → ReLU6 → pointwise 8→6 → conv 6→4 (no act)
    → grouped conv 4→4 (2 groups), with biases."""
    rng = np.random.default_rng(seed)
    inits = {"w1": _weights(rng, 8, 3, 3, 3), "b1": rng.standard_normal(8).astype(np.float32),
             "w2": _weights(rng, 8, 1, 3, 3), "b2": rng.standard_normal(8).astype(np.float32),
             "w3": _weights(rng, 6, 8, 1, 1), "b3": rng.standard_normal(6).astype(np.float32),
             "w4": _weights(rng, 4, 6, 1, 1), "w5": _weights(rng, 4, 2, 3, 3),
             "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)}

    def activation(x: str, y: str) -> onnx.NodeProto:
        if act == "clip":
            return node("Clip", [x, "lo", "hi"], [y])
        return node("LeakyRelu", [x], [y], alpha=0.1) if act == "leaky" else node("Relu", [x], [y])

    nodes = [node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), activation("c1", "a1"),
             node("Conv", ["a1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], group=8), activation("c2", "a2"),
             node("Conv", ["a2", "w3", "b3"], ["c3"]), node("Conv", ["c3", "w4"], ["c4"]),
             node("Conv", ["c4", "w5"], ["y"], pads=[1, 1, 1, 1], group=2)]
    return make_model(nodes, {"x": (2, 3, 8, 8)}, ["y"], inits)


def feeds(seed: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((2, 3, 8, 8)).astype(np.float32)}


def equalized(model: onnx.ModelProto) -> Graph:
    ctx = PassContext(macro=MacroSpec())
    graph = FoldBatchNorm().run(import_onnx(model), ctx).graph
    result = eq.Equalize().run(graph, ctx)
    assert result.modified
    return result.graph


def close(got: np.ndarray, want: np.ndarray) -> None:
    """Equal up to float32 rounding of the rescaled weights (relative to the output's scale)."""
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(np.abs(want).max()))


@pytest.mark.parametrize("act", ["clip", "relu", "leaky"])
def test_the_equalized_float_model_computes_the_same_function(act: str) -> None:
    model = depthwise_net(act)
    want = run_ort(model, feeds())["y"]
    assert len(eq.find_pairs(import_onnx(model))) == 4  # conv1→dw, dw→pw, pw→conv4, conv4→grouped
    graph = equalized(model)
    close(run_ort(export_onnx(graph), feeds())["y"], want)


def test_relu6_bounds_move_per_channel_and_never_change_the_function() -> None:
    model = depthwise_net("clip")
    x = feeds()
    inner = onnx.ModelProto()
    inner.CopyFrom(model)
    inner.graph.output.append(onnx.helper.make_tensor_value_info("c1", onnx.TensorProto.FLOAT, None))
    assert (run_ort(inner, x)["c1"] > 6).mean() > 0.05, "the data must drive the ReLU6 into its upper bound"
    graph = equalized(model)
    assert [(n.attrs["min"], n.attrs["max"]) for n in graph.nodes if n.op == "Clip"] == [(0.0, 6.0)] * 2
    scales = [graph.initializers[n.inputs[1]] for n in graph.nodes if n.op == "Mul"]
    assert len(scales) == 4 and all(k.shape == (1, 8, 1, 1) and np.ptp(k) > 0 for k in scales)
    close(run_ort(export_onnx(graph), x)["y"], run_ort(model, x)["y"])


def test_keeping_the_scalar_relu6_bound_would_change_the_function(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: with the Clip left as it was, the outputs differ."""
    monkeypatch.setattr(eq, "_rescale_clip", lambda graph, clip, s: None)
    model = depthwise_net("clip")
    got = run_ort(export_onnx(equalized(model)), feeds())["y"]
    want = run_ort(model, feeds())["y"]
    assert np.abs(got - want).max() > 1e-2 * np.abs(want).max()


def test_the_ranges_of_every_pair_come_out_equal() -> None:
    graph = equalized(depthwise_net("relu"))
    for pair in eq.find_pairs(graph):
        w1 = graph.initializers[graph.node(pair.conv1).inputs[1]]
        w2 = graph.initializers[graph.node(pair.conv2).inputs[1]]
        r1 = np.abs(w1).reshape(w1.shape[0], -1).max(axis=1)
        r2 = eq.in_channel_ranges(w2, int(graph.node(pair.conv2).attrs.get("group", 1)))
        np.testing.assert_allclose(r1, r2, rtol=1e-4)


def test_a_tensor_with_two_readers_or_a_silu_ends_a_pair() -> None:
    rng = np.random.default_rng(0)
    inits = {"w1": _weights(rng, 4, 3, 1, 1), "w2": _weights(rng, 4, 4, 1, 1), "w3": _weights(rng, 4, 4, 1, 1)}
    nodes = [node("Conv", ["x", "w1"], ["c1"]), node("Conv", ["c1", "w2"], ["c2"]), node("Add", ["c1", "c2"], ["s"]),
             node("Sigmoid", ["s"], ["g"]), node("Mul", ["s", "g"], ["h"]), node("Conv", ["h", "w3"], ["y"])]
    graph = import_onnx(make_model(nodes, {"x": (1, 3, 4, 4)}, ["y"], inits))
    assert eq.find_pairs(graph) == []
    assert not eq.Equalize().run(graph, PassContext(macro=MacroSpec())).modified


def test_the_option_inserts_the_pass_after_fold_batchnorm_and_is_recorded_only_when_set() -> None:
    assert CompileOptions().pipeline() == DEFAULT and "equalize" not in CompileOptions().public()
    options = CompileOptions(equalize=True)
    assert options.pipeline() == ("fold-batchnorm", "equalize", *DEFAULT[1:])
    assert options.public()["equalize"] is True and "passes" not in options.public()
    with pytest.raises(UsageError, match="--passes leaves out"):
        CompileOptions(equalize=True, passes=tuple(DEFAULT)).pipeline()


def test_compile_with_equalize_writes_it_to_the_manifest(tmp_path: Path) -> None:
    path = tmp_path / "net.onnx"
    onnx.save(depthwise_net("clip"), path)
    result = CliRunner().invoke(main, ["compile", str(path), "--equalize", "--no-shift", "-o", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["options"]["equalize"] is True and "passes" not in manifest["options"]
    result = CliRunner().invoke(main, ["passes"])
    assert "equalize" in result.stdout and "cross-layer equalisation" in result.stdout


def test_a_model_with_quantization_steps_is_refused() -> None:
    graph = import_onnx(depthwise_net("relu"))
    graph.metadata["cimc.quant"] = "{}"
    with pytest.raises(UsageError, match="quantization steps"):
        eq.Equalize().requires(graph, PassContext(macro=MacroSpec()))


def test_a_channel_the_next_conv_almost_ignores_keeps_the_function() -> None:
    """``r2 ≈ 0`` would ask for ``s = √(r1/r2)`` near 10^15: the total is bounded, and the function kept."""
    model = depthwise_net("clip")
    w3 = next(t for t in model.graph.initializer if t.name == "w3")
    value = onnx.numpy_helper.to_array(w3).copy()
    value[:, 0] = 1e-30
    w3.CopyFrom(onnx.numpy_helper.from_array(value, "w3"))
    graph = equalized(model)
    scales = [graph.initializers[n.inputs[1]] for n in graph.nodes if n.op == "Mul"]
    assert max(float(np.abs(np.log2(k)).max()) for k in scales) <= 24 + 1e-6
    close(run_ort(export_onnx(graph), feeds())["y"], run_ort(model, feeds())["y"])
