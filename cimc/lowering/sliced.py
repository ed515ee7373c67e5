"""A bit-sliced CIM layer (``cimc.quant.slicing``) lowered to standard ONNX ops, exact on
integer-valued float32. Used by ``cim_onnx_layer`` only when the layer has more than one
weight slice ``S`` or input slice ``T``; an unsliced layer keeps its old graph.

For layer ``L`` with input codes ``a`` (``L/input_codes``), ``d`` DAC bits and ``c``-bit cells::

    L/input_floor  = Floor(Mul(a, 2^−t·d))                     (T, N, C, H, W)
    L/input_high   = Floor(Mul(a, 2^−(t+1)·d))
    L/input_digits = Sub(input_floor, Mul(input_high, m_t))    m_t = 2^d (t < T−1), 0 (t = T−1)
                     → Reshape (T·N, C, H, W): the T DAC cycles as T batches, t major
    L/cells        = Cast<float>(weight digits (Seg·G·Cout_g·S, C, kh, kw))   S columns per channel
    L/bitlines     = Round(Conv(Gather(digits, index), cells, group=Seg·G))   (T·N, Seg·Cout·S, Ho, Wo)
    L/partial_sums = Reshape(Transpose(Reshape(…, [T, −1, Seg, Cout, S, Ho, Wo])),
                             [−1, Seg·T·S, Cout, Ho, Wo])       conversions in the order (s, t, j)
    L/adc_codes    = Clip(Round(Div(partial_sums, S_ADC·2^−m_{t,j})), −M, M)   step per kind (t, j)
    L/sums         = ReduceSum(Mul(adc_codes, 2^(j·c + t·d − m_{t,j})), axis 1)   the shift-add, P

``floor(a / 2^k)`` is the arithmetic shift ``a >> k`` for negative codes too, so the digits
are exactly ``cimc.quant.slicing.digits`` (lower ones unsigned, the top one signed when ``a`` is).
The weight digits are constants, in the layer's scheme (``QuantParams.w_digits``: two's
complement or offset, ``cimc.quant.slicing.weight_digits``).
The weight digits' output channel ``o·S + j`` keeps channel ``o``'s conv group, so the grouped
convolution of ``cim_segments`` applies unchanged with ``Cout·S`` columns. Every product, sum
and shift-add term is an integer below ``2^24`` (checked by the quantize pass), so any
summation order onnxruntime picks is exact. The step exponents ``m_{t,j}``
(``QuantParams.adc_shift``, ``cimc.quant.slicing.conversion_steps``) make ``P`` a dyadic number,
still exact (``|P|·2^max m < 2^24``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.quant import slicing
from cimc.quant.cim_layer import CimSpec

if TYPE_CHECKING:
    from cimc.lowering.layer import LayerEmitter


def is_sliced(spec: CimSpec) -> bool:
    """More than one weight or input slice (the unsliced graph is the old one, unchanged)."""
    q = spec.q
    return q.w_slices > 1 or q.a_slices > 1


def weight_digit_codes(spec: CimSpec) -> np.ndarray:
    """``(Cout·S, Cin_g, kh, kw)`` weight digits, output channel ``o·S + j`` (digit ``j`` of ``o``)."""
    q = spec.q
    return slicing.digit_columns(spec.codes(), q.w_bits, q.cell_bits, q.w_digits)


def input_digits(e: LayerEmitter, codes: str) -> str:
    """The ``T`` DAC digits of rank-4 ``codes`` as ``(T·N, C, H, W)`` (module doc)."""
    q = e.spec.q
    t_count, dac = q.a_slices, q.dac_bits
    if t_count == 1 or dac is None:
        return codes
    shape = (t_count, 1, 1, 1, 1)
    shifts = np.arange(t_count) * dac
    low = np.ldexp(np.float32(1), -shifts).astype(np.float32).reshape(shape)
    high = np.ldexp(np.float32(1), -(shifts + dac)).astype(np.float32).reshape(shape)
    base = np.where(np.arange(t_count) < t_count - 1, np.float32(2 ** dac), np.float32(0)).astype(np.float32)
    doc = f"DAC cycles: {t_count} digits of {dac} bits (two's complement, arithmetic shift)"
    floor_low = e.op("Floor", [e.op("Mul", [codes, e.const("digit_low", low)], "input_low", doc)], "input_floor", doc)
    floor_high = e.op("Floor", [e.op("Mul", [codes, e.const("digit_high", high)], "input_scaled_high", doc)],
                      "input_high", doc)
    carry = e.op("Mul", [floor_high, e.const("digit_base", base.reshape(shape))], "input_carry", doc)
    digits = e.op("Sub", [floor_low, carry], "input_digits", doc)
    channels, height, width = e.conv_input_shape()
    target = np.array([-1, channels, height, width], np.int64)
    return e.op("Reshape", [digits, e.const("cycles_as_batch", target)], "input_cycles")


def conversions_shape(e: LayerEmitter, raw: str) -> str:
    """``(T·N, Seg·Cout·S, Ho, Wo)`` bitline sums → ``(N, Seg·T·S, Cout, Ho, Wo)`` (``(N, K, Cout)``
    for a Gemm), the conversions in the order ``(s, t, j)``."""
    spec, q = e.spec, e.spec.q
    seg, cout, s_count, t_count = spec.num_segments, spec.cout, q.w_slices, q.a_slices
    spatial = e.spatial()
    split = np.array([t_count, -1, seg, cout, s_count, *spatial], np.int64)
    parts = e.op("Reshape", [raw, e.const("conversions_split", split)], "conversions")
    perm = [1, 2, 0, 4, 3, *range(5, 5 + len(spatial))]
    ordered = e.op("Transpose", [parts], "conversions_ordered", perm=perm)
    merged = np.array([-1, seg * t_count * s_count, cout, *spatial], np.int64)
    return e.op("Reshape", [ordered, e.const("segments_shape", merged)], "partial_sums")


def adc_steps(spec: CimSpec, spatial: int) -> np.ndarray:
    """ADC step of every conversion, ``(1, Seg·T·S, 1 or Cout[, 1, 1])``: ``S_ADC · 2^−m_{t,j}``."""
    q = spec.q
    kinds = slicing.conversion_steps(q.adc_step, q.adc_shift, q.w_slices * q.a_slices)  # (T·S, C)
    steps = np.tile(kinds, (spec.num_segments, 1))
    return steps.reshape(1, *steps.shape, *(1,) * spatial).astype(np.float32)


def shift_add(e: LayerEmitter, adc: str) -> str:
    """``P = Σ_k 2^(j·c + t·d − m_{t,j}) · p̂_k`` over axis 1: one ``Mul`` and one ``ReduceSum``."""
    spec, q = e.spec, e.spec.q
    weights = slicing.conversion_weights(spec.num_segments, q.a_bits, q.dac_bits, q.w_bits, q.cell_bits,
                                         q.adc_shift)
    shaped = weights.reshape((1, -1) + (1,) * (1 + len(e.spatial())))
    doc = f"shift-add: 2^(j*{q.cell_bits} + t*{q.dac_bits} - m_tj) per conversion (segment, input cycle t, column j)"
    weighted = e.op("Mul", [adc, e.const("shift_add", shaped)], "shifted", doc)
    axis = e.const("segment_axis", np.array([1], np.int64))
    return e.op("ReduceSum", [weighted, axis], "sums", "adder tree: P = sum of the shifted ADC codes", keepdims=0)
