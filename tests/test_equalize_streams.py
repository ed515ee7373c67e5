"""equalize with ``--equalize-scope streams``: residual streams (every Conv writing into tensors
joined by Adds shares one scale per channel with every Conv reading them) and the classifier
after global pooling are equalised too; the float function is unchanged (onnxruntime on the
original model against onnxruntime on the exported equalized graph), the shared ranges come
out equal, and the option reaches the pass and the manifest only when set."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from cimc.api import CompileOptions
from cimc.errors import UsageError
from cimc.frontend import import_onnx
from cimc.frontend.onnx_export import export_onnx
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.passes import equalize as eq
from cimc.passes.fold_batchnorm import FoldBatchNorm
from cimc.passes.manager import PassContext
from cimc.passes.registry import get as get_pass
from tests.onnx_builders import make_model, node, run_ort
from tests.test_equalize import _weights, close


def residual_net(seed: int = 0, trans_b: int = 1) -> onnx.ModelProto:
    """MobileNetV2-like: stem conv 3→8 (writer) → [expand 8→16 → ReLU6 → project 16→8 (writer)]
    + skip, twice (two Adds: a stream of three writers, read by both expansions and the head);
    head conv 8→12 → ReLU6 → GlobalAveragePool → Flatten → Gemm 12→5 (``transB`` as given)."""
    rng = np.random.default_rng(seed)
    inits = {"w0": _weights(rng, 8, 3, 3, 3), "b0": rng.standard_normal(8).astype(np.float32),
             "e1": _weights(rng, 16, 8, 1, 1), "p1": _weights(rng, 8, 16, 1, 1),
             "e2": _weights(rng, 16, 8, 1, 1), "p2": _weights(rng, 8, 16, 1, 1),
             "pb": rng.standard_normal(8).astype(np.float32),
             "wh": _weights(rng, 12, 8, 1, 1), "fc": rng.standard_normal((5, 12) if trans_b else (12, 5))
             .astype(np.float32), "fb": rng.standard_normal(5).astype(np.float32),
             "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)}
    nodes = [node("Conv", ["x", "w0", "b0"], ["s0"], pads=[1, 1, 1, 1])]
    for i in (1, 2):
        nodes += [node("Conv", [f"s{i - 1}", f"e{i}"], [f"u{i}"]), node("Clip", [f"u{i}", "lo", "hi"], [f"v{i}"]),
                  node("Conv", [f"v{i}", f"p{i}", "pb"], [f"d{i}"]), node("Add", [f"s{i - 1}", f"d{i}"], [f"s{i}"])]
    nodes += [node("Conv", ["s2", "wh"], ["h"]), node("Clip", ["h", "lo", "hi"], ["r"]),
              node("GlobalAveragePool", ["r"], ["g"]), node("Flatten", ["g"], ["f"], axis=1),
              node("Gemm", ["f", "fc", "fb"], ["y"], transB=trans_b)]
    return make_model(nodes, {"x": (2, 3, 8, 8)}, ["y"], inits)


def feeds(seed: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((2, 3, 8, 8)).astype(np.float32)}


def folded(model: onnx.ModelProto) -> Graph:
    return FoldBatchNorm().run(import_onnx(model), PassContext(macro=MacroSpec())).graph


def streamed(model: onnx.ModelProto) -> Graph:
    result = eq.Equalize(scope="streams").run(folded(model), PassContext(macro=MacroSpec()))
    assert result.modified
    return result.graph


def shapes(graph: Graph, groups: list[eq.Group]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Each group's writers and readers by their weight names."""
    def weight(name: str) -> str:
        return graph.node(name).inputs[1]
    return [(tuple(map(weight, g.writers)), tuple(map(weight, g.readers))) for g in groups]


@pytest.mark.parametrize("trans_b", [1, 0])
def test_the_stream_and_the_classifier_are_found_only_in_scope_streams(trans_b: int) -> None:
    graph = folded(residual_net(trans_b=trans_b))
    pairs = eq.find_groups(graph, "pairs")
    assert shapes(graph, pairs) == [(("e1",), ("p1",)), (("e2",), ("p2",))]
    assert shapes(graph, eq.find_groups(graph, "streams")) == [
        *shapes(graph, pairs), (("w0", "p1", "p2"), ("e1", "e2", "wh")), (("wh",), ("fc",))]


