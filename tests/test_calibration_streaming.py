"""Calibration streams layer by layer: quantize calibrates each CIM layer as soon as the
interpreter has computed its float input and drops it, and scale-to-shift recomputes the inputs
its ADC folds need from the same float graph. The values are those of one full run, so the
steps are unchanged; the peak memory no longer holds every layer's input at once."""

from __future__ import annotations

import tracemalloc
from dataclasses import replace

import numpy as np
import pytest

from cimc.ir import interpreter
from cimc.ir.annotations import QuantParams, Shift
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.mapping.select import cim_nodes
from cimc.passes.manager import PassContext, run_passes
from cimc.passes.quantize import LayerBits, Quantize, calibrate_layer
from cimc.passes.scale_to_shift import ScaleToShift
from cimc.passes.select_cim import SelectCim
from cimc.passes.tile_wordlines import TileWordlines
from cimc.quant import numerics, slicing
from cimc.quant.blas import single_blas_thread
from cimc.quant.calibration import collect_inputs, load_feeds, partial_sums, stream_inputs
from cimc.quant.cim_layer import CimSpec, cim_spec
from cimc.quant.reference import im2col_at, segment_matmul
from cimc.quant.step_search import subsample
from tests.ir_builders import add_conv, add_unary, graph_with_input

MACRO = MacroSpec(name="stream-test", wordlines=64, bitlines=64, adcs=16, load_cycles=32)
LAYERS, CHANNELS, SIDE, BATCH = 16, 8, 32, 16


def chain(layers: int = LAYERS) -> Graph:
    """``layers`` × (3×3 conv, pad 1 → ReLU) on ``(BATCH, 8, 32, 32)``: every CIM input is as big."""
    rng = np.random.default_rng(0)
    g = graph_with_input((1, CHANNELS, SIDE, SIDE))
    y = "x"
    for i in range(layers):
        y = add_unary(g, "Relu", add_conv(g, y, CHANNELS, 3, pad=1, bias=True, rng=rng, name=f"c{i}"), f"r{i}")
    g.outputs.append(y)
    return g


def tiled(graph: Graph) -> tuple[Graph, PassContext]:
    ctx = PassContext(macro=MACRO)
    return run_passes(graph, [SelectCim(), TileWordlines()], ctx), ctx


def test_stream_yields_the_values_of_a_full_run() -> None:
    g = chain(4)
    feeds = {"x": np.random.default_rng(1).standard_normal((1, CHANNELS, SIDE, SIDE)).astype(np.float32)}
    full = interpreter.run(g, feeds, keep=True)
    watch = {"x", "c1.y", "r2.y"}
    got = dict(interpreter.stream(g, feeds, watch))
    assert set(got) == watch
    for name in watch:
        np.testing.assert_array_equal(got[name], full[name])


def test_a_run_retains_only_what_it_is_asked_for() -> None:
    g = chain(4)
    feeds = {"x": np.random.default_rng(1).standard_normal((1, CHANNELS, SIDE, SIDE)).astype(np.float32)}
    out = interpreter.run(g, feeds, retain={"r0.y", "c2.y"})
    assert set(out) == {"r0.y", "c2.y", *g.outputs}
    full = interpreter.run(g, feeds, keep=True)
    np.testing.assert_array_equal(out["c2.y"], full["c2.y"])


def test_streamed_inputs_equal_collected_ones() -> None:
    graph, _ = tiled(chain(5))
    feeds = load_feeds(graph, "synthetic", 4).feeds
    names = [n.name for n in cim_nodes(graph)]
    collected = collect_inputs(graph, feeds, names)
    streamed = dict(stream_inputs(graph, feeds, names))
    assert list(streamed) == names
    for name in names:
        np.testing.assert_array_equal(streamed[name], collected[name])


