"""The quantize pass's small decisions: default bits (``LayerBits.resolve``), QAT steps moved to
this macro's widths (``with_macro_widths``), which layers bias correction may touch
(``has_own_bias``, ``set_bias``) and the calibration batch loaded once per compile."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cimc.errors import InvalidModelError
from cimc.ir.annotations import QuantParams
from cimc.ir.node import Node
from cimc.macro import MacroSpec
from cimc.passes.manager import PassContext
from cimc.passes.quantize import LayerBits, calibration_batch, has_own_bias, set_bias, with_macro_widths
from tests.ir_builders import add_conv, graph_with_input

MACRO = MacroSpec(name="t", wordlines=32, bitlines=64, adcs=16, cell_bits=4, dac_bits=4, adc_bits=5)


def test_layer_bits_default_to_the_macro_with_signed_weights_at_least_two_bits() -> None:
    assert LayerBits().resolve(MACRO) == (4, 4, 5)
    one = replace(MACRO, cell_bits=1, dac_bits=1)
    assert LayerBits().resolve(one) == (2, 1, 5)  # a signed code needs 2 bits: two 1-bit cells
    assert LayerBits(a_bits=6).resolve(MACRO, LayerBits(3, 2, 4)) == (3, 6, 4)


def _qat(w_bits: int, a_bits: int, shift: list[int]) -> QuantParams:
    return QuantParams(w_bits, a_bits, 5, np.array([0.1], np.float32), 0.5, np.array([6.0], np.float32),
                       source="qat", adc_shift=np.array(shift, np.int64))


def test_qat_exponent_of_a_single_conversion_kind_moves_into_the_adc_step() -> None:
    """Unsliced on this macro (one kind): ``S_ADC·2^−m`` becomes the step, ``m`` is dropped."""
    q = with_macro_widths("c", _qat(4, 4, [2]), MACRO)
    assert q.adc_shift is None and (q.cell_bits, q.dac_bits) == (4, 4)
    np.testing.assert_array_equal(q.adc_step, np.array([1.5], np.float32))


def test_qat_exponents_of_a_sliced_layer_are_kept() -> None:
    q = with_macro_widths("c", _qat(8, 4, [0, 1]), MACRO)  # 8-bit weights on 4-bit cells: 2 kinds
    assert q.adc_shift is not None and q.adc_shift.tolist() == [0, 1]
    np.testing.assert_array_equal(q.adc_step, np.array([6.0], np.float32))


def test_qat_exponents_for_another_macro_are_refused() -> None:
    with pytest.raises(InvalidModelError, match="2 kind"):
        with_macro_widths("c", _qat(8, 4, [0, 1, 2]), MACRO)


@pytest.mark.parametrize(("op", "attrs", "own"), [
    ("Conv", {}, True), ("Gemm", {}, True), ("Gemm", {"beta": 1.0}, True), ("Gemm", {"beta": 0.5}, False),
    ("MatMul", {}, False)])
def test_bias_correction_touches_only_layers_with_a_bias_of_their_own(op: str, attrs: dict[str, float],
                                                                        own: bool) -> None:
    assert has_own_bias(Node("n", op, ("x", "w"), ("y",), dict(attrs))) is own


def test_a_corrected_bias_is_a_new_initializer_read_as_the_third_input() -> None:
    g = graph_with_input((1, 3, 4, 4))
    add_conv(g, "x", 2, 1, rng=np.random.default_rng(0), name="c")  # no bias input
    node = g.node("c")
    set_bias(g, node, np.array([1.0, -2.0], np.float32))
    node = g.node("c")
    assert len(node.inputs) == 3 and node.inputs[:2] == ("x", "c.w")
    np.testing.assert_array_equal(g.initializers[node.inputs[2]], [1.0, -2.0])


def test_the_calibration_batch_is_loaded_once_per_compile() -> None:
    g = graph_with_input((1, 3, 4, 4))
    ctx = PassContext(macro=MACRO)
    first = calibration_batch(ctx, g, "synthetic", 8, None)
    assert calibration_batch(ctx, g, "synthetic", 8, None) is first  # the same size: cached
    assert calibration_batch(ctx, g, "synthetic", 4, None) is first  # fewer: cached
    bigger = calibration_batch(ctx, g, "synthetic", 16, None)
    assert bigger is not first and bigger.size == 16 and ctx.calibration is bigger
