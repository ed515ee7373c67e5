"""Bit-sliced layers at the model level: macro usage counts every weight digit's cell, and the
float32 exactness bound (2^24) is reached — refused by QAT's check and by the compile path's
``check_bits`` just past it, accepted just below."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cimc.cost.model import model_cost
from cimc.errors import UnsupportedError
from cimc.ir import BitlinePlacement, WordlineTiling
from cimc.ir.annotations import QuantParams
from cimc.passes.quantize import EXACT_LIMIT, check_bits
from cimc.quant import numerics, slicing
from cimc.train.config import LayerBits
from cimc.train.phase2 import SegmentPlan
from cimc.train.sliced import check_exact, max_shift
from tests.test_sliced_mapping import TINY, compile_tiny

pytestmark = pytest.mark.torch  # QAT's check lives in cimc.train


def test_model_macro_usage_counts_every_digit_cell_of_sliced_layers() -> None:
    """``usage = cells holding a digit / (macros · WL · BL)``, the cells counted from the placement:
    each column holds its segment's rows (8-bit weights on 4-bit cells: two digit columns)."""
    graph, _ = compile_tiny(w_bits=8, a_bits=8)
    cells, macros = 0, set()
    for name in ("c1", "c2"):
        node = graph.node(name)
        rows = node.ann[WordlineTiling].segment_rows()
        q, placement = node.ann[QuantParams], node.ann[BitlinePlacement]
        assert q.w_slices == 2
        cout = placement.num_columns // (rows.shape[0] * q.w_slices)
        cells += int(rows.sum()) * cout * q.w_slices
        macros |= set(placement.macro.tolist())
    cost = model_cost(graph, TINY)
    assert cost.macros == len(macros)
    assert cost.macro_usage == pytest.approx(cells / (len(macros) * TINY.wordlines * TINY.bitlines), rel=1e-12)
    assert cost.macro_usage == pytest.approx(sum(layer.params * 2 for layer in cost.layers)
                                             / (cost.macros * TINY.cells), rel=1e-12)


def _qat_bound(bits, plan) -> int:  # type: ignore[no-untyped-def]
    weights = slicing.conversion_weights(plan.segments, bits.a_bits, bits.dac_bits, bits.w_bits, bits.cell_bits)
    return int(weights.astype(np.int64).sum()) * numerics.signed_max(bits.adc_bits)


@pytest.mark.parametrize("w_bits,adc_bits", [(8, 5), (12, 8), (4, 8)])
def test_qat_max_shift_is_the_last_exact_shift(w_bits: int, adc_bits: int) -> None:
    """``base·2^M < 2^24 ≤ base·2^(M+1)``: one more bit of shift would reach the bound."""
    bits, plan = LayerBits(w_bits, 8, adc_bits, 4, 4), SegmentPlan(40, (3, 3), 1, 256, "channel")
    base, m = _qat_bound(bits, plan), max_shift(bits, plan)
    assert base << m < EXACT_LIMIT <= base << (m + 1)


def test_qat_max_shift_is_zero_when_one_more_bit_reaches_2_24() -> None:
    """12-bit weights and inputs on 4-bit cells/DACs, 8-bit ADC, one segment: ``base`` =
    9,465,183 is below 2^24 but over 2^23, so no step exponent is left (``M = 0``)."""
    bits, plan = LayerBits(12, 12, 8, 4, 4), SegmentPlan(28, (3, 3), 1, 256, "channel")
    assert (1 << 23) < _qat_bound(bits, plan) < EXACT_LIMIT and max_shift(bits, plan) == 0
    # the largest accepted bound, 2^24 − 1 = (1 + 2^8 + 2^16)·255: 24-bit weights on 8-bit cells, 9-bit ADC
    top = LayerBits(24, 8, 9, 8, None)
    assert _qat_bound(top, plan) == EXACT_LIMIT - 1 and max_shift(top, plan) == 0


def test_qat_refuses_a_layer_whose_sums_reach_2_24() -> None:
    """12-bit weights and inputs on 4-bit cells/DACs, 8-bit ADC: the recombined ``|P|`` may reach
    ``segments · Σ 2^(4j+4t) · 127`` = 9,465,183 per segment: one segment is exact, two are not."""
    bits = LayerBits(12, 12, 8, 4, 4)
    one, two = SegmentPlan(28, (3, 3), 1, 256, "channel"), SegmentPlan(56, (3, 3), 1, 256, "channel")
    assert _qat_bound(bits, one) < EXACT_LIMIT <= _qat_bound(bits, two)
    check_exact("c", bits, one, False)
    with pytest.raises(UnsupportedError, match="≥ 2\\^24"):
        check_exact("c", bits, two, False)


def test_compile_refuses_a_layer_whose_sums_reach_2_24() -> None:
    """``check_bits``: with every kind's ADC code bounded by ``Qp``, the recombined bound of c1
    (2 segments, 2×2 kinds of weights ``2^(4j+4t)``) is ``2·(1+16+16+256)·2^M·Qp``: raising the
    step exponent ``M`` of the top kind crosses 2^24 at a computable ``M``."""
    graph, _ = compile_tiny(w_bits=8, a_bits=8)
    node = graph.node("c1")
    q = node.ann[QuantParams]
    fine = replace(q, adc_step=np.full_like(q.adc_step, 1e-3))  # every ADC code can reach ±Qp
    qp = numerics.signed_max(q.adc_bits)
    # with m = (0, 0, 0, M): bound = 2·((1 + 16 + 16)·2^M + 256)·Qp
    bound = [2 * ((1 + 16 + 16) * (1 << m) + 256) * qp for m in range(24)]
    last = max(m for m in range(24) if bound[m] < EXACT_LIMIT)
    for m, ok in ((last, True), (last + 1, False)):
        node.ann.put(replace(fine, adc_shift=np.array([0, 0, 0, m], np.int64)))
        if ok:
            check_bits(node, TINY)
        else:
            with pytest.raises(UnsupportedError, match="≥ 2\\^24"):
                check_bits(node, TINY)
