"""QAT results carried inside the model: ONNX ``metadata_props["cimc.quant"]`` (after import
``graph.metadata["cimc.quant"]``), a JSON document::

    {"version": 1,
     "layers": {"<node name of the Conv/Gemm>": {
         "w_bits": 4, "a_bits": 4, "adc_bits": 5,
         "w_step": [1 or Cout floats], "a_step": float, "a_signed": false,
         "adc_step": [1 or Cout floats],
         "adc_shift": [T·S ints ≥ 0]}}}          (optional: bit-sliced layers, ``cimc.quant.slicing``)

The weights of those layers are the BN-folded float weights the steps were trained for.
``parse_qat`` checks everything and names the layer in every error: bits within the ranges of
``cimc.options``, steps finite and positive, step lists of length 1 or Cout.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from cimc.errors import InvalidModelError, UsageError
from cimc.ir.annotations import QuantParams
from cimc.options import validate
from cimc.quant import numerics
from cimc.untrusted import load_json

log = logging.getLogger(__name__)

KEY = "cimc.quant"
VERSION = 1
_FIELDS = ("w_bits", "a_bits", "adc_bits", "w_step", "a_step", "adc_step")


def parse_qat(text: str, couts: Mapping[str, int]) -> dict[str, QuantParams]:
    """``QuantParams`` (source ``"qat"``) per layer named in ``text``; ``couts`` maps every
    CIM layer to its output channels. Entries for nodes that exist but are not CIM layers
    are ignored with a warning; entries for unknown nodes are errors."""
    doc = _document(text)
    out: dict[str, QuantParams] = {}
    for name, entry in sorted(doc["layers"].items()):
        if name not in couts:
            continue
        out[name] = layer_params(name, entry, couts[name])
    return out


def _document(text: str) -> dict[str, Any]:
    doc = load_json(text, f"model metadata '{KEY}'", InvalidModelError)  # nesting bounded (cimc.untrusted)
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        version = doc.get("version") if isinstance(doc, dict) else None
        raise InvalidModelError(f"model metadata '{KEY}' has version {version!r}; cimc reads version {VERSION}")
    if not isinstance(doc.get("layers"), dict):
        raise InvalidModelError(f"model metadata '{KEY}' needs a 'layers' object")
    return doc


def check_layer_names(text: str, nodes: Mapping[str, str], couts: Mapping[str, int]) -> None:
    """Raise for layers naming no node; warn for nodes that will not run on CIM macros."""
    for name in sorted(_document(text)["layers"]):
        if name not in nodes:
            raise InvalidModelError(f"'{KEY}' has parameters for layer '{name}', but the model has no such node",
                                    hint="QAT results must name the ONNX Conv/Gemm nodes of this model")
        if name not in couts:
            log.warning("'%s' has parameters for '%s' (%s), which does not run on CIM macros; ignored",
                        KEY, name, nodes[name])


def layer_params(name: str, entry: Any, cout: int) -> QuantParams:
    """Validate one layer's entry (module doc) into ``QuantParams``."""
    if not isinstance(entry, dict):
        raise InvalidModelError(f"'{KEY}' layer '{name}': expected an object, got {type(entry).__name__}")
    missing = [f for f in _FIELDS if f not in entry]
    if missing:
        raise InvalidModelError(f"'{KEY}' layer '{name}': missing {', '.join(missing)}")
    unknown = sorted(set(entry) - {*_FIELDS, "a_signed", "adc_shift"})
    if unknown:
        log.warning("'%s' layer '%s': ignoring unknown field(s) %s", KEY, name, ", ".join(unknown))
    signed = entry.get("a_signed", False)
    if not isinstance(signed, bool):
        raise InvalidModelError(f"'{KEY}' layer '{name}': a_signed must be true or false, got {signed!r}")
    a_step = _steps(name, "a_step", entry["a_step"], 1)
    a_bits = _bits(name, "a_bits", entry)
    if numerics.always_zero(a_bits, signed):
        raise InvalidModelError(f"'{KEY}' layer '{name}': signed 1-bit inputs: {numerics.ONE_BIT_SIGNED}")
    return QuantParams(_bits(name, "w_bits", entry), a_bits, _bits(name, "adc_bits", entry),
                       _steps(name, "w_step", entry["w_step"], cout), float(a_step[0]),
                       _steps(name, "adc_step", entry["adc_step"], cout), signed, source="qat",
                       adc_shift=_shifts(name, entry.get("adc_shift")))


def _shifts(name: str, value: Any) -> np.ndarray | None:
    """The optional ``adc_shift`` list: integers in 0..24 (checked against the slice count
    when the quantize pass knows the macro)."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or any(
            isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 24 for v in value):
        raise InvalidModelError(f"'{KEY}' layer '{name}': adc_shift must be a non-empty list of integers in 0..24, "
                                f"got {value!r}")
    shifts = np.asarray(value, dtype=np.int64)
    shifts.flags.writeable = False
    return shifts


def _bits(name: str, key: str, entry: dict[str, Any]) -> int:
    try:
        value: int = validate(key, entry[key])
    except UsageError as exc:
        raise InvalidModelError(f"'{KEY}' layer '{name}': {exc}") from None
    return value


def _steps(name: str, key: str, value: Any, cout: int) -> np.ndarray:
    values = value if isinstance(value, list) else [value]
    if len(values) not in (1, cout):
        raise InvalidModelError(f"'{KEY}' layer '{name}': {key} has {len(values)} values; "
                                f"expected 1 (per layer) or {cout} (per output column)")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise InvalidModelError(f"'{KEY}' layer '{name}': {key}[{i}] = {v!r} is not a positive finite number")
    steps = np.asarray(values, dtype=np.float32)
    if (steps <= 0).any():
        raise InvalidModelError(f"'{KEY}' layer '{name}': {key} underflows to 0 in float32")
    steps.flags.writeable = False
    return steps


def qat_metadata(params: Mapping[str, QuantParams]) -> str:
    """The ``cimc.quant`` JSON for ``params`` (what a QAT tool writes; used by tests)."""
    layers = {name: {"w_bits": q.w_bits, "a_bits": q.a_bits, "adc_bits": q.adc_bits,
                     "w_step": [float(s) for s in q.w_step], "a_step": float(q.a_step), "a_signed": q.a_signed,
                     "adc_step": [float(s) for s in q.adc_step],
                     **({} if q.adc_shift is None else {"adc_shift": [int(m) for m in q.adc_shift]})}
              for name, q in sorted(params.items())}
    return json.dumps({"version": VERSION, "layers": layers}, sort_keys=True)
