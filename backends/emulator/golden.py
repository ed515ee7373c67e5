"""Golden test vectors: what every CIM layer of a build computes on given inputs, for users
checking an RTL simulation or a hardware emulator against cimc.

``write_golden(folder, emulator, x)`` writes (file names never come from the model)::

    index.json                   what is where, shapes, dtypes, axis orders, bits, scales
    input_0.npy …                the model inputs (float32)
    output_0.npy …               the model outputs (float32)
    layer_000/input_codes.npy    DAC codes of the layer input     (N, C, H, W) | (L, K)
    layer_000/adc_codes.npy      ADC code of every segment        (N, S, Cout, Ho, Wo) | (L, S, Cout)
    layer_000/sums.npy           adder-tree sums P = Σ_s codes    (N, Cout, Ho, Wo) | (…, Cout)
    layer_000/outputs.npy        y = P · scale + b' (float32)

Codes are stored in the smallest signed integer type that holds them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cimc import numerics

if TYPE_CHECKING:
    from cimc.backends.emulator.run import Emulator

AXES = {"conv": {"input_codes": "N,C,H,W", "adc_codes": "N,S,Cout,Ho,Wo", "sums": "N,Cout,Ho,Wo"},
        "gemm": {"input_codes": "...,K", "adc_codes": "L,S,Cout", "sums": "...,Cout"}}


def _int_type(bits: int) -> type[np.signedinteger]:
    return np.int8 if bits <= 8 else np.int16 if bits <= 16 else np.int32


def _save(root: Path, name: str, array: np.ndarray) -> dict[str, Any]:
    """Write ``root/name`` (.npy) and describe it relative to ``root``."""
    np.save(root / name, array, allow_pickle=False)
    return {"file": name, "shape": list(array.shape), "dtype": array.dtype.name}


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
                 "sums": trace.sums.astype(np.int32), "outputs": trace.outputs}
        entry = {"index": layer.index, "node": layer.node, "kind": layer.kind, "segments": layer.segments,
                 "axes": AXES[layer.kind], "a_step": layer.a_step, "a_bits": layer.a_bits, "a_signed": layer.a_signed,
                 "adc_bits": layer.adc_bits, "adc_step": layer.adc_step.tolist(), "scale": layer.scale.tolist(),
                 "adc_range": list(numerics.code_range(layer.adc_bits, True)),
                 "files": {k: _save(out, f"{sub}/{k}.npy", v) for k, v in files.items()}}
        index["layers"].append(entry)
    (out / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return index
