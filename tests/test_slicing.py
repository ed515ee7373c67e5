"""Bit-slicing (``cimc.quant.slicing``) and the sliced numpy reference: digits recombine to the codes,
stay in their ranges, and a sliced layer whose ADC never clips computes the exact integer
product ``Σ_r w_q·a_q`` — the shift-add undoes the slicing."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cimc.ir.annotations import QuantParams
from cimc.macro import MacroSpec
from cimc.passes.quantize import LayerBits
from cimc.quant import numerics, slicing
from cimc.quant.cim_layer import cim_spec
from cimc.quant.reference import as_conv_input, im2col, run_layer, sliced_sums
from tests.cim_helpers import small_cnn
from tests.test_quantize import params, quantize, tiled

pytestmark = pytest.mark.torch  # the zoo or the training hook


@given(bits=st.integers(2, 16), width=st.integers(1, 8), signed=st.booleans(), seed=st.integers(0, 2**16))
def test_digits_recombine_and_stay_in_range(bits: int, width: int, signed: bool, seed: int) -> None:
    lo, hi = numerics.code_range(bits, signed)
    codes = np.random.default_rng(seed).integers(lo, hi + 1, size=200).astype(np.float32)
    codes[:2] = lo, hi
    d = slicing.digits(codes, bits, width, signed)
    assert d.shape == (slicing.slice_count(bits, width), 200) and d.dtype == np.float32
    np.testing.assert_array_equal((d * slicing.digit_weights(bits, width)[:, None]).sum(0), codes)
    for j in range(d.shape[0]):
        a, b = slicing.digit_range(bits, width, signed, j)
        assert a <= d[j].min() and d[j].max() <= b


def test_digits_by_hand() -> None:
    # -100 = 0b1001_1100 in 8-bit two's complement: low digit 0b1100 = 12, high digit 0b1001 = -7
    np.testing.assert_array_equal(slicing.digits(np.float32([-100, 100, 7]), 8, 4, True),
                                  [[12, 4, 7], [-7, 6, 0]])
    np.testing.assert_array_equal(slicing.digits(np.float32([13]), 4, 1, False), [[1], [0], [1], [1]])
    assert slicing.slice_count(8, 4) == 2 and slicing.slice_count(9, 4) == 3 and slicing.slice_count(4, None) == 1
    np.testing.assert_array_equal(slicing.conversion_weights(2, 8, 4, 6, 4), [1, 16, 16, 256] * 2)


def test_one_slice_is_the_code_itself() -> None:
    codes = np.float32([-7, 0, 7])
    assert np.shares_memory(slicing.digits(codes, 4, 4, True), codes)
    q = QuantParams(4, 4, 5, np.float32([1]), 1.0, np.float32([1]), cell_bits=4, dac_bits=4)
    assert (q.w_slices, q.a_slices) == (1, 1)
    assert replace(q, w_bits=8, a_bits=9, dac_bits=2).a_slices == 5


WIDE_ADC = MacroSpec(name="wide-adc", wordlines=32, bitlines=64, adcs=16, cell_bits=4, dac_bits=4, adc_bits=16)
ISAAC_LIKE = MacroSpec(name="isaac-like", wordlines=32, bitlines=64, adcs=8, bitlines_per_adc=8, cell_bits=2,
                       dac_bits=1, adc_bits=16)


@pytest.mark.parametrize("layer", ["c1", "c2"])  # c1: signed model input; c2: unsigned, more segments
@pytest.mark.parametrize("macro", [WIDE_ADC, ISAAC_LIKE], ids=lambda m: m.name)
@pytest.mark.parametrize(("w_bits", "a_bits"), [(8, 4), (4, 8), (8, 8), (6, 7), (3, 2)])
def test_unclipped_sliced_layer_is_the_exact_integer_product(macro: MacroSpec, w_bits: int, a_bits: int,
                                                             layer: str) -> None:
    """With ADC step 1 and a wide ADC nothing clips, so P = Σ_r w_q[r]·a_q[r] exactly."""
    graph, ctx = tiled(small_cnn(cin=8), macro)
    graph = quantize(graph, ctx, default_bits=LayerBits(w_bits, a_bits)).graph
    node = graph.node(layer)
    q = params(graph)[layer]
    assert q.a_signed == (layer == "c1")
    node.ann.put(replace(q, adc_step=np.float32([1.0]), adc_shift=None))
    spec = cim_spec(graph, node)
    assert spec.q.w_slices == -(-w_bits // macro.cell_bits) and spec.q.a_slices == -(-a_bits // macro.dac_bits)
    x = np.random.default_rng(1).standard_normal((2, *graph.shape(node.inputs[0])[1:])).astype(np.float32)
    trace = run_layer(x, spec)
    a_q = numerics.quantize(as_conv_input(x, spec), spec.q.a_step, a_bits, spec.q.a_signed)
    cols, ho, wo = im2col(a_q, spec)  # (G, N·Ho·Wo, rows)
    exact = np.einsum("gmr,gor->gmo", cols.astype(np.float64),
                      spec.codes().reshape(spec.groups, spec.cout // spec.groups, -1).astype(np.float64))
    exact = exact.reshape(spec.groups, 2, ho, wo, -1).transpose(1, 0, 4, 2, 3).reshape(2, spec.cout, ho, wo)
    np.testing.assert_array_equal(trace.sums, exact)
    conversions = spec.num_segments * spec.q.w_slices * spec.q.a_slices
    assert trace.adc_codes.shape == (2, conversions, spec.cout, ho, wo)


def test_unsliced_layers_keep_the_contract() -> None:
    """4-bit weights on 4-bit cells: one conversion per segment, P = Σ_s p̂_s."""
    graph, ctx = tiled(small_cnn(cin=8))
    graph = quantize(graph, ctx).graph
    spec = cim_spec(graph, graph.node("c2"))
    x = np.random.default_rng(2).standard_normal((1, *graph.shape("r1.y")[1:])).astype(np.float32)
    x = np.maximum(x[:, :, ::2, ::2], 0)
    trace = run_layer(x, spec)
    assert trace.adc_codes.shape[1] == spec.num_segments
    np.testing.assert_array_equal(trace.sums, trace.adc_codes.sum(axis=1))


def test_step_exponents_by_hand() -> None:
    """Conversion kind (t, j) at step S_ADC·2^−m_{t,j}; P = Σ 2^(j·c + t·dac − m_{t,j}) · p̂."""
    graph, ctx = tiled(small_cnn(cin=8), WIDE_ADC)
    graph = quantize(graph, ctx, default_bits=LayerBits(8, 8, 10)).graph
    node = graph.node("c2")
    q = replace(params(graph)["c2"], adc_step=np.float32([24.0]), adc_shift=np.int64([0, 3, 1, 4]))
    node.ann.put(q)
    spec = cim_spec(graph, node)
    x = np.random.default_rng(3).uniform(0, 2, (1, *graph.shape(node.inputs[0])[1:])).astype(np.float32)
    a_q = numerics.quantize(x, q.a_step, 8, False)
    p = sliced_sums(a_q, spec.codes(), spec).astype(np.float64)  # (N, Seg·4, Cout, Ho, Wo), (s, t, j)
    m = np.tile([0, 3, 1, 4], spec.num_segments)
    shift = np.tile([0, 4, 4, 8], spec.num_segments) - m  # j·4 + t·4 − m
    codes = np.clip(np.rint(p * 2.0 ** m[None, :, None, None, None] / 24.0), -511, 511)
    want = (codes * 2.0 ** shift[None, :, None, None, None]).sum(axis=1)
    trace = run_layer(x, spec)
    np.testing.assert_array_equal(trace.adc_codes, codes)
    np.testing.assert_array_equal(trace.sums, want)


def test_fit_shifts() -> None:
    base, m = slicing.fit_shifts(np.float32([[8.0, 16.0], [1.1, 2.0], [8.0, 4.0]]))
    np.testing.assert_array_equal(base, [8.0, 16.0])
    np.testing.assert_array_equal(m, [0, 3, 1])  # medians of log2 ratios: 0, 2.9, 1
