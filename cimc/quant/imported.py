"""Steps of a quantized (QDQ or QONNX) model: the ``cimc.qdq`` document that
``cimc.frontend.quantizers`` writes into ``graph.metadata``, turned into ``QuantParams``.

Per layer the model may give the weight step ``S_W`` (1 or Cout values, with its bits) and the
input step ``S_A`` (with its bits and sign). ``imported_layer`` keeps them when

* no other bits were asked for that layer (``--w-bits``/``--a-bits``/``--bits``), and
* the layer's weights are still the model's dequantized values ``W = q·S_W`` with narrow codes
  ``|q| ≤ 2^(b−1) − 1`` (``numerics.weight_codes`` gives ``q`` back exactly); a BatchNorm
  folded into the weights after the quantizer, or a code ``−2^(b−1)``, breaks this.

What is not kept is calibrated as usual (``calibrate_layer``'s rules), with a warning naming the
layer and the reason. The ADC step is always calibrated, on the partial sums of the kept steps.
``source`` is ``"qdq"`` (weights and inputs kept), ``"qdq-weights"`` or ``"qdq-inputs"`` (one of
them), ``"calibration"`` (neither).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cimc.errors import InvalidModelError
from cimc.frontend.quantizers import QDQ_KEY, VERSION
from cimc.quant import numerics
from cimc.quant.cim_layer import CimSpec
from cimc.quant.layer_steps import Chosen, calibrated
from cimc.untrusted import load_json

log = logging.getLogger(__name__)

KEY = QDQ_KEY


@dataclass(frozen=True)
class ImportedSteps:
    """One layer's steps from the model (``None``: not given, or not representable)."""

    w_bits: int | None
    w_step: np.ndarray | None
    a_bits: int | None
    a_step: float | None
    a_signed: bool


def parse_imported(text: str) -> dict[str, ImportedSteps]:
    """The layers of a ``cimc.qdq`` document (module doc of ``cimc.frontend.quantizers``)."""
    doc = load_json(text, f"'{KEY}'", InvalidModelError)  # nesting bounded (cimc.untrusted)
    if not isinstance(doc, dict) or doc.get("version") != VERSION or not isinstance(doc.get("layers"), dict):
        raise InvalidModelError(f"'{KEY}' is not a version {VERSION} document with 'layers'")
    return {str(name): _entry(str(name), entry) for name, entry in doc["layers"].items()}


def _entry(name: str, entry: Any) -> ImportedSteps:
    if not isinstance(entry, dict):
        raise InvalidModelError(f"'{KEY}' layer '{name}': expected an object")
    w_bits, a_bits = _bits(name, entry.get("w_bits")), _bits(name, entry.get("a_bits"))
    w_step = entry.get("w_step")
    steps = None
    if w_bits is not None:
        if not isinstance(w_step, list) or not w_step or not all(_positive(v) for v in w_step):
            raise InvalidModelError(f"'{KEY}' layer '{name}': w_step must be a list of positive numbers")
        steps = np.asarray(w_step, dtype=np.float32)
        steps.flags.writeable = False
    a_step = entry.get("a_step")
    if a_bits is not None and not _positive(a_step):
        raise InvalidModelError(f"'{KEY}' layer '{name}': a_step must be a positive number")
    return ImportedSteps(w_bits, steps, a_bits, float(a_step) if a_bits is not None and a_step is not None else None,
                         bool(entry.get("a_signed")))


def _bits(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16:
        raise InvalidModelError(f"'{KEY}' layer '{name}': bits {value!r} not an integer in 1..16")
    return value


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _on_grid(weight: np.ndarray, step: np.ndarray, bits: int) -> bool:
    """``W`` is exactly ``q·S_W`` with narrow ``bits``-bit codes ``q``."""
    if step.shape[0] not in (1, weight.shape[0]):
        return False
    codes = numerics.weight_codes(weight, step, bits)
    shape = (-1,) + (1,) * (weight.ndim - 1)
    back = (codes * np.asarray(step, np.float32).reshape(shape)).astype(np.float32)
    return bool(np.array_equal(back, weight))


def kept_weights(name: str, spec: CimSpec, steps: ImportedSteps, asked: int | None) -> bool:
    """Whether layer ``name`` keeps the model's ``S_W`` (module doc), warning when not."""
    if steps.w_bits is None or steps.w_step is None:
        return False
    if asked is not None and asked != steps.w_bits:
        log.warning("layer '%s': %d-bit weights asked, the model's are %d-bit: re-quantizing them (S_W calibrated)",
                    name, asked, steps.w_bits)
        return False
    if steps.w_bits < 2 or not _on_grid(spec.weight, steps.w_step, steps.w_bits):
        log.warning("layer '%s': its weights are not the model's %d-bit codes times S_W any more (a BatchNorm "
                    "folded into them, or a code -2^(b-1) cimc's narrow cells cannot hold): S_W calibrated",
                    name, steps.w_bits)
        return False
    return True


def kept_inputs(name: str, steps: ImportedSteps, asked: int | None) -> bool:
    """Whether layer ``name`` keeps the model's ``S_A`` (module doc), warning when not."""
    if steps.a_bits is None or steps.a_step is None:
        return False
    if asked is not None and asked != steps.a_bits:
        log.warning("layer '%s': %d-bit inputs asked, the model's are %d-bit: re-quantizing them (S_A calibrated)",
                    name, asked, steps.a_bits)
        return False
    return True


def imported_steps(name: str, spec: CimSpec, x: np.ndarray, steps: ImportedSteps, bits: tuple[int, int],
                   asked: tuple[int | None, int | None], granularity: str, weight_method: str) -> Chosen:
    """The model's steps where kept, calibration else (module doc); ``bits`` are the layer's
    resolved weight and input bits, ``asked`` those explicitly asked for."""
    keep_w, keep_a = kept_weights(name, spec, steps, asked[0]), kept_inputs(name, steps, asked[1])
    cal = calibrated(spec, x, bits[0], bits[1], granularity, weight_method) if not (keep_w and keep_a) else None
    w_bits, w_step = (steps.w_bits, steps.w_step) if keep_w else (cal.w_bits, cal.w_step)  # type: ignore[union-attr]
    a_bits, a_step, signed = (steps.a_bits, steps.a_step, steps.a_signed) if keep_a else \
        (cal.a_bits, cal.a_step, cal.a_signed)  # type: ignore[union-attr]
    source = {(True, True): "qdq", (True, False): "qdq-weights", (False, True): "qdq-inputs",
              (False, False): "calibration"}[(keep_w, keep_a)]
    assert w_bits is not None and w_step is not None and a_bits is not None and a_step is not None
    return Chosen(w_bits, w_step, a_bits, a_step, signed, source)
