"""How far ``cimc export-qdq --scales real`` is from ``model.cim.onnx`` (README, "Quantized
models in and out"): compiles four zoo builds, exports each with real scales, runs both with
onnxruntime (optimisations off) on 64 random inputs and counts the ADC codes that differ.

    python3 scripts/qdq_real_scales.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from cimc.api import compile_model
from cimc.lowering.model import expose
from cimc.lowering.qdq import qdq_model, read_cim_model, read_weight_steps

BUILDS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("tiny_cnn", {}), ("tiny_residual", {"map_fc": True}),
    ("tiny_cnn", {"granularity": "column", "no_shift": True}), ("digits_cnn", {}))


def outputs(model: onnx.ModelProto, layers: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    exposed = expose(model, layers)
    session = ort.InferenceSession(exposed.SerializeToString(), options)
    names = [o.name for o in exposed.graph.output]
    return dict(zip(names, session.run(names, {model.graph.input[0].name: x}), strict=True))


def measure(folder: Path) -> str:
    cim = read_cim_model(folder)
    layers = [e["cim_layer"] for e in json.loads({p.key: p.value for p in cim.metadata_props}["cimc.cim_layers"])]
    shape = [d.dim_value for d in cim.graph.input[0].type.tensor_type.shape.dim]
    x = (np.random.default_rng(0).standard_normal([64, *shape[1:]]) * 1.5).astype(np.float32)
    want, got = outputs(cim, layers, x), outputs(qdq_model(cim, 21, read_weight_steps(folder)), layers, x)
    adc = [k for k in want if k.endswith("/adc_codes")]
    differ = sum(int((want[k] != got[k]).sum()) for k in adc)
    total = sum(want[k].size for k in adc)
    largest = max(float(np.abs(want[k] - got[k]).max()) for k in adc)
    y = cim.graph.output[0].name
    return (f"ADC codes differing {differ:,} of {total:,} (by at most {largest:g}); outputs off by up to "
            f"{float(np.abs(want[y] - got[y]).max()):.2g}, |y| ≤ {float(np.abs(want[y]).max()):.2g}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for i, (model, options) in enumerate(BUILDS):
            folder = Path(tmp) / str(i)
            compile_model(model, folder, **options)
            flags = " ".join(f"{k}={v}" for k, v in options.items())
            print(f"{model} {flags}: {measure(folder)}")


if __name__ == "__main__":
    main()
