"""scale-to-shift's ADC fold on a bit-sliced layer (issue 15, what the shift costs): after the
power of two is chosen, each conversion kind re-chooses its step exponent ``m_k`` among
``m_k − 1, m_k, m_k + 1``, so the error that reaches the layer's sum is never more than with the
kinds' exponents kept (the rule before) and is less where a kind's optimum moved with the
remainder; per layer the choice is the exact minimum; the build stays bit-exact three ways."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cimc.ir.annotations import QuantParams, Shift
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.mapping.select import cim_nodes
from cimc.passes.fold_batchnorm import FoldBatchNorm
from cimc.passes.manager import PassContext, run_passes
from cimc.passes.place_bitlines import PlaceBitlines
from cimc.passes.quantize import LayerBits, Quantize
from cimc.passes.scale_to_shift import (
    MAX_KIND_SHIFT,
    ScaleToShift,
    ceil_exponent,
    conversion_error,
    fold_exponents,
)
from cimc.passes.select_cim import SelectCim
from cimc.passes.tile_wordlines import TileWordlines
from cimc.frontend import import_onnx
from cimc.quant import numerics
from cimc.quant.calibration import collect_inputs, partial_sums
from cimc.quant.cim_layer import cim_spec
from tests.cim_helpers import assert_three_way, write
from tests.test_equalize import depthwise_net, feeds

pytestmark = pytest.mark.torch  # the compile helpers import the zoo


def quantized(granularity: str) -> tuple[Graph, PassContext]:
    """The depthwise test net through quantize and place-bitlines, 8/8/5 bits (4 conversion kinds)."""
    ctx = PassContext(macro=MacroSpec())
    passes = [FoldBatchNorm(), SelectCim(), TileWordlines(),
              Quantize(granularity=granularity, calib_size=16, default_bits=LayerBits(8, 8)), PlaceBitlines()]
    return run_passes(import_onnx(depthwise_net("relu")), passes, ctx), ctx


def synthetic(columns: int, seed: int = 0) -> tuple[np.ndarray, QuantParams]:
    """Partial sums of 4 kinds (shift-add weights 1, 16, 16, 256) that weigh alike in the sum,
    and 8/8/5 steps whose exponents ``m`` put kind 1's step at twice its MSE optimum (about
    0.2 σ at 5 bits) and kind 2's at half of it; kinds 0 and 3 are at theirs."""
    rng = np.random.default_rng(seed)
    sigma = np.array([400.0, 25.0, 25.0, 1.6])[None, None, :, None] * rng.uniform(0.9, 1.1, (1, 1, 1, columns))
    p = (rng.standard_normal((256, 2, 4, columns)) * sigma).astype(np.float32).reshape(256, 8, columns)
    q = QuantParams(8, 8, 5, np.ones(columns, np.float32), 1.0, np.full(columns, 80.0, np.float32),
                    cell_bits=4, dac_bits=4, adc_shift=np.array([0, 3, 5, 8], np.int64))
    return p, q


def error(p: np.ndarray, q: QuantParams, step: np.ndarray, shift: np.ndarray) -> float:
    return float(conversion_error(p, step.astype(np.float32), replace(q, adc_shift=shift)).sum())


def test_per_layer_the_kinds_exponents_are_the_exact_minimum() -> None:
    """Per layer, ``fold_exponents`` finds the least error over both powers of two and every move
    of every kind (brute force over 2 · 3⁴ choices), strictly below the rule that keeps the kinds'
    exponents (which the result would equal without the re-choice)."""
    p, q = synthetic(1)
    step_up = np.array([80.0], np.float32)
    m = q.adc_shift
    assert m is not None
    d, shift = fold_exponents(p, step_up, q)
    got = error(p, q, step_up / 2.0 ** d, shift)
    brute = min(error(p, q, step_up / 2.0 ** dd, m + np.array(e))
                for dd in (0, 1) for e in itertools.product((-1, 0, 1), repeat=4)
                if np.all((m + np.array(e) >= 0) & (m + np.array(e) <= MAX_KIND_SHIFT)))
    kept = min(error(p, q, step_up / 2.0 ** dd, m) for dd in (0, 1))
    assert got == pytest.approx(brute, rel=1e-9)
    assert got < 0.95 * kept and not np.array_equal(shift, m)


