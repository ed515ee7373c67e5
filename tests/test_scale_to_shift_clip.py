"""scale-to-shift through a Clip (ReLU6 = ``Clip(0, 6)``): the remainder of the layer before it
folds into the readers' input steps with the Clip's bounds scaled by the gain, the three
engines still agree bit for bit, and the shifted model stays closer to the exact scales."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cimc.ir.annotations import QuantParams, ScaledBounds, Shift
from cimc.ir.graph import Graph
from cimc.passes import scale_to_shift
from cimc.passes.scale_to_shift import fold_targets, sqnr_db
from cimc.quant.loss import layer_losses
from cimc.quant.reference import run_compiled
from tests.cim_helpers import add_node, assert_three_way, compile_ir, write
from tests.ir_builders import add_unary
from tests.shift_builders import batch, shifted, two_conv_cnn


def clip_cnn(lo: float = 0.0, hi: float = 6.0, sigmoid: bool = False) -> Graph:
    """conv → Clip(lo, hi) → conv → relu → GAP → flatten → gemm; with ``sigmoid`` the Clip's
    output also feeds a Sigmoid that is a second graph output."""
    def between(g: Graph, y: str) -> str:
        clipped = add_node(g, "Clip", [y], (1, 8, 8, 8), "clip", min=lo, max=hi)
        if sigmoid:
            g.outputs.append(add_unary(g, "Sigmoid", clipped, "sig"))
        return clipped

    return two_conv_cnn(between, seed=3)


@pytest.mark.parametrize("lo,hi", [(0.0, 6.0), (-1.5, 2.0), (-math.inf, 3.0)])
def test_clip_bounds_scale_with_the_activation_fold(lo: float, hi: float) -> None:
    graph, ctx = compile_ir(clip_cnn(lo, hi), shift=False)
    out = shifted(graph, ctx)
    shift = out.node("c1").ann[Shift]
    assert shift.fold == "activation" and shift.gain != 1.0
    clip = out.node("clip")
    assert clip.attrs["min"] == float(np.float32(shift.gain * lo))
    assert clip.attrs["max"] == float(np.float32(shift.gain * hi))
    assert clip.ann[ScaledBounds] == ScaledBounds(shift.gain, lo, hi)
    assert graph.node("clip").attrs == {"min": lo, "max": hi}  # the pass returns a new graph
    want = graph.node("c2").ann[QuantParams].a_step * shift.gain
    assert out.node("c2").ann[QuantParams].a_step == pytest.approx(want, rel=1e-6)
    assert shift.sqnr_db is not None and shift.sqnr_db > 100  # c1's output divided by its gain
    # c2 reads the clipped, scaled activations: its output is the unshifted one up to rounding
    ref, got = (run_compiled(g, {"x": batch()}, record=True).traces["c2"].outputs for g in (graph, out))
    assert sqnr_db(ref, got / np.float32(out.node("c2").ann[Shift].gain)) > 40


@pytest.mark.parametrize("lo,hi", [(0.0, 6.0), (-1.5, 2.0)])
def test_clip_fold_is_bit_exact_three_ways(tmp_path: Path, lo: float, hi: float) -> None:
    graph, ctx = compile_ir(clip_cnn(lo, hi))
    assert graph.node("c1").ann[Shift].fold == "activation"
    assert ScaledBounds in graph.node("clip").ann
    assert_three_way(write(graph, ctx, tmp_path / "build"), graph, batch())


def test_clip_read_by_a_non_homogeneous_op_is_not_scaled() -> None:
    """c1 → Clip → {c2, Sigmoid}: no activation fold; the Clip and the Sigmoid after it are one
    activation of c1's output alone, so the remainder goes to its table (a Mul before the Clip)
    and the Clip keeps its bounds."""
    graph, ctx = compile_ir(clip_cnn(sigmoid=True), shift=False)
    assert fold_targets(graph, graph.node("c1")) is None
    out = shifted(graph, ctx)
    assert out.node("c1").ann[Shift].fold == "lut"
    assert out.node("clip").attrs == {"min": 0.0, "max": 6.0} and ScaledBounds not in out.node("clip").ann


def test_clip_fold_improves_the_output_sqnr(monkeypatch: pytest.MonkeyPatch) -> None:
    """Against the exact scales, the model whose c1 folds through the Clip is closer than the one
    whose c1 folds into its ADC step (the behaviour before the Clip could be scaled)."""
    graph, ctx = compile_ir(clip_cnn(), shift=False)
    shifted(graph, ctx)
    through_clip = ctx.shift.output_sqnr_db
    monkeypatch.setattr(scale_to_shift, "scalable_clip", lambda node, tensor: False)
    monkeypatch.setattr(scale_to_shift, "lut_readers", lambda graph, node: None)
    adc = shifted(graph, ctx)
    assert adc.node("c1").ann[Shift].fold == "adc"
    assert through_clip > ctx.shift.output_sqnr_db + 3


def test_layer_losses_use_the_float_bounds() -> None:
    """The float model of ``layer_losses`` runs the Clip with its own bounds: c2 alone, fed the
    float model's input, loses what it loses in the unshifted model (a scaled Clip on float
    values would cut them at ``6·gain``, and c2's float input would change: 0.5 dB here)."""
    graph, ctx = compile_ir(clip_cnn(), shift=False)
    out = shifted(graph, ctx)
    assert out.node("c1").ann[Shift].gain < 0.95
    x = batch() * 4  # a quarter of c1's outputs above 6
    before = {r.name: r.local_sqnr_db for r in layer_losses(graph, x)}
    after = {r.name: r.local_sqnr_db for r in layer_losses(out, x)}
    assert after["c2"] == pytest.approx(before["c2"], abs=0.05)
