"""AdaRound (Nagel et al., *Up or Down? Adaptive Rounding for Post-Training Quantization*,
ICML 2020): each weight rounded up or down so that the layer's *output*, not each weight, is
closest to the float layer's on the calibration data.

With the weight step ``s`` (per layer or per column) fixed, the codes are
``q = clip(⌊W/s⌋ + h, lo, hi)`` with one ``h ∈ {0, 1}`` per weight; round-to-nearest is one
choice of ``h``. AdaRound relaxes ``h`` to ``h(V) = clip(σ(V)·(ζ − γ) + γ, 0, 1)``
(``ζ = 1.1``, ``γ = −0.1``) and minimises, per group ``g`` of the layer,

    L(V) = E[‖W̃·x̂ − W·x‖²] / L₀ + λ · mean(1 − |2h(V) − 1|^β),     W̃ = s·q(h(V))

where ``x`` are the float input windows the layer's rows multiply (im2col of its calibration
input, at most ``PIXELS`` output pixels, a seeded subset), ``x̂`` the same windows through the
DAC (``quantize(x, S_A)·S_A``: the rounding also makes up for the input's quantization error,
the *asymmetric* reconstruction of the paper's §5), and ``L₀`` the error of round-to-nearest
(so ``λ`` needs no per-layer scale). With ``Ĥ = E[x̂x̂ᵀ]`` and ``K = E[x·x̂ᵀ]`` (``rows × rows``
per group) the first term is ``tr(W̃ĤW̃ᵀ) − 2·tr(W·K·W̃ᵀ) + tr(W·H·Wᵀ)``, its gradient
``2·(W̃Ĥ − W·K)``: each Adam step costs one ``(Cout_g × rows)·(rows × rows)`` product per group
and no pass over the data. A warm-up of ``WARMUP`` of the steps runs without the regulariser,
then ``β`` anneals from 20 to 2, pushing every ``h`` to 0 or 1; the result is hardened to
``h = [V ≥ 0]``, and kept only if its output error is below round-to-nearest's (so AdaRound
never makes a layer worse on its calibration data). The ADC is not in the objective (its
rounding has no useful gradient, and it acts per segment); ``calibrate_layer`` fits the ADC
step to the new codes afterwards.
"""

from __future__ import annotations

import numpy as np

from cimc.quant import numerics
from cimc.quant.cim_layer import CimSpec
from cimc.quant.reference import as_conv_input, im2col_at
from cimc.quant.step_search import subsample

ZETA, GAMMA = 1.1, -0.1
#: Adam steps, the share of them without the regulariser, learning rate, regulariser weight.
ITERATIONS, WARMUP, LR, LAMBDA = 1000, 0.2, 0.01, 0.01
#: At most this many output pixels of the calibration batch form ``Ĥ`` and ``K``.
PIXELS = 8192
#: Layers with more rows than this keep round-to-nearest: ``Ĥ``, ``H`` and ``K`` take
#: ``3·G·rows²`` float64 values and each Adam step ``Cout·rows²`` products (a 4,608-row VGG16
#: layer: 0.5 GB and about 10 TFLOP over the steps).
MAX_ROWS = 2304


def too_large(spec: CimSpec) -> bool:
    """Whether AdaRound leaves ``spec`` at round-to-nearest (``rows > MAX_ROWS``)."""
    return spec.rows > MAX_ROWS


