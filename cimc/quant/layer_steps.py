"""A CIM layer's weight and input steps before its ADC step: calibrated from the layer's weights
and calibration input, or chosen elsewhere (a quantized model's own, ``cimc.quant.imported``).

* ``S_W`` (``weight_step``): ``mse`` — MSE-optimal on the weights; ``aware`` — MSE weighted by
  the mean square of the input each weight multiplies (``calibration.weight_importance``: taps
  that only ever see padding or dead channels stop setting the step); ``lsq`` — LSQ's
  initialisation ``2·mean|W|/√Q_P``. Per output column with ``granularity="column"``.
* ``S_A``: MSE-optimal on the layer's float input ``x``; codes signed (narrow) only when ``x``
  goes negative and signed codes quantize it with less squared error than unsigned ones
  (``input_signed``: a SiLU output stays unsigned).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cimc.quant import numerics
from cimc.quant.calibration import weight_importance
from cimc.quant.cim_layer import CimSpec
from cimc.quant.step_search import lsq_step, mse_step, squared_error


@dataclass(frozen=True, eq=False)
class Chosen:
    """A layer's weight and input quantization before its ADC step is calibrated."""

    w_bits: int
    w_step: np.ndarray
    a_bits: int
    a_step: float
    a_signed: bool
    source: str


def weight_step(spec: CimSpec, x: np.ndarray, w_bits: int, method: str, axis: int | None,
                code_max: int | None = None) -> np.ndarray:
    """``S_W`` by ``method`` (module doc), for codes ``±code_max`` (default: narrow ``w_bits``)."""
    if method == "lsq":
        return lsq_step(spec.weight, w_bits, True, axis, code_max=code_max)
    importance = weight_importance(spec, x) if method == "aware" else None
    return mse_step(spec.weight, w_bits, True, axis, importance=importance, code_max=code_max)


def input_signed(x: np.ndarray, a_bits: int) -> bool:
    """Whether the layer's input codes are signed: only when ``x`` goes negative, and then only
    when narrow signed codes at their MSE-optimal step quantize ``x`` with less squared error
    than unsigned codes at theirs (which clip the negative values to 0). A SiLU output
    (``≥ −0.28``) stays unsigned: its small negative tail costs less than the halved resolution
    of the positive range that signed codes would give it."""
    if not bool((x < 0).any()) or numerics.always_zero(a_bits, True):  # 1-bit signed codes are all 0
        return False
    errors = [float(squared_error(x, mse_step(x, a_bits, s), a_bits, s)[0]) for s in (True, False)]
    return errors[0] < errors[1]


def calibrated(spec: CimSpec, x: np.ndarray, w_bits: int, a_bits: int, granularity: str,
               weight_method: str, code_max: int | None = None) -> Chosen:
    """``S_W`` (for codes ``±code_max``, default narrow ``w_bits``) and ``S_A`` calibrated
    (module doc), source ``"calibration"``."""
    axis = 0 if granularity == "column" else None
    w_step = weight_step(spec, x, w_bits, weight_method, axis, code_max)
    signed = input_signed(x, a_bits)
    return Chosen(w_bits, w_step, a_bits, float(mse_step(x, a_bits, signed)[0]), signed, "calibration")
