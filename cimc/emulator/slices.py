"""The bit-serial DAC and the shift-add of a bit-sliced CIM layer, as the macro periphery
does them (``cimc.quant.slicing`` states the contract).

* DAC cycles: an ``a_bits`` input code ``a`` is fed over ``T = ceil(a_bits / dac_bits)``
  cycles, cycle ``t`` driving the digit ``(a >> t·d) & (2^d − 1)`` (the last cycle drives
  ``a >> (T−1)·d``, an arithmetic shift, signed when the codes are). The emulator runs the
  ``T`` cycles as ``T`` batches of one convolution.
* ADC: conversion kind ``(t, j)`` uses the step ``S_ADC · 2^−m_{t,j}`` (``adc_shift``, all 0
  when absent), one power-of-two range setting per kind.
* Shift-add: every bitline's ADC code ``p̂[t, s, o, j]`` (input cycle ``t``, segment ``s``,
  output channel ``o``, weight digit column ``j``) is recombined in hardware order: first the
  ``S`` digit columns of a channel, ``Σ_j 2^(j·c − m_{t,j}) p̂``, then the ``T`` input cycles,
  ``Σ_t 2^(t·d) (…)``, then the segments' adder tree ``Σ_s``. Every partial result times
  ``2^max m`` is an integer below ``2^24`` in magnitude (the quantize pass bounds
  ``Σ |terms|``), so float32 is exact and the order cannot change the result.
"""

from __future__ import annotations

import numpy as np


def dac_cycles(codes: np.ndarray, a_slices: int, dac_bits: int | None) -> np.ndarray:
    """``(T·N, C, H, W)`` digits of integer-valued ``codes`` ``(N, C, H, W)``, cycle-major."""
    if a_slices == 1 or dac_bits is None:
        return codes
    q = codes.astype(np.int32)
    mask = (1 << dac_bits) - 1
    cycles = [(q >> (t * dac_bits)) & mask for t in range(a_slices - 1)]
    cycles.append(q >> ((a_slices - 1) * dac_bits))
    return np.stack(cycles).astype(np.float32).reshape(-1, *codes.shape[1:])


def kind_shifts(adc_shift: np.ndarray | None, t_count: int, s_count: int) -> np.ndarray:
    """``m[t, j]`` (int64, zeros without ``adc_shift``)."""
    if adc_shift is None:
        return np.zeros((t_count, s_count), dtype=np.int64)
    return np.asarray(adc_shift, dtype=np.int64).reshape(t_count, s_count)


def adc_steps(adc_step: np.ndarray, adc_shift: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """Steps for ADC codes of ``shape`` ``(T, N, Ho, Wo, Seg, Cout, S)``: ``S_ADC[o] · 2^−m[t, j]``
    (exact), as ``(T, 1, 1, 1, Seg, Cout, S)``, contiguous: numpy then divides whole rows
    instead of runs of ``S`` elements."""
    t_count, seg, cout, s_count = shape[0], shape[4], shape[5], shape[6]
    step = np.asarray(adc_step, dtype=np.float32).reshape(1, -1, 1)  # (1, C, 1)
    m = kind_shifts(adc_shift, t_count, s_count)[:, None, :]  # (T, 1, S)
    steps = np.ldexp(step, -m).astype(np.float32)[:, None, None, None, None, :, :]
    return np.ascontiguousarray(np.broadcast_to(steps, (t_count, 1, 1, 1, seg, cout, s_count)))


def shift_add(adc: np.ndarray, cell_bits: int | None, dac_bits: int | None,
              adc_shift: np.ndarray | None = None) -> np.ndarray:
    """``P`` as ``(N, Ho, Wo, Cout)`` from ADC codes ``(T, N, Ho, Wo, Seg, Cout, S)`` (the
    memory order of the channels-last bitline sums): per input cycle the digit columns
    (one matrix-vector product over the innermost axis ``S``), then the cycles, then the
    segments (module doc)."""
    t_count, s_count = adc.shape[0], adc.shape[-1]
    m = kind_shifts(adc_shift, t_count, s_count)
    digit = np.arange(s_count) * (cell_bits or 0)
    total = np.matmul(adc[0], np.ldexp(np.float32(1), digit - m[0]).astype(np.float32))  # (N, Ho, Wo, Seg, Cout)
    for t in range(1, t_count):
        weights = np.ldexp(np.float32(1), digit - m[t] + t * (dac_bits or 0)).astype(np.float32)
        total += np.matmul(adc[t], weights)
    return total.sum(axis=3, dtype=np.float32)


def conversion_order(adc: np.ndarray) -> np.ndarray:
    """ADC codes ``(T, N, Ho, Wo, Seg, Cout, S)`` as the trace ``(N, Seg·T·S, Cout, Ho, Wo)``,
    conversions in the order ``(segment, input cycle, weight column)``."""
    t_count, n, ho, wo, seg, cout, s_count = adc.shape
    ordered = adc.transpose(1, 4, 0, 6, 5, 2, 3)
    return np.ascontiguousarray(ordered).reshape(n, seg * t_count * s_count, cout, ho, wo)
