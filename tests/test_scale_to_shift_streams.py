"""scale-to-shift on a residual stream: the layers whose outputs meet at an Add share one gain
``g`` (their remainders moved into their ADC steps relative to it), which the stream's readers
take into their input steps; the three engines agree bit for bit, the shifted model is closer to
the exact scales than with each layer folding its own remainder into its ADC step, a
bias-corrected member keeps its correction and the accuracy report still sees the ADC step
quantize chose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cimc.ir.annotations import CimLayer, QuantParams, Shift
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.ir.tensor import TensorInfo
from cimc.macro import MacroSpec
from cimc.mapping.select import cim_nodes
from cimc.passes import scale_to_shift
from cimc.passes.fold_batchnorm import FoldBatchNorm
from cimc.passes.manager import PassContext, run_passes
from cimc.passes.place_bitlines import PlaceBitlines
from cimc.passes.quantize import LayerBits, Quantize
from cimc.passes.scale_to_shift import ScaleToShift
from cimc.passes.select_cim import SelectCim
from cimc.passes.shift_streams import gain_inputs, is_cim_reader, residual_stream
from cimc.passes.tile_wordlines import TileWordlines
from cimc.quant import numerics
from cimc.quant.calibration import collect_inputs
from cimc.quant.cim_layer import cim_spec
from cimc.quant.loss import layer_losses
from cimc.quant.reference import run_layer
from cimc.quant.step_search import squared_error
from tests.cim_helpers import add_node, assert_three_way, compile_ir, write
from tests.ir_builders import add_conv, add_unary
from tests.shift_builders import batch, shifted, two_conv_cnn

MEMBERS = ["c1", "cb"]


def residual_cnn(skip: str = "Relu", output: bool = False, sigmoid: bool = False) -> Graph:
    """c1 → ``skip`` (Relu, Clip(0, 6), or Sigmoid: no stream) → {cb, Add} ; Add(cb, skip) →
    c2 …; with ``output`` the Add's result is also a graph output, with ``sigmoid`` also read by
    a Sigmoid that is one."""
    def between(g: Graph, y: str) -> str:
        rng = np.random.default_rng(11)
        attrs = {"min": 0.0, "max": 6.0} if skip == "Clip" else {}
        s = add_unary(g, skip, y, "skip", **attrs)
        branch = add_conv(g, s, 8, 3, pad=1, bias=True, rng=rng, name="cb")
        joined = add_node(g, "Add", [branch, s], (1, 8, 8, 8), "add")
        if output:
            g.outputs.append(joined)
        if sigmoid:
            g.outputs.append(add_unary(g, "Sigmoid", joined, "sig"))
        return joined

    return two_conv_cnn(between, seed=5)


@pytest.mark.parametrize("skip,clips", [("Relu", []), ("Clip", ["skip"])])
def test_the_layers_meeting_at_an_add_form_one_stream(skip: str, clips: list[str]) -> None:
    graph, _ = compile_ir(residual_cnn(skip), shift=False)
    for name in MEMBERS:
        stream = residual_stream(graph, graph.node(name))
        assert stream is not None
        assert [n.name for n in stream.members] == MEMBERS
        assert [n.name for n in stream.readers] == ["cb", "c2"]  # cb reads the stream and feeds it
        assert [n.name for n in stream.clips] == clips


@pytest.mark.parametrize("graph", [residual_cnn("Sigmoid"), residual_cnn(output=True), residual_cnn(sigmoid=True),
                                   two_conv_cnn(lambda g, y: add_unary(g, "Relu", y, "r"), seed=5)],
                         ids=["a sigmoid on the skip", "a graph output", "a sigmoid reading the sum", "no add"])
def test_no_stream_without_an_add_of_gain_carrying_tensors(graph: Graph) -> None:
    compiled, _ = compile_ir(graph, shift=False)
    assert residual_stream(compiled, compiled.node("c1")) is None


@pytest.mark.parametrize("skip", ["Relu", "Clip"])
def test_stream_members_share_one_gain_that_the_readers_take(skip: str) -> None:
    graph, ctx = compile_ir(residual_cnn(skip), shift=False)
    out = shifted(graph, ctx)
    gain = out.node("c1").ann[Shift].gain
    assert gain != 1.0
    for name in MEMBERS:
        shift, q = out.node(name).ann[Shift], out.node(name).ann[QuantParams]
        assert (shift.fold, shift.gain) == ("stream", gain)
        input_gain = gain if name == "cb" else 1.0  # cb reads the stream
        true_scale = numerics.output_scale(q.w_step, q.adc_step, q.a_step).astype(np.float64) / input_gain
        np.testing.assert_allclose(gain * true_scale, numerics.shift_scale(shift.k), rtol=1e-6)
    for name in ("cb", "c2"):
        want = graph.node(name).ann[QuantParams].a_step * gain
        assert out.node(name).ann[QuantParams].a_step == pytest.approx(want, rel=1e-6)
    if skip == "Clip":
        assert out.node("skip").attrs["max"] == float(np.float32(6.0 * gain))


@pytest.mark.parametrize("skip,granularity", [("Relu", "layer"), ("Clip", "layer"), ("Relu", "column")])
def test_a_stream_fold_is_bit_exact_three_ways(tmp_path: Path, skip: str, granularity: str) -> None:
    """Per column the members' ``k`` and ADC steps are per column, the stream's gain one number."""
    graph, ctx = compile_ir(residual_cnn(skip), granularity=granularity)
    assert {graph.node(n).ann[Shift].fold for n in MEMBERS} == {"stream"}
    cout = 8 if granularity == "column" else 1
    assert all(graph.node(n).ann[Shift].k.shape == (cout,) for n in MEMBERS)
    assert_three_way(write(graph, ctx, tmp_path / "build"), graph, batch())


def test_the_stream_fold_beats_each_layer_folding_its_own_remainder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Against the exact scales, the model whose members share a gain is closer than the one
    whose members fold their remainders into their ADC steps alone (the fold before streams)."""
    graph, ctx = compile_ir(residual_cnn(), shift=False)
    shifted(graph, ctx)
    stream = ctx.shift.output_sqnr_db
    monkeypatch.setattr(scale_to_shift, "residual_streams", lambda graph, todo: {})
    adc = shifted(graph, ctx)
    assert {adc.node(n).ann[Shift].fold for n in MEMBERS} == {"adc"}
    assert stream > ctx.shift.output_sqnr_db + 1


