"""Where scale-to-shift's activation fold may move a layer's remainder (``fold_targets``): through
products with a constant (``Mul(y, k)``, ``Mul(k, y)``, ``Div(y, k)``: homogeneous in ``y``), never
through ``Div(k, y)``, a product with a runtime tensor or ``y`` itself, nor when the output is also
a graph output; and ``sqnr_db``'s edge cases."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from cimc.ir.annotations import QuantParams, Shift
from cimc.ir.graph import Graph
from cimc.passes.manager import PassContext
from cimc.passes.scale_to_shift import adc_fold, fold_targets, shift_layer, sqnr_db
from cimc.quant.calibration import collect_inputs
from tests.cim_helpers import SMALL, add_node, compile_ir
from tests.ir_builders import add_unary
from tests.shift_builders import Between, two_conv_cnn
from tests.test_scale_to_shift import shifted
from tests.test_sliced_exact import compile_sliced

pytestmark = pytest.mark.torch  # the compile helpers import the zoo

def _const(g: Graph) -> str:
    g.set_initializer("k", np.full((1, 8, 1, 1), 1.5, np.float32))
    return "k"


def _cnn(between: Between, also_output: bool = False, relu: bool = True) -> Graph:
    """conv c1 → relu (unless not ``relu``) → ``between`` → conv c2 → relu → GAP → flatten → gemm."""
    def joined(g: Graph, y: str) -> str:
        y = add_unary(g, "Relu", y, "r1") if relu else y
        if also_output:
            g.outputs.append(y)
        return between(g, y)

    return two_conv_cnn(joined, seed=4)


FOLDS: dict[str, Between] = {
    "mul_y_k": lambda g, y: add_node(g, "Mul", [y, _const(g)], (1, 8, 8, 8), "m"),
    "mul_k_y": lambda g, y: add_node(g, "Mul", [_const(g), y], (1, 8, 8, 8), "m"),
    "div_y_k": lambda g, y: add_node(g, "Div", [y, _const(g)], (1, 8, 8, 8), "m"),
}
BLOCKS: dict[str, Between] = {
    "div_k_y": lambda g, y: add_node(g, "Div", [_const(g), y], (1, 8, 8, 8), "m"),
    "mul_y_y": lambda g, y: add_node(g, "Mul", [y, y], (1, 8, 8, 8), "m"),
    "mul_y_runtime": lambda g, y: add_node(g, "Mul", [y, add_unary(g, "Sigmoid", y, "sig")], (1, 8, 8, 8), "m"),
}


@pytest.mark.parametrize("name", sorted(FOLDS))
def test_a_product_with_a_constant_passes_the_remainder_to_the_reader(name: str) -> None:
    graph, _ = compile_ir(_cnn(FOLDS[name]), shift=False)
    targets = fold_targets(graph, graph.node("c1"))
    assert targets is not None and [r.name for r in targets.readers] == ["c2"] and targets.clips == []


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_a_non_homogeneous_product_blocks_the_activation_fold(name: str) -> None:
    """``k / (c·y) ≠ c·(k / y)``, ``(c·y)² ≠ c·y²``, ``c·y·σ(c·y) ≠ c·(y·σ(y))``."""
    graph, _ = compile_ir(_cnn(BLOCKS[name], relu=name != "div_k_y"), shift=False)  # k / 0: no zeros
    assert fold_targets(graph, graph.node("c1")) is None


def test_an_output_that_is_also_a_graph_output_blocks_the_activation_fold() -> None:
    """The graph output would carry the gain: the remainder must stay in the layer."""
    graph, _ = compile_ir(_cnn(lambda g, y: y, also_output=True), shift=False)
    assert fold_targets(graph, graph.node("c1")) is None
    graph, _ = compile_ir(_cnn(lambda g, y: y), shift=False)
    assert fold_targets(graph, graph.node("c1")) is not None


def test_sqnr_of_a_zero_reference_with_noise_is_minus_infinity() -> None:
    assert sqnr_db(np.zeros(3), np.array([0.0, 1.0, 0.0])) == -math.inf
    assert sqnr_db(np.zeros(3), np.zeros(3)) == math.inf


def test_the_shift_annotations_and_folded_adc_steps_are_read_only() -> None:
    """A ``Shift``'s ``k`` and ``exact_scale`` and an ADC fold's new ``S_ADC`` are frozen arrays
    (annotations are shared between graph copies: writing one would change every copy)."""
    graph, ctx = compile_ir(_cnn(BLOCKS["mul_y_y"]), granularity="column", shift=False)
    out = shifted(graph, ctx).graph
    folds = set()
    for name in ("c1", "c2", "fc"):
        node = out.node(name)
        shift = node.ann[Shift]
        folds.add(shift.fold)
        assert not shift.k.flags.writeable and not shift.exact_scale.flags.writeable
        assert not node.ann[QuantParams].adc_step.flags.writeable
    assert "adc" in folds


def _calibration_input(ctx: PassContext, name: str) -> np.ndarray:
    """Layer ``name``'s float calibration input (quantize streams them and keeps none)."""
    return collect_inputs(ctx.calibration_graph, ctx.calibration.feeds, [name])[name]


def test_sqnr_of_a_reference_weaker_than_one_is_finite() -> None:
    """``Σ ref² = 0.25``, ``Σ noise² = 0.01``: ``10·log10(25)`` (not ``−inf``)."""
    assert sqnr_db(np.array([0.5]), np.array([0.6])) == pytest.approx(10 * math.log10(25.0), rel=1e-9)


def test_an_exact_power_of_two_scale_is_shifted_without_a_fold() -> None:
    """``S_W·S_ADC·S_A = 2^−k`` exactly: the shift is exact (error 0), nothing folds and the
    ADC step stays, even with calibration data that a lower power of two would fit better."""
    graph, ctx = compile_ir(_cnn(FOLDS["mul_y_k"]), shift=False)
    node = graph.node("c1")
    q = node.ann[QuantParams]
    node.ann.put(replace(q, w_step=np.array([0.25], np.float32), adc_step=np.array([64.0], np.float32), a_step=0.5))
    gains = shift_layer(graph, node, True, 1.0, _calibration_input(ctx, "c1"))
    shift = node.ann[Shift]
    assert shift.relative_error == 0 and shift.fold == "none" and gains == {}
    assert shift.k.tolist() == [-3] and node.ann[QuantParams].adc_step.tolist() == [64.0]


@pytest.mark.parametrize("bits", [4, 8])
def test_a_per_layer_adc_fold_chooses_one_power_of_two_for_the_layer(bits: int) -> None:
    """Per-layer steps, unsliced (4 bits) or bit-sliced (8 bits: 4 conversion kinds): the fold
    compares the two powers of two on the layer's total error, so ``k`` and the new ``S_ADC``
    stay one number each (not one per column)."""
    graph, ctx = compile_sliced(_cnn(FOLDS["mul_y_k"]), SMALL, bits, bits, shift=False)
    for name in ("c1", "c2"):
        node = graph.node(name)
        q = node.ann[QuantParams]
        assert q.w_slices * q.a_slices == (bits // 4) ** 2
        exact = (q.w_step.astype(np.float64) * q.adc_step * q.a_step)
        k, adc = adc_fold(graph, node, exact, _calibration_input(ctx, name))
        assert exact.shape == k.shape == adc.shape == (1,)
