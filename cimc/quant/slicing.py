"""Bit-slicing: codes wider than a cell (weights) or a DAC (inputs) as sums of narrow digits.

A code ``q`` of ``bits`` bits stored in slices of ``width`` bits is split into
``n = ceil(bits / width)`` two's-complement digits::

    q = Σ_{j<n} 2^(j·width) · d_j
    d_j     = (q >> j·width) & (2^width − 1)      j < n − 1   unsigned, [0, 2^width − 1]
    d_{n−1} =  q >> (n−1)·width                   (arithmetic shift)

The most significant digit is signed, ``[−2^(t−1), 2^(t−1) − 1]`` with ``t = bits − (n−1)·width``
bits, when the codes are signed, and unsigned ``[0, 2^t − 1]`` otherwise. One slice
(``bits ≤ width``) is the code itself, so an unsliced layer is the contract of
docs/build-format.md, 'The numerical contract', unchanged. A c-bit cell stores 2^c levels: the
lower weight slices use them as unsigned digits, the most significant slice as a signed one
(its column's periphery applies an offset of ``2^(c−1)`` levels — the *offset* scheme — so no
differential column pair is needed).

With ``S`` weight slices (columns per output channel, adjacent bitlines) and ``T`` input slices
(DAC cycles), every ``(segment s, input slice t, weight slice j)`` is one ADC conversion and
the digital shift-add recombines them::

    p_{s,t,j} = Σ_{r∈s} d_j[r] · e_t[r]
    p̂_{s,t,j} = clip(round(p_{s,t,j} / (S_ADC · 2^−m_{t,j})), ±(2^(adc_bits−1) − 1))
    P         = Σ_{s,t,j} 2^(j·c + t·dac − m_{t,j}) · p̂_{s,t,j}

**Offset weight digits** (``digits="offset"``, ``--weight-digits offset``): every weight digit is
stored with the offset that the two's-complement scheme gives only the top one, so every digit
is signed, ``[−2^(c−1), 2^(c−1) − 1]`` (balanced digits)::

    d_j = ((r_j + 2^(c−1)) mod 2^c) − 2^(c−1)      j < n − 1,   r_0 = q,  r_{j+1} = (r_j − d_j) / 2^c
    d_{n−1} = r_{n−1}

The cells hold the same ``2^c`` levels, the periphery subtracts the same offset on every digit
column. What changes is the partial sums: with two's complement a small negative weight
(``q = −3``: ``d_1 = −1, d_0 = 13``) puts two large sums of opposite sign on two columns, and
every lower-digit sum ``Σ d_j·e`` (``d_j ≥ 0``, inputs ``e ≥ 0``) is one-signed, with a mean that
grows with the rows, so each 5-bit conversion spends its codes on a common part that the
shift-add cancels; offset digits are zero-mean for symmetric weights and every conversion
carries only signal. The price: ``n`` signed digits of ``c`` bits reach
``[−2^(c−1)·U, (2^(c−1) − 1)·U]`` (``U = (2^(n·c) − 1)/(2^c − 1)``), so the weight codes are
clipped to ``±code_max`` with ``code_max = min(2^(w_bits−1) − 1, (2^(c−1) − 1)·U)`` (8 bits on
4-bit cells: ±119 instead of ±127, ``code_max``), and the step search uses that range.

The step exponents ``m_{t,j} ≥ 0`` (``QuantParams.adc_shift``, all 0 by default) give each kind
of conversion its own ADC range at a power-of-two ratio: the most significant weight digits
carry small sums that a step fitted to the large, always-positive sums of the lower digits
would round to nothing. The ratios keep the shift-add a shift-add: ``P·2^M`` (``M = max m``)
is an integer the digital periphery computes with shifts, and ``P`` itself is a dyadic number
float32 holds exactly while ``|P|·2^M < 2^24``.
"""

from __future__ import annotations

import numpy as np