def test_per_column_the_choice_is_never_worse_than_keeping_the_exponents() -> None:
    p, q = synthetic(5, seed=1)
    step_up = np.full(5, 80.0, np.float32)
    m = q.adc_shift
    assert m is not None
    d, shift = fold_exponents(p, step_up, q)
    assert d.shape == (5,) and shift.shape == (4,) and np.all((shift >= 0) & (shift <= MAX_KIND_SHIFT))
    up, down = (conversion_error(p, s, q) for s in (step_up, step_up / 2))
    kept = float(np.minimum(up, down).sum())  # the rule before: per column the better power of two
    got = error(p, q, step_up / 2.0 ** d, shift)
    assert got < 0.95 * kept


def test_exponents_stay_within_their_range() -> None:
    """A kind at ``m = 0`` cannot take a coarser step (``m − 1``), nor one at ``MAX_KIND_SHIFT`` a
    finer one, however much it would gain."""
    p, q = synthetic(1)
    q = replace(q, adc_shift=np.array([0, MAX_KIND_SHIFT, 0, 0], np.int64))
    _, shift = fold_exponents(p, np.array([1e-3], np.float32), q)  # a tiny step: every kind wants m − 1
    assert shift.tolist() == [0, MAX_KIND_SHIFT - 1, 0, 0]
    _, shift = fold_exponents(p, np.array([2e7], np.float32), q)  # kind 1's step still 2^8 × its optimum
    assert shift[1] == MAX_KIND_SHIFT and np.all((shift >= 0) & (shift <= MAX_KIND_SHIFT))


def _fold_errors(graph: Graph, shifted: Graph, ctx: PassContext, name: str) -> tuple[float, float]:
    """``(error after the fold, least error with the kinds' exponents kept)`` of layer ``name``
    on its calibration input, in the layer's sum."""
    q = graph.node(name).ann[QuantParams]
    x = collect_inputs(ctx.calibration_graph, ctx.calibration.feeds, [name])[name]
    p = partial_sums(cim_spec(graph, graph.node(name)), x, q.w_step, q.w_bits, q.a_step, q.a_bits, q.a_signed,
                     cell_bits=q.cell_bits, dac_bits=q.dac_bits)
    exact = numerics.output_scale(q.w_step, q.adc_step, q.a_step).astype(np.float64)
    step_up = q.adc_step.astype(np.float64) * (numerics.shift_scale(ceil_exponent(exact)) / exact)
    new = shifted.node(name).ann[QuantParams]
    assert new.adc_shift is not None
    gain = new.a_step / q.a_step  # an input multiplied by its producer's fold: the same input codes
    np.testing.assert_allclose(numerics.output_scale(new.w_step, new.adc_step, new.a_step) / gain,
                               numerics.shift_scale(shifted.node(name).ann[Shift].k), rtol=1e-6)
    got = float(conversion_error(p, new.adc_step, new).sum())
    kept = float(np.minimum(conversion_error(p, step_up, q), conversion_error(p, step_up / 2, q)).sum())
    return got, kept


@pytest.mark.parametrize("granularity", ["layer", "column"])
def test_the_fold_lowers_the_layers_error_on_a_sliced_net(granularity: str) -> None:
    """On the depthwise net at 8/8/5 bits, every ADC-folded layer's calibration error is at most
    the rule's that keeps the kinds' exponents, and some layer's is lower (so some ``m_k`` moved)."""
    graph, ctx = quantized(granularity)
    shifted = ScaleToShift(calib_size=16).run(graph, ctx).graph
    folded = [n.name for n in cim_nodes(shifted) if n.ann[Shift].fold == "adc"]
    assert folded
    pairs = [_fold_errors(graph, shifted, ctx, name) for name in folded]
    assert all(got <= kept * (1 + 1e-6) for got, kept in pairs)
    assert any(got < 0.99 * kept for got, kept in pairs)
    moved = [n for n in folded if not np.array_equal(shifted.node(n).ann[QuantParams].adc_shift,
                                                     graph.node(n).ann[QuantParams].adc_shift)]
    assert moved


def test_a_sliced_fold_with_moved_exponents_is_bit_exact_three_ways(tmp_path: Path) -> None:
    graph, ctx = quantized("column")
    shifted = ScaleToShift(calib_size=16).run(graph, ctx).graph
    assert any(not np.array_equal(n.ann[QuantParams].adc_shift, graph.node(n.name).ann[QuantParams].adc_shift)
               for n in cim_nodes(shifted))
    assert_three_way(write(shifted, ctx, tmp_path / "build"), shifted, feeds()["x"])