def moments(spec: CimSpec, x: np.ndarray, a_step: float, a_bits: int, a_signed: bool,
            pixels: int = PIXELS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(H, Ĥ, K)`` per group, each ``(G, rows, rows)`` float64: ``E[x·xᵀ]``, ``E[x̂·x̂ᵀ]`` and
    ``E[x·x̂ᵀ]`` over (a seeded subset of) the output pixels of ``x`` (module doc)."""
    a = as_conv_input(np.asarray(x, dtype=np.float32), spec)
    a_hat = (numerics.quantize(a, a_step, a_bits, a_signed) * np.float32(a_step)).astype(np.float32)
    every = a.shape[0] * int(np.prod(spec.out_hw(a.shape[2:])))
    index = subsample(every, pixels)
    at = np.arange(every) if index is None else index
    cols = im2col_at(a, spec, at).astype(np.float64)  # (G, M, rows)
    cols_hat = im2col_at(a_hat, spec, at).astype(np.float64)
    m = cols.shape[1]
    h = np.einsum("gmr,gms->grs", cols, cols) / m
    h_hat = np.einsum("gmr,gms->grs", cols_hat, cols_hat) / m
    k = np.einsum("gmr,gms->grs", cols, cols_hat) / m
    return h, h_hat, k


def output_error(w_tilde: np.ndarray, w: np.ndarray, h: np.ndarray, h_hat: np.ndarray, k: np.ndarray) -> float:
    """``E[‖W̃·x̂ − W·x‖²]`` summed over output channels, for grouped ``(G, Cout_g, rows)`` weights."""
    quad = np.einsum("gor,grs,gos->", w_tilde, h_hat, w_tilde)
    cross = np.einsum("gor,grs,gos->", w, k, w_tilde)
    return float(quad - 2.0 * cross + np.einsum("gor,grs,gos->", w, h, w))


def _relaxed(v: np.ndarray) -> np.ndarray:
    return np.clip((1.0 / (1.0 + np.exp(-v))) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def _initial_v(rest: np.ndarray) -> np.ndarray:
    """``V`` with ``h(V) = rest`` (the fractional part of ``W/s``)."""
    p = (rest - GAMMA) / (ZETA - GAMMA)
    return np.log(p / (1.0 - p))


def adaround_codes(spec: CimSpec, x: np.ndarray, w_step: np.ndarray, w_bits: int, a_step: float, a_bits: int,
                   a_signed: bool, iterations: int = ITERATIONS, code_max: int | None = None) -> np.ndarray:
    """The layer's weight codes ``(Cout, Cin_g, kh, kw)`` (integer-valued float32) by AdaRound
    (module doc), or round-to-nearest's where that has the smaller output error; within
    ``±code_max`` when given (offset weight digits), else the narrow ``w_bits`` range."""
    g, cout = spec.groups, spec.cout
    shape = (g, cout // g, spec.rows)
    s = np.broadcast_to(np.asarray(w_step, dtype=np.float64).reshape(-1, 1), (cout, spec.rows)).reshape(shape)
    w = spec.weight.astype(np.float64).reshape(shape)
    lo, hi = numerics.code_range(w_bits, True)
    if code_max is not None:
        lo, hi = max(lo, -code_max), min(hi, code_max)
    nearest = numerics.weight_codes(spec.weight, w_step, w_bits, code_max).astype(np.float64).reshape(shape)
    h, h_hat, k = moments(spec, x, a_step, a_bits, a_signed)
    base0 = output_error(s * nearest, w, h, h_hat, k)
    if base0 <= 0.0:
        return nearest.reshape(spec.weight.shape).astype(np.float32)
    ratio = w / s
    base = np.floor(ratio)
    free = (base >= lo) & (base + 1 <= hi)  # elsewhere the clip decides the code whatever h is
    v = _initial_v(np.clip(ratio - base, 0.0, 1.0))
    m1, m2 = np.zeros_like(v), np.zeros_like(v)
    target = w @ k  # W·K (K = E[x·x̂ᵀ]: row r of x against row s of x̂)
    warm = int(WARMUP * iterations)
    for step in range(iterations):
        soft = _relaxed(v)
        q = np.clip(base + soft, lo, hi)
        grad_w = 2.0 * ((s * q) @ h_hat - target) / base0  # ∂L/∂W̃
        sig = 1.0 / (1.0 + np.exp(-v))
        inside = (soft > 0.0) & (soft < 1.0) & free
        grad = np.where(inside, grad_w * s * sig * (1.0 - sig) * (ZETA - GAMMA), 0.0)
        if step >= warm:
            beta = 2.0 + 18.0 * (1.0 - (step - warm) / max(1, iterations - warm))
            t = 2.0 * soft - 1.0
            dreg = -beta * np.abs(t) ** (beta - 1.0) * np.sign(t) * 2.0  # d/dh (1 − |2h − 1|^β)
            grad = grad + np.where(inside, LAMBDA / v.size * dreg * sig * (1.0 - sig) * (ZETA - GAMMA), 0.0)
        m1 = 0.9 * m1 + 0.1 * grad
        m2 = 0.999 * m2 + 0.001 * grad * grad
        v = v - LR * (m1 / (1 - 0.9 ** (step + 1))) / (np.sqrt(m2 / (1 - 0.999 ** (step + 1))) + 1e-8)
    hard = np.clip(base + (v >= 0.0), lo, hi)
    chosen = hard if output_error(s * hard, w, h, h_hat, k) < base0 else nearest
    return chosen.reshape(spec.weight.shape).astype(np.float32)