def test_quantize_steps_are_those_of_the_collected_inputs() -> None:
    graph, ctx = tiled(chain(5))
    out = Quantize(calib_size=4).run(graph, ctx).graph
    inputs = collect_inputs(graph, ctx.calibration.feeds, [n.name for n in cim_nodes(graph)])
    assert list(ctx.calibration_inputs) == ["c4"] and ctx.calibration_graph is graph  # the terminal layer's only
    with single_blas_thread():  # as quantize computes them (threaded BLAS sums in another order)
        kept = collect_inputs(graph, ctx.calibration.feeds, ["c4"])["c4"]
    np.testing.assert_array_equal(ctx.calibration_inputs["c4"], kept)
    for node in cim_nodes(out):
        want = calibrate_layer(cim_spec(graph, graph.node(node.name)), inputs[node.name],
                               LayerBits().resolve(MACRO), "layer", "mse", MACRO)
        got = node.ann[QuantParams]
        assert (got.w_step.tobytes(), got.a_step, got.adc_step.tobytes()) == \
            (want.w_step.tobytes(), want.a_step, want.adc_step.tobytes())


@pytest.mark.parametrize("granularity", ["layer", "column"])
def test_scale_to_shift_recomputes_the_inputs_quantize_streamed(granularity: str) -> None:
    """Per column every layer folds into its ADC step, which reads its calibration input: the
    recomputed inputs give the same shifts as inputs handed over by quantize (the old route)."""
    graph, ctx = tiled(chain(5))
    quantized = Quantize(granularity=granularity, calib_size=4).run(graph, ctx).graph
    streamed = ScaleToShift(calib_size=4).run(quantized, ctx).graph
    handed = PassContext(macro=MACRO, calibration=ctx.calibration, quantize=ctx.quantize)
    handed.calibration_inputs = collect_inputs(graph, ctx.calibration.feeds, [n.name for n in cim_nodes(graph)])
    old = ScaleToShift(calib_size=4).run(quantized, handed).graph
    folds = [node.ann[Shift].fold for node in cim_nodes(streamed)]
    if granularity == "column":
        assert folds.count("adc") == len(folds)
    for a, b in zip(cim_nodes(streamed), cim_nodes(old), strict=True):
        assert a.ann[QuantParams].adc_step.tobytes() == b.ann[QuantParams].adc_step.tobytes()
        assert a.ann[Shift].k.tobytes() == b.ann[Shift].k.tobytes()


def test_scale_to_shift_reads_the_terminal_input_quantize_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per layer only the last layer (no CIM layer after it) folds into its ADC step: it reads
    the input quantize kept, so scale-to-shift runs the float graph no second time."""
    graph, ctx = tiled(chain(5))
    quantized = Quantize(calib_size=4).run(graph, ctx).graph

    def refuse(*args: object) -> None:
        raise AssertionError("scale-to-shift recomputed a calibration input")

    monkeypatch.setattr("cimc.passes.scale_to_shift.stream_inputs", refuse)
    out = ScaleToShift(calib_size=4).run(quantized, ctx).graph
    assert [node.ann[Shift].fold for node in cim_nodes(out)] == ["activation"] * 4 + ["adc"]


def calibration_peak(layers: int) -> int:
    """Peak traced bytes of quantize and scale-to-shift per column (every layer folds into its
    ADC step, so scale-to-shift reads every input again) on a chain of ``layers`` layers."""
    graph, ctx = tiled(chain(layers))
    ctx.calibration = load_feeds(graph, "synthetic", BATCH)
    tracemalloc.start()
    try:
        quantized = Quantize(granularity="column", calib_size=BATCH).run(graph, ctx).graph
        ScaleToShift(calib_size=BATCH, sqnr_samples=0).run(quantized, ctx)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_calibration_memory_does_not_grow_with_depth() -> None:
    """16 layers peak within 4 layer inputs of 4 layers' peak (a conv's own workspace, its
    im2col, is 9 inputs here); holding every layer's input, as the former route did, adds the 12
    more layers' inputs (6 MiB)."""
    one_input = BATCH * CHANNELS * SIDE * SIDE * 4
    shallow, deep = calibration_peak(4), calibration_peak(LAYERS)
    assert deep < shallow + 4 * one_input, f"peak {deep} bytes at {LAYERS} layers, {shallow} at 4"