@pytest.mark.parametrize("trans_b", [1, 0])
def test_the_float_function_is_unchanged(trans_b: int) -> None:
    model = residual_net(trans_b=trans_b)
    close(run_ort(export_onnx(streamed(model)), feeds())["y"], run_ort(model, feeds())["y"])


def test_the_check_can_fail_when_one_writer_of_the_stream_is_left_unscaled(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream whose last writer keeps its channels (the Add then sums differently scaled
    tensors) changes the function: the check above sees it."""
    real = eq._stream

    def partial(graph: Graph, start: str) -> eq.Group | None:
        g = real(graph, start)
        return None if g is None else eq.Group(tuple(sorted(g.writers))[:-1], g.act, g.readers)

    monkeypatch.setattr(eq, "_stream", partial)
    model = residual_net()
    got, want = run_ort(export_onnx(streamed(model)), feeds())["y"], run_ort(model, feeds())["y"]
    assert np.abs(got - want).max() > 1e-2 * np.abs(want).max()


def test_the_check_can_fail_when_the_classifier_keeps_its_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eq, "_set_matrix", lambda graph, node, w: None)
    model = residual_net()
    got, want = run_ort(export_onnx(streamed(model)), feeds())["y"], run_ort(model, feeds())["y"]
    assert np.abs(got - want).max() > 1e-2 * np.abs(want).max()


def test_the_largest_writer_and_reader_ranges_of_every_channel_come_out_equal() -> None:
    graph = streamed(residual_net())
    for g in eq.find_groups(graph, "streams"):
        r1 = np.max([np.abs(w := eq.weight_as_conv(graph, graph.node(n))).reshape(w.shape[0], -1).max(axis=1)
                     for n in g.writers], axis=0)
        r2 = np.max([eq.in_channel_ranges(eq.weight_as_conv(graph, graph.node(n)),
                                          int(graph.node(n).attrs.get("group", 1))) for n in g.readers], axis=0)
        np.testing.assert_allclose(r1, r2, rtol=1e-4)


def test_a_stream_read_by_another_op_or_broadcast_is_left_alone() -> None:
    rng = np.random.default_rng(0)
    inits = {"w1": _weights(rng, 4, 3, 1, 1), "w2": _weights(rng, 4, 4, 1, 1), "w3": _weights(rng, 4, 4, 1, 1),
             "w4": _weights(rng, 1, 3, 1, 1)}
    sigmoid = [node("Conv", ["x", "w1"], ["c1"]), node("Conv", ["c1", "w2"], ["c2"]), node("Add", ["c1", "c2"], ["s"]),
               node("Sigmoid", ["s"], ["g"]), node("Conv", ["s", "w3"], ["t"]), node("Mul", ["t", "g"], ["y"])]
    broadcast = [node("Conv", ["x", "w1"], ["c1"]), node("Conv", ["x", "w4"], ["c4"]), node("Add", ["c1", "c4"], ["s"]),
                 node("Conv", ["s", "w3"], ["y"])]
    for nodes in (sigmoid, broadcast):
        graph = import_onnx(make_model(nodes, {"x": (1, 3, 4, 4)}, ["y"], inits))
        assert eq.find_groups(graph, "streams") == eq.find_groups(graph, "pairs")


def test_the_option_reaches_the_pass_and_is_recorded_only_when_set() -> None:
    assert "equalize_scope" not in CompileOptions(equalize=True).public()
    options = CompileOptions(equalize=True, equalize_scope="streams")
    assert options.public()["equalize_scope"] == "streams"
    assert get_pass("equalize").from_options(options) == eq.Equalize(scope="streams")
    assert get_pass("equalize").from_options(CompileOptions(equalize=True)) == eq.Equalize()
    with pytest.raises(UsageError, match="needs --equalize"):
        CompileOptions(equalize_scope="streams")
