"""Bias correction (Nagel et al., *Data-Free Quantization*, ICCV 2019, §4.2, empirical form).

Quantizing weights, inputs and partial sums shifts a layer's mean output: with ``y`` the float
output and ``ŷ`` the compiled one on the layer's float calibration input,
``E[ŷ_o] − E[y_o]`` is in general not zero (rounding and clipping are biased, e.g. an ADC that
clips the tail of a skewed partial-sum distribution). The bias is digital (added after the
scale, ``y = P·s + b``), so replacing

    b_o  →  b_o − (E[ŷ_o] − E[y_o])

makes the compiled layer's mean output on the calibration batch equal the float one exactly
(up to float32 rounding), for every output channel ``o``; the mean squared error then drops by
the squared mean error (``E[e²] = Var[e] + E[e]²``, and only ``E[e]`` changes). ``E[y_o]``
comes from the input's window means (``calibration.window_moments``), ``E[ŷ_o]`` from running
the layer by the contract (``reference.run_layer``). When scale-to-shift later moves the ADC
step (an ADC fold), ``refolded_bias`` moves the bias by the change of the mean output, so the
correction still holds.
"""

from __future__ import annotations

import numpy as np

from cimc.quant.calibration import window_moments
from cimc.quant.cim_layer import CimSpec
from cimc.quant.reference import run_layer


def mean_output(spec: CimSpec, x: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """``E[y_o]`` of the float layer (with ``bias``, default the layer's) over every output
    pixel of ``x``, float64 ``(Cout,)``."""
    mean, _ = window_moments(spec, x)  # (G, rows)
    w = spec.weight.reshape(spec.groups, spec.cout // spec.groups, spec.rows).astype(np.float64)
    b = spec.bias if bias is None else bias
    return np.einsum("gr,gor->go", mean, w).reshape(-1) + b.astype(np.float64)


def mean_error(spec: CimSpec, x: np.ndarray, float_bias: np.ndarray | None = None,
               float_spec: CimSpec | None = None) -> np.ndarray:
    """``E[ŷ_o] − E[y_o]`` on ``x`` for the layer's ``QuantParams`` (module doc), float64
    ``(Cout,)``; the float ``y`` is ``float_spec``'s (default: ``spec``'s own weights; the layer
    as before quantize changed its weights, e.g. by AdaRound) with bias ``float_bias`` (default:
    its own, as before any correction)."""
    reference = spec if float_spec is None else float_spec
    return _channel_means(run_layer(x, spec).outputs, spec) - mean_output(reference, x, float_bias)


def corrected_bias(spec: CimSpec, x: np.ndarray, float_spec: CimSpec | None = None) -> np.ndarray:
    """The bias ``b − (E[ŷ] − E[y])`` (module doc; ``y`` of ``float_spec`` as in ``mean_error``),
    float32 ``(Cout,)``."""
    return (spec.bias.astype(np.float64) - mean_error(spec, x, float_spec=float_spec)).astype(np.float32)


def refolded_bias(before: CimSpec, after: CimSpec, x: np.ndarray, scale_before: np.ndarray,
                  gain: float = 1.0) -> np.ndarray:
    """The bias that keeps a corrected layer's mean output when its ADC step changes (an ADC
    fold of scale-to-shift): ``b − (E[P'·s'] − E[P·s])``, with ``P``/``P'`` the accumulated sums
    before/after on ``x``, ``s = scale_before`` the true output scale before and ``s'`` the one
    after (``after.scale() / gain``: a layer outputting ``gain·y``, a residual stream's member).
    The mean error corrected before (against the float layer) stays corrected. Float32 ``(Cout,)``."""
    old = _channel_means(run_layer(x, before).sums, before) * scale_before.astype(np.float64)
    new = _channel_means(run_layer(x, after).sums, after) * (after.scale().astype(np.float64) / gain)
    return (after.bias.astype(np.float64) - (new - old)).astype(np.float32)


def _channel_means(y: np.ndarray, spec: CimSpec) -> np.ndarray:
    axes = tuple(i for i in range(y.ndim) if i != (1 if spec.kind == "conv" else y.ndim - 1))
    return y.mean(axis=axes, dtype=np.float64)