def whole_input_partial_sums(spec: CimSpec, x: np.ndarray, w_step: np.ndarray, w_bits: int, a_step: float,
                             a_bits: int, a_signed: bool, max_pixels: int, cell_bits: int | None,
                             dac_bits: int | None) -> np.ndarray:
    """The former route: quantize and split the whole input into digits, then gather windows."""
    a_q = numerics.quantize(x, a_step, a_bits, a_signed)
    a_dig = slicing.digits(a_q, a_bits, dac_bits, a_signed)
    nt, ns = a_dig.shape[0], slicing.slice_count(w_bits, cell_bits)
    every = a_q.shape[0] * int(np.prod(spec.out_hw(a_q.shape[2:])))
    index = subsample(every, max_pixels)
    pixels = np.arange(every) if index is None else index
    cols = im2col_at(a_dig.reshape(-1, *a_q.shape[1:]), spec, (np.arange(nt)[:, None] * every + pixels).ravel())
    wide = slicing.digit_columns(numerics.weight_codes(spec.weight, w_step, w_bits), w_bits, cell_bits)
    p = segment_matmul(cols, wide, replace(spec, weight=wide))
    g, seg = p.shape[:2]
    p = p.reshape(g, seg, nt, len(pixels), spec.cout // g, ns).transpose(3, 1, 2, 5, 0, 4)
    return np.ascontiguousarray(p).reshape(len(pixels), seg * nt * ns, spec.cout)


@pytest.mark.parametrize(("a_signed", "w_bits", "a_bits", "cell_bits", "dac_bits", "max_pixels"), [
    (False, 4, 4, None, None, 2048), (True, 4, 6, None, None, 300), (False, 6, 8, 2, 3, 500),
    (True, 8, 8, 4, 4, 4096)])
def test_partial_sums_quantize_only_the_chosen_windows(a_signed: bool, w_bits: int, a_bits: int,
                                                       cell_bits: int | None, dac_bits: int | None,
                                                       max_pixels: int) -> None:
    """Quantizing and slicing the sampled windows (padding included) gives the bits of quantizing
    and slicing the whole input first, unsigned or signed, sliced or not, sampled or every pixel;
    negative zeros included."""
    graph, _ = tiled(chain(2))
    spec = cim_spec(graph, graph.node("c1"))
    x = np.random.default_rng(4).standard_normal((3, CHANNELS, SIDE, SIDE)).astype(np.float32)
    x = x if a_signed else np.abs(x)
    x[0, 0, :4] = -0.0
    w_step = np.full(spec.cout, 0.05, np.float32)
    args = (spec, x, w_step, w_bits, 0.1, a_bits, a_signed, max_pixels)
    got = partial_sums(*args, cell_bits=cell_bits, dac_bits=dac_bits)
    want = whole_input_partial_sums(*args, cell_bits, dac_bits)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    assert np.signbit(got).sum() == np.signbit(want).sum()


def test_subsample_is_the_seeded_draw_remembered_read_only() -> None:
    """``subsample`` remembers its draws (a compile asks for the same few): each is the seeded
    draw itself, per size and seed, and read-only, so no caller can change a later one's."""
    for n, keep, seed in ((10**6, 1000, 0), (10**6, 1000, 1), (10**6, 999, 0), (999_999, 1000, 0)):
        want = np.sort(np.random.default_rng(seed).choice(n, keep, replace=False))
        for _ in range(2):
            got = subsample(n, keep, seed)
            assert got is not None and not got.flags.writeable
            np.testing.assert_array_equal(got, want)
