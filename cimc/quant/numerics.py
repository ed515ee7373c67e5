"""The numerical contract of a CIM layer (docs/build-format.md, 'The numerical contract'), in numpy:
one definition that the quantize pass, the ``model.cim.onnx`` exporter, the emulator and the tests share (the QAT
hook implements the same formulas in torch and is tested bit-exact against these).

    a_q  = clip(round(a / S_A), 0, 2^a_bits − 1)                       (unsigned DAC codes)
    w_q  = clip(round(W / S_W), −(2^(w_bits−1) − 1), 2^(w_bits−1) − 1)   (narrow signed cells)
    p_s  = Σ_{rows r in segment s} w_q[r] · a_q[r]                     (exact integer)
    p̂_s  = clip(round(p_s / S_ADC), −(2^(adc_bits−1) − 1), 2^(adc_bits−1) − 1)
    P    = Σ_s p̂_s
    y    = P · (S_W · S_ADC · S_A) + b        (scale-to-shift: P · 2^−k + b)

``round`` is round-half-to-even (``np.rint``). All divisions happen in float32, as torch
and onnxruntime do them, so the three implementations round identically.
"""

from __future__ import annotations

import numpy as np


def signed_max(bits: int) -> int:
    """Largest code of a narrow signed range: ``2^(bits−1) − 1``."""
    return (1 << (bits - 1)) - 1


#: Why signed 1-bit codes are refused wherever a layer's inputs are known to be signed.
ONE_BIT_SIGNED = "a 1-bit narrow signed code (|q| ≤ 2^0 − 1) is always 0"


def always_zero(bits: int, signed: bool) -> bool:
    """Whether every code of the range is 0: narrow signed with 1 bit (an unsigned 1-bit input
    is 0/1 and fine)."""
    return signed and bits < 2


def code_range(bits: int, signed: bool) -> tuple[int, int]:
    """Inclusive code range: narrow signed ``[−(2^(b−1)−1), 2^(b−1)−1]`` or ``[0, 2^b − 1]``."""
    return (-signed_max(bits), signed_max(bits)) if signed else (0, (1 << bits) - 1)


def quantize(x: np.ndarray, step: np.ndarray | float, bits: int, signed: bool, *,
             out: np.ndarray | None = None) -> np.ndarray:
    """``clip(round(x / step), lo, hi)`` in float32 (integer-valued result); ``out`` (a
    float32 array of ``x``'s shape, may be ``x`` itself) avoids temporaries."""
    lo, hi = code_range(bits, signed)
    q = np.divide(np.asarray(x, dtype=np.float32), np.asarray(step, dtype=np.float32), out=out)
    np.rint(q, out=q)
    return np.clip(q, lo, hi, out=q)


def weight_codes(w: np.ndarray, step: np.ndarray, bits: int, code_max: int | None = None) -> np.ndarray:
    """Cell codes of ``W`` (Cout first); ``step`` per layer ``(1,)`` or per column ``(Cout,)``;
    ``code_max`` (default ``2^(bits−1) − 1``) a narrower symmetric range ``±code_max`` (offset
    weight digits, ``cimc.quant.slicing.code_max``)."""
    shape = (-1,) + (1,) * (w.ndim - 1)
    q = quantize(w, np.asarray(step, dtype=np.float32).reshape(shape), bits, signed=True)
    if code_max is not None and code_max < signed_max(bits):
        np.clip(q, -code_max, code_max, out=q)
    return q


def adc_codes(p: np.ndarray, step: np.ndarray, bits: int, channel_axis: int = 1, *,
              out: np.ndarray | None = None) -> np.ndarray:
    """ADC codes of partial sums ``p``; ``step`` per layer or per output channel."""
    step = np.asarray(step, dtype=np.float32)
    if step.size > 1:
        shape = [1] * p.ndim
        shape[channel_axis] = -1
        step = step.reshape(shape)
    return quantize(p, step, bits, signed=True, out=out)


def output_scale(w_step: np.ndarray, adc_step: np.ndarray, a_step: float) -> np.ndarray:
    """``S_W · S_ADC · S_A`` per layer or per column, computed in float32."""
    return (np.asarray(w_step, np.float32) * np.asarray(adc_step, np.float32) * np.float32(a_step)).astype(np.float32)


def shift_exponent(scale: np.ndarray) -> np.ndarray:
    """The ``k`` whose ``2^−k`` is nearest to ``scale`` (least relative error): with
    ``scale = m·2^e``, ``1 ≤ m < 2``, it is ``−e`` if ``m < 1.5`` else ``−e − 1``. int64."""
    mant, exp = np.frexp(np.asarray(scale, dtype=np.float64))  # scale = mant·2^exp, 0.5 ≤ mant < 1
    return np.where(mant < 0.75, 1 - exp, -exp).astype(np.int64)


def shift_scale(k: np.ndarray) -> np.ndarray:
    """``2^−k`` in float32 (exact for every ``k`` a float32 can represent)."""
    return np.ldexp(np.float32(1.0), -np.asarray(k, dtype=np.int64)).astype(np.float32)


def layer_output(total: np.ndarray, scale: np.ndarray, bias: np.ndarray, channel_axis: int | None = 1, *,
                 out: np.ndarray | None = None) -> np.ndarray:
    """``y = P · scale + b`` in float32, two roundings (a multiply, then an add), ``scale``
    and ``b`` per layer ``(1,)`` or per output channel along ``channel_axis`` (``None``: already
    shaped to broadcast against ``total``); ``out`` may be ``total`` itself."""
    s = np.asarray(scale, dtype=np.float32)
    b = np.asarray(bias, dtype=np.float32)
    if channel_axis is not None:
        shape = [1] * total.ndim
        shape[channel_axis] = -1
        s, b = s.reshape(shape), b.reshape(shape)
    y = np.multiply(total, s, dtype=np.float32, out=out)
    return np.add(y, b, dtype=np.float32, out=y)
