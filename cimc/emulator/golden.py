"""Golden test vectors: what every CIM layer of a build computes on given inputs, for users
checking an RTL simulation or a hardware emulator against cimc.

``write_golden(folder, emulator, x)`` writes (file names never come from the model)::

    index.json                   what is where, shapes, dtypes, axis orders, bits, scales
    input_0.npy …                the model inputs (float32)
    output_0.npy …               the model outputs (float32)
    layer_000/input_codes.npy    DAC codes of the layer input     (N, C, H, W) | (L, K)
    layer_000/adc_codes.npy      ADC code of every conversion     (N, K, Cout, Ho, Wo) | (L, K, Cout)
    layer_000/sums.npy           shift-added sums P               (N, Cout, Ho, Wo) | (…, Cout)
    layer_000/outputs.npy        y = P · scale + b' (float32)

``K = segments · a_slices · w_slices`` conversions in the order (segment, input cycle, weight
digit column); conversion kind ``(t, j)`` has the ADC step ``adc_step · 2^−adc_shift[t·S + j]``
and ``P = Σ_k conversion_weights[k] · code_k`` with ``2^(j·cell_bits + t·dac_bits − m_{t,j})``
(all 1 for an unsliced layer, whose ``K`` is its segment count). Codes are stored in the
smallest signed integer type that holds them (int8 for ADC codes of up to 8 bits); sums are
int32, or float32 (exact dyadic numbers) when some ``m > 0``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cimc.quant import numerics, slicing

if TYPE_CHECKING:
    from cimc.emulator.layers import MacroLayer
    from cimc.emulator.run import Emulator

AXES = {"conv": {"input_codes": "N,C,H,W", "adc_codes": "N,K,Cout,Ho,Wo", "sums": "N,Cout,Ho,Wo"},
        "gemm": {"input_codes": "...,K", "adc_codes": "L,K,Cout", "sums": "...,Cout"}}


def _int_type(bits: int) -> type[np.signedinteger]:
    return np.int8 if bits <= 8 else np.int16 if bits <= 16 else np.int32


def _save(root: Path, name: str, array: np.ndarray) -> dict[str, Any]:
    """Write ``root/name`` (.npy) and describe it relative to ``root``."""
    np.save(root / name, array, allow_pickle=False)
    return {"file": name, "shape": list(array.shape), "dtype": array.dtype.name}


def _sum_type(layer: MacroLayer) -> type[np.number]:
    """int32, or float32 when the shift-add has fractional weights (``adc_shift``)."""
    return np.int32 if layer.adc_shift is None or not layer.adc_shift.any() else np.float32


def _slicing(layer: MacroLayer) -> dict[str, Any]:
    """How the layer's ``K`` conversions recombine (module doc)."""
    weights = slicing.conversion_weights(layer.segments, layer.a_bits, layer.dac_bits, layer.w_bits, layer.cell_bits,
                                         layer.adc_shift)
    return {"w_bits": layer.w_bits, "cell_bits": layer.cell_bits, "dac_bits": layer.dac_bits,
            "w_slices": layer.w_slices, "a_slices": layer.a_slices, "conversions": layer.conversions,
            "conversion_order": ["segment", "input_cycle", "weight_column"],
            "adc_shift": None if layer.adc_shift is None else [int(m) for m in layer.adc_shift],
            "conversion_weights": [float(w) for w in weights]}


def write_golden(folder: str | Path, emulator: Emulator, x: np.ndarray) -> dict[str, Any]:
    """Run ``x`` through ``emulator`` and write the vectors (module doc); returns the index."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    result = emulator.run(x, record=True)
    feeds = emulator.feeds(x)
    index: dict[str, Any] = {"format": "cimc-golden", "version": 1,
                             "inputs": [{"name": k, **_save(out, f"input_{i}.npy", v)} for i, (k, v) in
                                        enumerate(feeds.items())],
                             "outputs": [{"name": k, **_save(out, f"output_{i}.npy", v)} for i, (k, v) in
                                         enumerate(result.outputs.items())],
                             "layers": []}
    for layer in emulator.layers:
        trace = result.traces[layer.node]
        sub = f"layer_{layer.index:03d}"
        (out / sub).mkdir(exist_ok=True)
        files = {"input_codes": trace.input_codes.astype(_int_type(layer.a_bits + (0 if layer.a_signed else 1))),
                 "adc_codes": trace.adc_codes.astype(_int_type(layer.adc_bits)),
                 "sums": trace.sums.astype(_sum_type(layer)), "outputs": trace.outputs}
        entry = {"index": layer.index, "node": layer.node, "kind": layer.kind, "segments": layer.segments,
                 "axes": AXES[layer.kind], "a_step": layer.a_step, "a_bits": layer.a_bits, "a_signed": layer.a_signed,
                 "adc_bits": layer.adc_bits, "adc_step": layer.adc_step.tolist(), "scale": layer.scale.tolist(),
                 "adc_range": list(numerics.code_range(layer.adc_bits, True)), **_slicing(layer),
                 "files": {k: _save(out, f"{sub}/{k}.npy", v) for k, v in files.items()}}
        index["layers"].append(entry)
    (out / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return index
