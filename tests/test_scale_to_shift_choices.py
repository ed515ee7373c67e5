"""scale-to-shift's decisions: which power of two an ADC fold takes, the per-column error it
reports, and the homogeneity test (a Pad filling zeros) before an activation fold."""

from __future__ import annotations

import numpy as np
import pytest

from cimc.ir.annotations import QuantParams, Shift
from cimc.ir.graph import Graph
from cimc.passes.scale_to_shift import adc_fold, ceil_exponent, conversion_error, fold_readers
from cimc.quant import numerics
from cimc.quant.calibration import collect_inputs, partial_sums
from cimc.quant.cim_layer import cim_spec
from tests.cim_helpers import add_gemm, add_node, compile_ir, small_cnn
from tests.ir_builders import add_conv, add_unary, graph_with_input
from tests.test_scale_to_shift import shifted

pytestmark = pytest.mark.torch  # the compile helpers import the zoo


@pytest.fixture(scope="module")
def per_column():  # type: ignore[no-untyped-def]
    return compile_ir(small_cnn(), granularity="column", shift=False)


def _fold_choices(graph: Graph, ctx, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """``(k − k_up, S_ADC', error at the step above s, error at the step below s)`` per column."""
    node = graph.node(name)
    q = node.ann[QuantParams]
    exact = numerics.output_scale(q.w_step, q.adc_step, q.a_step).astype(np.float64)
    x = collect_inputs(ctx.calibration_graph, ctx.calibration.feeds, [name])[name]  # quantize streamed it
    k, adc = adc_fold(graph, node, exact, x)
    k_up = ceil_exponent(exact)
    step_up = q.adc_step.astype(np.float64) * (numerics.shift_scale(k_up) / exact)
    p = partial_sums(cim_spec(graph, node), x, q.w_step, q.w_bits, q.a_step, q.a_bits, q.a_signed,
                     cell_bits=q.cell_bits, dac_bits=q.dac_bits)
    np.testing.assert_allclose(numerics.output_scale(q.w_step, adc, q.a_step), numerics.shift_scale(k), rtol=1e-6)
    return k - k_up, adc, conversion_error(p, step_up, q), conversion_error(p, step_up / 2, q)


def test_adc_fold_takes_the_lower_power_of_two_when_it_quantizes_better(per_column) -> None:  # type: ignore[no-untyped-def]
    graph, ctx = per_column
    picked = 0
    for name in ("c1", "c2"):
        dk, _, up, down = _fold_choices(graph, ctx, name)
        assert np.array_equal(dk == 1, down < up)
        picked += int((dk == 1).sum())
    assert picked > 0  # the case occurs in this model


def test_adc_fold_takes_the_higher_power_of_two_when_it_quantizes_better(per_column) -> None:  # type: ignore[no-untyped-def]
    graph, ctx = per_column
    for name in ("c1", "c2", "fc"):
        dk, _, up, down = _fold_choices(graph, ctx, name)
        assert np.array_equal(dk == 0, down >= up) and set(np.unique(dk)) <= {0, 1}
        assert (dk == 0).any()


def test_adc_fold_without_calibration_takes_the_power_of_two_above(per_column) -> None:  # type: ignore[no-untyped-def]
    graph, _ = per_column
    q = graph.node("c2").ann[QuantParams]
    exact = numerics.output_scale(q.w_step, q.adc_step, q.a_step).astype(np.float64)
    k, _ = adc_fold(graph, graph.node("c2"), exact, None)
    assert np.array_equal(k, ceil_exponent(exact))
    assert np.all(numerics.shift_scale(k) >= exact) and np.all(numerics.shift_scale(k + 1) < exact)


def test_ceil_exponent_of_an_exact_power_of_two_is_itself() -> None:
    assert ceil_exponent(np.array([0.25, 0.3, 0.5, 0.51, 3.0])).tolist() == [2, 1, 1, 0, -2]


def test_per_column_relative_error_is_the_largest_column_error(per_column) -> None:  # type: ignore[no-untyped-def]
    """``Shift.relative_error`` of a per-column layer is ``max_c |2^−k_c − s_c| / s_c`` (the
    nearest powers of two, before the fold), not a mean or a minimum."""
    graph, ctx = per_column
    out = shifted(graph, ctx).graph
    for name in ("c1", "c2", "fc"):
        q = graph.node(name).ann[QuantParams]
        exact = numerics.output_scale(q.w_step, q.adc_step, q.a_step).astype(np.float64)
        errors = np.abs(numerics.shift_scale(numerics.shift_exponent(exact)) / exact - 1.0)
        assert errors.min() < errors.max()
        assert out.node(name).ann[Shift].relative_error == pytest.approx(float(errors.max()), rel=1e-12)


def _padded_cnn(value: float, mode: str = "constant") -> Graph:
    """conv → relu → Pad(1 pixel, ``value``) → conv → relu → GAP → flatten → gemm."""
    rng = np.random.default_rng(2)
    g = graph_with_input((1, 3, 8, 8))
    y = add_unary(g, "Relu", add_conv(g, "x", 8, 3, pad=1, bias=True, rng=rng, name="c1"), "r1")
    y = add_node(g, "Pad", [y], (1, 8, 10, 10), "pad", pads=(0, 0, 1, 1, 0, 0, 1, 1), mode=mode, value=value)
    y = add_unary(g, "Relu", add_conv(g, y, 8, 3, rng=rng, name="c2"), "r2")
    y = add_node(g, "GlobalAveragePool", [y], (1, 8, 1, 1), "gap")
    y = add_node(g, "Flatten", [y], (1, 8), "fl", axis=1)
    g.outputs.append(add_gemm(g, y, 4, rng, "fc"))
    return g


def test_zero_padding_lets_the_remainder_fold_into_the_reader() -> None:
    graph, _ = compile_ir(_padded_cnn(0.0), shift=False)
    readers = fold_readers(graph, graph.node("c1"))
    assert readers is not None and [r.name for r in readers] == ["c2"]


@pytest.mark.parametrize("value,mode", [(0.5, "constant"), (-1.0, "constant")])
def test_nonzero_padding_blocks_the_activation_fold(value: float, mode: str) -> None:
    """``pad(c·x, v) ≠ c·pad(x, v)`` for ``v ≠ 0``: c1's remainder must not move into c2's step."""
    graph, ctx = compile_ir(_padded_cnn(value, mode), shift=False)
    assert fold_readers(graph, graph.node("c1")) is None
    assert shifted(graph, ctx).graph.node("c1").ann[Shift].fold == "adc"