def _quantized(bias_correction: bool) -> tuple[Graph, PassContext]:
    ctx = PassContext(macro=MacroSpec())
    passes = [FoldBatchNorm(), SelectCim(), TileWordlines(),
              Quantize(calib_size=16, default_bits=LayerBits(8, 8), bias_correction=bias_correction),
              PlaceBitlines()]
    return run_passes(residual_cnn(), passes, ctx), ctx  # type: ignore[arg-type]


def test_a_stream_member_keeps_its_bias_correction() -> None:
    """A bias-corrected member's mean output on its calibration input, divided by the gain, is
    what it was after quantize's correction (the refold measures the new mean in the true units)."""
    graph, ctx = _quantized(bias_correction=True)
    out = ScaleToShift(calib_size=16, bias_correction=True).run(graph, ctx).graph
    node = out.node("c1")  # reads the graph input: no input gain
    assert node.ann[Shift].fold == "stream" and node.ann[Shift].gain != 1.0
    x = collect_inputs(ctx.calibration_graph, ctx.calibration.feeds, ["c1"])["c1"]
    before = run_layer(x, cim_spec(graph, graph.node("c1"))).outputs.mean(axis=(0, 2, 3), dtype=np.float64)
    after = run_layer(x, cim_spec(out, node)).outputs.mean(axis=(0, 2, 3), dtype=np.float64) / node.ann[Shift].gain
    assert float(np.abs(after - before).max()) < 1e-4 * float(np.abs(before).max())


def test_the_accuracy_report_sees_a_members_adc_step_before_the_fold() -> None:
    """``layer_losses`` rebuilds a member's ADC step before the fold (``S_ADC'·g·s/2^−k``): its
    ADC noise is what it was before scale-to-shift."""
    graph, ctx = compile_ir(residual_cnn(), shift=False)
    out = shifted(graph, ctx)
    assert out.node("c1").ann[Shift].fold == "stream"
    before, after = ({r.name: r.sources_db["adc"] for r in layer_losses(g, batch())} for g in (graph, out))
    for name in MEMBERS:
        assert after[name] == pytest.approx(before[name], abs=0.01)


def test_members_are_listed_in_topological_order() -> None:
    graph, _ = compile_ir(residual_cnn(), shift=False)
    stream = residual_stream(graph, graph.node("cb"))
    assert stream is not None and [n.name for n in stream.members] == [n.name for n in cim_nodes(graph)][:2]