def slice_count(bits: int, width: int | None) -> int:
    """``ceil(bits / width)``; 1 when ``width`` is ``None`` (no slicing)."""
    return 1 if width is None else -(-bits // width)


def code_max(bits: int, width: int | None, scheme: str = "twos") -> int:
    """The largest weight code magnitude: ``2^(bits−1) − 1``, and with ``scheme="offset"`` on
    more than one slice at most ``(2^(c−1) − 1)·(2^(n·c) − 1)/(2^c − 1)`` (module doc)."""
    narrow = (1 << (bits - 1)) - 1
    n = slice_count(bits, width)
    if scheme != "offset" or n == 1:
        return narrow
    assert width is not None
    return min(narrow, ((1 << (width - 1)) - 1) * ((1 << (n * width)) - 1) // ((1 << width) - 1))


def offset_digits(codes: np.ndarray, bits: int, width: int | None) -> np.ndarray:
    """Offset (balanced) digits ``(n, *codes.shape)`` of signed codes ``|q| ≤ code_max`` (module
    doc), float32; the codes themselves (``[None]``) when there is one slice."""
    n = slice_count(bits, width)
    if n == 1:
        return np.asarray(codes, dtype=np.float32)[None]
    assert width is not None
    r = np.asarray(codes).astype(np.int32)
    half, mask = 1 << (width - 1), (1 << width) - 1
    out = np.empty((n, *r.shape), dtype=np.float32)
    for j in range(n - 1):  # n ≤ 16 digits: the loop is over digits, each step vectorised
        d = ((r + half) & mask) - half
        out[j] = d
        r = (r - d) >> width
    out[n - 1] = r
    return out


def digits(codes: np.ndarray, bits: int, width: int | None, signed: bool) -> np.ndarray:
    """Digits ``(n, *codes.shape)`` of integer-valued float32 ``codes`` in their code range
    (module doc), float32. No copy is made when there is one slice. The top digit needs no
    mask: it is the arithmetic shift, and an unsigned ``0 ≤ q < 2^bits`` shifted by
    ``(n−1)·width`` is already below ``2^t`` — so ``signed`` only names the codes' range (as in
    the torch twin ``cimc.train.sliced.digits``)."""
    n = slice_count(bits, width)
    if n == 1:
        return np.asarray(codes, dtype=np.float32)[None]
    assert width is not None
    q = np.asarray(codes).astype(np.int32)
    shifts = (np.arange(n, dtype=np.int32) * width).reshape((n,) + (1,) * q.ndim)
    out = q[None] >> shifts
    out[:-1] &= (1 << width) - 1
    return out.astype(np.float32)


def weight_digits(codes: np.ndarray, bits: int, width: int | None, scheme: str = "twos") -> np.ndarray:
    """Digits ``(n, *codes.shape)`` of signed weight codes in ``scheme`` (``"twos"`` or ``"offset"``: module doc)."""
    if scheme == "offset":
        return offset_digits(codes, bits, width)
    return digits(codes, bits, width, signed=True)


def digit_columns(codes: np.ndarray, bits: int, width: int | None, scheme: str = "twos") -> np.ndarray:
    """Signed weight codes ``(Cout, …)`` as digit columns ``(Cout·n, …)``: row ``o·n + j`` is
    digit ``j`` of channel ``o`` (the macro's column order; the codes themselves when ``n = 1``),
    in digit ``scheme`` (``"twos"`` or ``"offset"``)."""
    d = weight_digits(codes, bits, width, scheme)  # (n, Cout, …)
    if d.shape[0] == 1:
        return d[0]
    return np.ascontiguousarray(np.moveaxis(d, 0, 1)).reshape(-1, *codes.shape[1:])


def digit_weights(bits: int, width: int | None) -> np.ndarray:
    """``2^(j·width)`` for each slice ``j`` (float32, exact)."""
    n = slice_count(bits, width)
    return np.ldexp(np.float32(1.0), np.arange(n) * (width or 0)).astype(np.float32)


def conversion_weights(segments: int, a_bits: int, dac_bits: int | None, w_bits: int,
                       cell_bits: int | None, adc_shift: np.ndarray | None = None) -> np.ndarray:
    """The shift-add weight of every ADC conversion of a layer, ``(segments·T·S,)`` in the
    order ``(s, t, j)``: ``2^(j·cell_bits + t·dac_bits − m_{t,j})`` (all 1 without slicing)."""
    a = digit_weights(a_bits, dac_bits)
    w = digit_weights(w_bits, cell_bits)
    per_kind = np.outer(a, w).reshape(-1)
    if adc_shift is not None:
        per_kind = np.ldexp(per_kind, -np.asarray(adc_shift, dtype=np.int64))
    return np.tile(per_kind, segments).astype(np.float32)


def conversion_steps(adc_step: np.ndarray, adc_shift: np.ndarray | None, kinds: int) -> np.ndarray:
    """ADC step of every kind of conversion, ``(T·S, 1 or Cout)``: ``S_ADC · 2^−m_{t,j}``
    (float32, exact: a power-of-two scaling)."""
    step = np.asarray(adc_step, dtype=np.float32).reshape(1, -1)
    m = np.zeros(kinds, dtype=np.int64) if adc_shift is None else np.asarray(adc_shift, dtype=np.int64)
    return np.ldexp(step, -m[:, None]).astype(np.float32)


def fit_shifts(steps: np.ndarray, max_shift: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """``(S_ADC, m)`` from the best step of every kind of conversion ``steps (T·S, C)``:
    ``S_ADC`` the coarsest per column, ``m_k = round(log2(S_ADC / step_k))`` (the median over
    columns), clipped to ``[0, max_shift]``."""
    steps = np.asarray(steps, dtype=np.float64)
    base = steps.max(axis=0)
    m = np.rint(np.median(np.log2(base[None, :] / steps), axis=1))
    return base.astype(np.float32), np.clip(m, 0, max_shift).astype(np.int64)


def digit_range(bits: int, width: int | None, signed: bool, index: int, scheme: str = "twos") -> tuple[int, int]:
    """Inclusive range of digit ``index`` (the most significant is the last); weight digits in
    ``scheme="offset"``: the range over every code ``|q| ≤ code_max`` (module doc)."""
    n = slice_count(bits, width)
    if scheme == "offset" and n > 1:
        top = code_max(bits, width, scheme)
        d = offset_digits(np.arange(-top, top + 1), bits, width)[index]
        return int(d.min()), int(d.max())
    if n == 1:
        half = (1 << (bits - 1)) - 1
        return (-half, half) if signed else (0, (1 << bits) - 1)
    assert width is not None
    top = bits - (n - 1) * width
    if index < n - 1:
        return 0, (1 << width) - 1
    return (-(1 << (top - 1)), (1 << (top - 1)) - 1) if signed else (0, (1 << top) - 1)


def digit_max(bits: int, width: int | None, signed: bool, scheme: str = "twos") -> int:
    """``max_j max |d_j|``: the largest magnitude any digit of such codes takes (weight digits in
    ``scheme``); a conversion's partial sum is bounded by ``rows · max|d| · max|e|``."""
    ranges = (digit_range(bits, width, signed, j, scheme) for j in range(slice_count(bits, width)))
    return max(max(abs(lo), abs(hi)) for lo, hi in ranges)
