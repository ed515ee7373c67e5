"""The ADC steps of a sliced layer's conversion kinds, chosen jointly.

A sliced layer (``cimc.quant.slicing``) converts ``T·S`` kinds of partial sums ``p_k``
(input digit ``t``, weight digit ``j``), recombined with weights ``c_k = 2^(j·cell_bits +
t·dac_bits)``; kind ``k`` is converted with step ``S_ADC · 2^−m_k`` (one ``S_ADC`` per layer or
column, one integer ``m_k ≥ 0`` per kind). Each kind's own MSE-optimal step ``σ_k`` is rarely a
power-of-two fraction of another's, so at most one kind can get its optimum. Their errors add
up in the layer's sum ``P = Σ_k c_k·p̂_k`` as

    E = Σ_k c_k² · Σ (p_k − q(p_k; S_ADC·2^−m_k))²

(independent rounding errors). ``fit_kind_steps`` tries every kind ``a`` as the anchor that
keeps its optimum (``S_ADC·2^−m_a = σ_a``), rounds the others' exponents
``m_k − m_a = round(log2(σ_a / σ_k))`` (the median over columns when steps are per column) and
keeps the anchor of least ``E``. The anchor of ``slicing.fit_shifts`` — always the coarsest
kind, usually the least significant one (weight ``c_k = 1``) — is one of the candidates, so the
result is never worse than it on the calibration data; in practice the most significant kind
(``c_k`` up to ``2^(cell_bits + dac_bits)``) keeps its optimum instead.
"""

from __future__ import annotations

import numpy as np

from cimc.quant.step_search import squared_error


def anchored(steps: np.ndarray, anchor: int, max_shift: int) -> tuple[np.ndarray, np.ndarray]:
    """``(S_ADC, m)`` with kind ``anchor`` at its step ``steps[anchor]`` (``steps (K, C)``), the
    others at the nearest power-of-two fractions, ``m ≥ 0`` (module doc)."""
    s = np.asarray(steps, dtype=np.float64)
    rel = np.rint(np.median(np.log2(s[anchor][None, :] / s), axis=1))  # m_k − m_anchor
    rel = np.clip(rel - rel.min(), 0, max_shift) + rel.min()
    low = rel.min()
    return (s[anchor] * np.exp2(-low)).astype(np.float32), (rel - low).astype(np.int64)


def kind_error(p: np.ndarray, base: np.ndarray, shift: np.ndarray, weights: np.ndarray, bits: int,
               per_column: bool) -> float:
    """``E`` of the module doc for partial sums ``p (M, segments, K, C)``."""
    total = 0.0
    for k in range(p.shape[2]):
        step = (base.astype(np.float64) * np.exp2(-float(shift[k]))).astype(np.float32)
        err = squared_error(p[:, :, k], step, bits, True, 2 if per_column else None)
        total += float(weights[k]) ** 2 * float(err.sum())
    return total


def fit_kind_steps(p: np.ndarray, steps: np.ndarray, weights: np.ndarray, bits: int, per_column: bool,
                   max_shift: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """``(S_ADC, m)`` of least ``E`` over all anchors (module doc); ``p (M, segments, K, C)``,
    ``steps (K, 1 or C)`` each kind's own MSE-optimal step, ``weights (K,)`` the ``c_k``."""
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for anchor in range(steps.shape[0]):
        base, shift = anchored(steps, anchor, max_shift)
        err = kind_error(p, base, shift, weights, bits, per_column)
        if best is None or err < best[0]:
            best = (err, base, shift)
    assert best is not None
    return best[1], best[2]
