"""Step sizes of a uniform quantizer ``q(x) = s · clip(round(x / s), lo, hi)`` from data.

* ``mse_step``: the step minimising ``Σ (x − q(x))²`` over candidates ``s = α · m / Q_P`` with
  ``m = max |x|`` (``max x`` for an unsigned range), ``Q_P`` the largest code and
  ``α ∈ [0.1, 1]`` (α = 1 never clips; smaller α trade clipping for resolution): a coarse
  grid of 10 values of ``α``, then 9 within ±0.1 of the best. Optionally per slice along one
  axis (one step per output column), and never below ``min_step`` (partial sums are
  integers: an ADC step under 1 only wastes codes).
* ``mse_step(..., importance=h)``: the same search on ``Σ h·(x − q(x))²`` (activation-aware
  weight steps, ``h = E[a²]`` of the input each weight multiplies).
* ``lsq_step``: the LSQ initialisation of Esser et al., ``s = 2 · mean|x| / √Q_P``.
* ``squared_error``: ``Σ (x − q(x))²`` of a given step, per slice (``squared_errors``: of several).

Large tensors are subsampled to about ``SAMPLE`` values in all (at least ``MIN_PER_SLICE``
per slice): the same seeded uniform random subset of positions in every slice (``subsample``),
so results are deterministic. Not a fixed stride: a stride that divides a period of the
tensor (an image row, a feature map, a channel) would keep the same positions of every row —
for NCHW activations with ``stride = W``, only the left edge of the images — and calibrate the
step on a biased sample. The loop runs over the candidate grid only.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from cimc.quant import numerics

SAMPLE = 1 << 16
MIN_PER_SLICE = 128
COARSE = np.linspace(0.1, 1.0, 10)
FINE = np.linspace(-0.1, 0.1, 9)


def subsample(n: int, keep: int, seed: int = 0) -> np.ndarray | None:
    """Sorted indices of a seeded uniform random subset of ``keep`` of ``range(n)``, or
    ``None`` (take all) when ``n ≤ keep`` (module doc: why not a stride)."""
    if n <= keep:
        return None
    return _subset(n, keep, seed)


@lru_cache(maxsize=16)
def _subset(n: int, keep: int, seed: int) -> np.ndarray:
    """``subsample``'s indices, read-only and remembered: a compile draws the same few subsets
    (one per tensor size) layer after layer, and each draw from millions costs milliseconds."""
    index = np.sort(np.random.default_rng(seed).choice(n, keep, replace=False))
    index.flags.writeable = False
    return index


def _slices(x: np.ndarray, axis: int | None) -> np.ndarray:
    """``x`` as ``(C, n)``: one row per slice along ``axis`` (one row when ``axis`` is None),
    each subsampled at the same positions (module doc)."""
    rows = x.reshape(1, -1) if axis is None else np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    index = subsample(rows.shape[1], max(MIN_PER_SLICE, SAMPLE // rows.shape[0]))
    return np.asarray(rows if index is None else rows[:, index], dtype=np.float32)


def _importance(x: np.ndarray, importance: np.ndarray | None, axis: int | None) -> np.ndarray | None:
    """``importance`` (broadcast to ``x``'s shape) sliced and subsampled as ``_slices(x)``."""
    if importance is None:
        return None
    return _slices(np.broadcast_to(np.asarray(importance, dtype=np.float32), x.shape), axis)


def _fallback(step: np.ndarray, min_step: float) -> np.ndarray:
    """Replace non-positive steps (all-zero slices) by 1 and apply the floor."""
    step = np.where(step > 0, step, 1.0)
    return np.maximum(step, min_step).astype(np.float32)


def _sse(rows: np.ndarray, step: np.ndarray, lo: int, hi: int, weights: np.ndarray | None = None) -> np.ndarray:
    """``Σ h·(x − s·clip(round(x / s), lo, hi))²`` per row, float64 (``h = 1`` without ``weights``)."""
    s = step.astype(np.float32).reshape(-1, 1)
    err = rows / s  # one scratch array, the same float32 operations in the same order
    np.rint(err, out=err)
    np.clip(err, lo, hi, out=err)
    err *= s
    np.subtract(rows, err, out=err)
    err *= err
    if weights is not None:
        err *= weights
    return err.sum(axis=1, dtype=np.float64)


def squared_error(x: np.ndarray, step: np.ndarray, bits: int, signed: bool, axis: int | None = None) -> np.ndarray:
    """Quantization error ``Σ (x − q(x))²`` per slice along ``axis`` (``step``: 1 or one per slice)."""
    return squared_errors(x, [step], bits, signed, axis)[0]


def squared_errors(x: np.ndarray, steps: Sequence[np.ndarray] | np.ndarray, bits: int, signed: bool,
                   axis: int | None = None) -> np.ndarray:
    """``squared_error`` of every candidate ``steps[g]``, stacked ``(G, slices)``: ``x`` is
    sliced and subsampled once for all of them (each candidate's error is computed as alone)."""
    rows = _slices(x, axis)
    lo, hi = numerics.code_range(bits, signed)
    return np.stack([_sse(rows, np.broadcast_to(np.asarray(step, np.float32).reshape(-1), (rows.shape[0],)), lo, hi)
                     for step in steps])


def _search(rows: np.ndarray, base: np.ndarray, alphas: np.ndarray, lo: int, hi: int,
            min_step: float, weights: np.ndarray | None = None) -> np.ndarray:
    """Per row, the ``α`` of ``alphas[row]`` whose step ``base·α`` has the least (weighted) squared error."""
    best = np.full(rows.shape[0], np.inf)
    best_alpha = alphas[:, 0].copy()
    for j in range(alphas.shape[1]):
        err = _sse(rows, _fallback(base * alphas[:, j], min_step), lo, hi, weights)
        better = err < best
        best = np.where(better, err, best)
        best_alpha = np.where(better, alphas[:, j], best_alpha)
    return best_alpha


def _range(bits: int, signed: bool, code_max: int | None) -> tuple[int, int]:
    """The code range, narrowed to ``±code_max`` for signed codes when given (offset weight digits)."""
    lo, hi = numerics.code_range(bits, signed)
    if code_max is not None and signed:
        return max(lo, -code_max), min(hi, code_max)
    return lo, hi


def mse_step(x: np.ndarray, bits: int, signed: bool, axis: int | None = None, *,
             min_step: float = 0.0, importance: np.ndarray | None = None, code_max: int | None = None) -> np.ndarray:
    """MSE-optimal step(s): shape ``(1,)`` or ``(x.shape[axis],)``, float32 (module doc).
    A coarse grid of ``α`` first, then a fine one around the best coarse value.

    ``importance`` (non-negative, broadcastable to ``x``) weighs each value's squared error:
    ``Σ h·(x − q(x))²``. For weights, ``h = E[a²]`` of the input each one multiplies makes the
    objective the expected output error of a layer with uncorrelated inputs (activation-aware
    steps): a weight that only ever sees zeros (a dead channel, a tap over the padding) no
    longer sets the step. The range ``max |x|`` is then taken over the values with ``h > 0``.
    ``code_max`` narrows signed codes to ``±code_max`` (offset weight digits)."""
    rows = _slices(x, axis)
    weights = _importance(x, importance, axis)
    lo, hi = _range(bits, signed, code_max)
    seen = rows if weights is None else np.where(weights > 0, rows, 0)
    top = np.abs(seen).max(axis=1) if signed else np.maximum(seen.max(axis=1), 0)
    base = _fallback(top.astype(np.float64) / hi, 0.0)
    alpha = _search(rows, base, np.broadcast_to(COARSE, (rows.shape[0], COARSE.shape[0])), lo, hi, min_step, weights)
    fine = np.clip(alpha[:, None] + FINE[None, :], COARSE[0], 1.0)
    return _fallback(base * _search(rows, base, fine, lo, hi, min_step, weights), min_step)


def lsq_step(x: np.ndarray, bits: int, signed: bool, axis: int | None = None, *,
             code_max: int | None = None) -> np.ndarray:
    """LSQ initialisation ``2·mean|x|/√Q_P`` per slice (module doc; ``Q_P`` at most ``code_max``)."""
    rows = _slices(x, axis)
    hi = _range(bits, signed, code_max)[1]
    return _fallback(2.0 * np.abs(rows).mean(axis=1, dtype=np.float64) / np.sqrt(hi), 0.0)
