"""The two reference executors' contracts beyond their numbers (found unchecked by the mutation
run, docs/mutation.md): typed errors for a missing input or an op without a kernel, tensors
freed after their last reader, and the probe batches' distribution."""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import pytest

from cimc.errors import InvalidModelError, UnsupportedError
from cimc.ir import interpreter
from cimc.ir.graph import Graph
from cimc.ops import find
from cimc.quant import reference
from tests.ir_builders import add_unary, graph_with_input


def _chain(ops: int) -> Graph:
    """x → Relu → Relu → … (``ops`` nodes); the last output is the graph output."""
    g = graph_with_input((2, 3))
    y = "x"
    for i in range(ops):
        y = add_unary(g, "Relu", y, f"r{i}")
    g.outputs.append(y)
    return g


def test_interpreter_names_a_missing_input() -> None:
    with pytest.raises(InvalidModelError, match="missing input"):
        interpreter.run(_chain(1), {})


def test_interpreter_refuses_an_op_without_a_kernel() -> None:
    g = _chain(1)
    g.node("r0").op = "NoSuchOp"
    with pytest.raises(UnsupportedError, match="NoSuchOp"):
        interpreter.run(g, {"x": np.ones((2, 3), np.float32)})


def test_interpreter_keeps_every_tensor_only_when_asked() -> None:
    g = _chain(3)
    x = np.float32([[1, -2, 3], [-4, 5, -6]])
    kept = interpreter.run(g, {"x": x}, keep=True)
    assert {"r0.y", "r1.y", "r2.y"} <= set(kept)
    assert set(interpreter.run(g, {"x": x})) == {"r2.y"}


def _alive_while_running(monkeypatch: pytest.MonkeyPatch, executor: Any, run: Any) -> list[list[bool]]:
    """Run ``run()`` with ``executor.find`` returning a Relu that records, at each call, which of
    the outputs made by earlier calls are still alive (weak references)."""
    relu = find("Relu")
    assert relu is not None
    made: list[weakref.ref[np.ndarray]] = []
    alive_at: list[list[bool]] = []

    class Spy:
        double, promotes, weight_inputs = relu.double, relu.promotes, relu.weight_inputs

        @staticmethod
        def kernel(args: list[np.ndarray], attrs: dict[str, Any]) -> np.ndarray:
            alive_at.append([r() is not None for r in made])
            out = relu.kernel(args, attrs).copy()
            made.append(weakref.ref(out))
            return out

    monkeypatch.setattr(executor, "find", lambda op: Spy)
    run()
    return alive_at


def test_interpreter_frees_each_tensor_after_its_last_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """When node ``i`` runs, the output of node ``i − 2`` (read only by node ``i − 1``) is gone."""
    alive_at = _alive_while_running(
        monkeypatch, interpreter, lambda: interpreter.run(_chain(4), {"x": np.ones((2, 3), np.float32)}))
    assert alive_at[2] == [False, True] and alive_at[3] == [False, False, True]


def test_compiled_run_names_a_missing_input() -> None:
    with pytest.raises(InvalidModelError, match="missing input"):
        reference.run_compiled(_chain(1), {})


def test_digital_op_without_a_kernel_is_unsupported() -> None:
    with pytest.raises(UnsupportedError, match="NoSuchOp"):
        reference.digital_op("NoSuchOp", [np.ones(2, np.float32)], {})


def test_probe_feeds_are_seeded_standard_normals_times_the_scale() -> None:
    shapes = {"a": (4000,), "b": (2, 3)}
    feeds = reference.probe_feeds(shapes, 0, 8.0)
    assert feeds["a"].dtype == np.float32 and feeds["b"].shape == (2, 3)
    assert 7.5 < float(feeds["a"].std()) < 8.5
    np.testing.assert_array_equal(feeds["a"], reference.probe_feeds(shapes, 0, 8.0)["a"])
    assert [scale for _, scale in reference.PROBES] == [1.0, 8.0]


def test_mapped_cim_layers_without_quant_params_run_as_float_ops() -> None:
    """A graph mapped onto the macro but not quantized (CimLayer annotations, no QuantParams)
    runs every layer as its float op: the outputs of the unmapped graph (the interpreter's, to
    float32 rounding: it sums in another precision), and no layer trace."""
    from cimc.ir.annotations import CimLayer, QuantParams
    from cimc.passes.fold_batchnorm import FoldBatchNorm
    from cimc.passes.manager import PassContext, run_passes
    from cimc.passes.select_cim import SelectCim
    from cimc.passes.tile_wordlines import TileWordlines
    from tests.cim_helpers import SMALL, small_cnn

    graph = small_cnn()
    mapped = run_passes(graph.copy(), [FoldBatchNorm(), SelectCim(map_fc=True), TileWordlines()],
                        PassContext(macro=SMALL))
    layers = [n for n in mapped.nodes if CimLayer in n.ann]
    assert len(layers) == 3 and not any(QuantParams in n.ann for n in layers)
    x = np.random.default_rng(4).standard_normal((2, 3, 8, 8)).astype(np.float32)
    run = reference.run_compiled(mapped, {"x": x}, record=True)
    assert run.traces == {}
    np.testing.assert_array_equal(run.outputs["fc.y"], reference.run_compiled(graph, {"x": x}).outputs["fc.y"])
    np.testing.assert_allclose(run.outputs["fc.y"], interpreter.run(graph, {"x": x})["fc.y"], rtol=1e-5)


def test_the_probe_batches_are_not_one_batch_scaled() -> None:
    """The two probes draw different batches (their seeds differ): ×8 is a second sample of
    larger values, not the first one's values ×8 (a ReLU network's sign pattern would repeat)."""
    (seed_a, scale_a), (seed_b, scale_b) = reference.PROBES
    a = reference.probe_feeds({"x": (64,)}, seed_a, scale_a)["x"]
    b = reference.probe_feeds({"x": (64,)}, seed_b, scale_b)["x"]
    assert not np.array_equal(np.sign(a), np.sign(b))
    assert not np.allclose(a * (scale_b / scale_a), b)


def test_im2col_of_a_padded_conv_has_one_row_per_output_pixel() -> None:
    """``im2col`` of a padded convolution: ``(G, N·Ho·Wo, rows)``, every window of the N images
    and no other (zero padding on H and W only), each the input's values under the kernel."""
    from cimc.quant.cim_layer import CimSpec

    x = np.arange(2 * 2 * 3 * 3, dtype=np.float32).reshape(2, 2, 3, 3) + 1
    w = np.ones((4, 2, 3, 3), np.float32)
    spec = CimSpec("t", "conv", w, np.zeros(4, np.float32), 1, (1, 1), (1, 1, 1, 1), (1, 1), (0, 18), None, None)
    cols, ho, wo = reference.im2col(x, spec)
    assert (ho, wo) == (3, 3) and cols.shape == (1, 2 * 9, 18)
    np.testing.assert_array_equal(cols[0].sum(axis=1), reference.segment_sums(x, w, spec)[:, 0, 0].reshape(-1))


def test_compiled_run_frees_each_tensor_after_its_last_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """As the interpreter: when node ``i`` runs, the output of node ``i − 2`` is gone."""
    alive_at = _alive_while_running(
        monkeypatch, reference, lambda: reference.run_compiled(_chain(4), {"x": np.ones((2, 3), np.float32)}))
    assert alive_at[2] == [False, True] and alive_at[3] == [False, False, True]