def _ops_graph() -> Graph:
    """Tensors ``a``, ``b`` (graph inputs, 1×4×2×2) and the constants ``k`` (a scale) and
    ``shape`` (a Reshape target) for the hand-built nodes below."""
    g = Graph("ops")
    for name in ("a", "b"):
        g.tensors[name] = TensorInfo(name, (1, 4, 2, 2))
        g.inputs.append(name)
    g.set_initializer("k", np.full((1, 4, 1, 1), 2.0, np.float32))
    g.set_initializer("shape", np.array([1, 16], np.int64))
    return g


@pytest.mark.parametrize(("op", "ins", "outs", "want"), [
    ("Add", ["a", "b"], 1, ["a", "b"]), ("Sub", ["b", "a"], 1, ["b", "a"]),
    ("Add", ["a", "k"], 1, None),  # a constant term: (g·a) + k ≠ g·(a + k)
    ("Add", ["k", "a"], 1, None),
    ("Relu", ["a"], 1, ["a"]), ("Reshape", ["a", "shape"], 1, ["a"]),  # the data input only
    ("MaxPool", ["a"], 2, None),  # with its Indices output: not one output
    ("Clip", ["a"], 1, ["a"]), ("Sigmoid", ["a"], 1, None),
    ("Mul", ["a", "k"], 1, ["a"]), ("Mul", ["k", "a"], 1, ["a"]), ("Div", ["a", "k"], 1, ["a"]),
    ("Div", ["k", "a"], 1, None),  # k / (g·a) = (k / a) / g
    ("Mul", ["a", "b"], 1, None), ("Mul", ["a", "a"], 1, None),  # (g·a)·(g·a) = g²·a²
    ("Mul", ["a", "k", "k"], 1, None)])
def test_the_inputs_that_carry_an_ops_gain(op: str, ins: list[str], outs: int, want: list[str] | None) -> None:
    """``gain_inputs`` on one hand-built node: a join of two non-constants, the data input of a
    homogeneous op or constant-bound Clip, the tensor of a product with a constant, else ``None``."""
    g = _ops_graph()
    attrs = {"kernel_shape": (2, 2)} if op == "MaxPool" else {}
    node = Node("n", op, tuple(ins), tuple(f"y{i}" for i in range(outs)), attrs)
    assert gain_inputs(g, node) == want


def test_a_cim_layer_reading_the_tensor_twice_is_no_reader() -> None:
    """``is_cim_reader``: quantized, the tensor its activation (first input) and no other input."""
    node = Node("n", "MatMul", ("a", "a"), ("y",))
    node.ann[CimLayer] = node.ann[QuantParams] = object()
    assert not is_cim_reader(node, "a")
    once = Node("m", "MatMul", ("a", "w"), ("y",), ann=node.ann)
    assert is_cim_reader(once, "a") and not is_cim_reader(once, "w")
    del node.ann[QuantParams]
    assert not is_cim_reader(once, "a")


@pytest.mark.parametrize(("kinds", "columns"), [((1, 1), 1), ((1, 1), 2), ((1, 1), 6), ((2, 1), 2), ((2, 1), 6),
                                                 ((1, 2), 1), ((2, 2), 6)])
def test_the_candidates_errors_are_each_candidates_own(kinds: tuple[int, int], columns: int) -> None:
    """``conversion_errors`` (the partial sums sliced once) equals the error of each candidate
    step alone, for per-layer and per-column steps: an unsliced layer's ``squared_error`` of
    its partial sums, a sliced layer's ``conversion_error`` (its kinds weighted)."""
    w_slices, a_slices = kinds
    rng = np.random.default_rng(4)
    cout = columns if columns > 1 else 6
    p = np.round(rng.standard_normal((300, 3 * w_slices * a_slices, cout)) * 40).astype(np.float32)
    q = QuantParams(w_step=np.ones(p.shape[2], np.float32), a_step=1.0, adc_step=np.full(columns, 3.0, np.float32),
                    w_bits=4 * w_slices, a_bits=4 * a_slices, adc_bits=5, cell_bits=4, dac_bits=4,
                    adc_shift=np.arange(w_slices * a_slices, dtype=np.int64) if w_slices * a_slices > 1 else None)
    assert (q.w_slices, q.a_slices) == kinds
    steps = rng.uniform(1.0, 9.0, (7, columns))
    if kinds == (1, 1):
        want = np.stack([squared_error(p, step, q.adc_bits, True, 2 if columns > 1 else None) for step in steps])
    else:
        want = np.stack([scale_to_shift.conversion_error(p, step, q) for step in steps])
    got = scale_to_shift.conversion_errors(p, steps, q)
    assert got.shape == want.shape == (7, columns) and np.array_equal(got, want)
