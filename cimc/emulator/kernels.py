"""The emulator's elementwise passes as compiled loops (numba): one pass over memory where
numpy needs one per operation.

numpy converts a block of partial sums in five passes (cast, divide, round, clip, sum) and
the DAC in four (divide, round, clip, cast into the laid-out codes); each pass streams the
block through the core again. These loops do each element's whole chain in registers, in
the same float32 operations and order, so the bits are numpy's (``cimc.quant.numerics``):

* ``q = clip(rint(x / step), lo, hi)``: one correctly rounded float32 division (no
  reciprocal, no fused multiply-add: numba compiles without fast-math), ``rint`` rounding
  half to even as ``np.rint``, then the clip;
* ``P`` a float32 sum of integer codes, exact in any order (``|P| < 2^24``), starting at
  ``+0.0`` as ``np.sum`` does;
* ``y = P · scale + b``: a float32 multiply, then a float32 add (two roundings).

Every float scalar argument must be a ``np.float32``: numba types a Python float as float64
and would divide in float64 (``run._fed`` and ``run.convert_and_add`` convert them). A NaN
activation's DAC code is unspecified (numpy's cast of NaN to an integer is too).

The loops release the GIL (the emulator's lanes run them on several threads at once) and
are compiled on first use; numba keeps the machine code in its cache (next to this file, or
in the user's cache folder when that is read-only) so later processes load it in
milliseconds. Numba is imported with this module, which only the emulator imports (0.3–0.4 s;
``cimc --help`` and ``cimc compile`` never pay it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numba
import numpy as np

F = TypeVar("F", bound=Callable[..., Any])


def compiled(fn: F) -> F:
    """``fn`` compiled by numba without the GIL, bounds checks or fast-math (numpy's IEEE
    float32 semantics), its machine code cached on disk where a cache folder is writable."""
    options: dict[str, Any] = {"nogil": True, "boundscheck": False, "error_model": "numpy"}
    try:
        return numba.njit(cache=True, **options)(fn)
    except RuntimeError:  # no writable cache folder: compile in every process
        return numba.njit(**options)(fn)


@compiled
def convert_rows(p: np.ndarray, start: int, count: int, step: np.ndarray, lo: np.float32, hi: np.float32,
                 total: np.ndarray, first: bool, keep: bool) -> None:
    """ADC and adder tree of pixels ``m ∈ [start, start + count)`` of one segment part: with
    ``p̂[s, g, m, w] = clip(rint(p[s, g, m, w] / step[g, w]), lo, hi)``,
    ``total[g, m, w] = (0 if first else total[g, m, w]) + Σ_s p̂[s, g, m, w]`` (segments in
    order), and ``p[s, g, m, w] = p̂`` when ``keep`` (float32 ``p``, for a trace).

    ``p`` ``(S, G, M, W)`` int32 or float32 and ``total`` ``(G, M, W)`` float32, both
    C-contiguous; ``step`` ``(G, W)`` float32."""
    segments, groups, _, width = p.shape
    for g in range(groups):
        steps = step[g]
        for m in range(start, start + count):
            acc = total[g, m]
            if first:
                acc[:] = 0.0
            for s in range(segments):
                row = p[s, g, m]
                for w in range(width):
                    q = min(max(np.rint(np.float32(row[w]) / steps[w]), lo), hi)
                    if keep:
                        row[w] = q
                    acc[w] += q


@compiled
def affine_rows(y: np.ndarray, start: int, count: int, scale: np.ndarray, bias: np.ndarray, relu: bool) -> None:
    """``y[g, m, w] ← y[g, m, w] · scale[g, w] + bias[g, w]`` for ``m ∈ [start, start +
    count)``, a float32 multiply then a float32 add, in place (an output written over a
    second array of the same memory would make every row take the scalar loop); with ``relu``
    then ``max(·, 0)`` as ``np.maximum(·, 0)`` gives it (``+0.0`` for ``−0.0``, NaN kept). All
    float32 C-contiguous: ``y`` ``(G, M, W)``, ``scale``, ``bias`` ``(G, W)``."""
    groups, _, width = y.shape
    zero = np.float32(0.0)
    for g in range(groups):
        sc, b = scale[g], bias[g]
        for m in range(start, start + count):
            row = y[g, m]
            for w in range(width):
                v = row[w] * sc[w] + b[w]
                if relu and not (v > zero or v != v):
                    v = zero
                row[w] = v


@compiled
def dac_codes(x: np.ndarray, step: np.float32, lo: np.float32, hi: np.float32, offset: np.float32,
              out: np.ndarray) -> None:
    """The DAC's fed codes ``out[i] = clip(rint(x[i] / step), lo, hi) + offset`` of float32
    ``x``, cast to ``out``'s dtype (uint8 or float32; integer-valued and in range, exact). Both
    C-contiguous of one shape, taken as one flat run (a loop per image row would leave most
    of each short row to the scalar remainder)."""
    src, dst = x.reshape(-1), out.reshape(-1)
    for i in range(src.size):
        dst[i] = min(max(np.rint(src[i] / step), lo), hi) + offset

