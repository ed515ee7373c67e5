"""Calibration streams layer by layer: quantize calibrates each CIM layer as soon as the
interpreter has computed its float input and drops it, and scale-to-shift recomputes the inputs
its ADC folds need from the same float graph. The values are those of one full run, so the
steps are unchanged; the peak memory no longer holds every layer's input at once."""

from __future__ import annotations

import tracemalloc

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
from cimc.quant.calibration import collect_inputs, load_feeds, stream_inputs
from cimc.quant.cim_layer import cim_spec
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
    assert ctx.calibration_inputs == {} and ctx.calibration_graph is graph
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
