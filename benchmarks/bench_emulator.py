"""Emulator speed: the bit-accurate macro emulator against onnxruntime on the float model.

* ``emulator/vgg9-batch64``: the zoo's VGG9 compiled with the default pipeline (paper macro,
  per-layer steps, shifts), run by ``cimc.emulator`` from its build directory — all
  19 segments of a layer as one batched matrix product over their im2col rows, one ADC
  conversion per bitline and pixel, adder tree, shift — against onnxruntime running the float VGG9 in the same process,
  CIFAR-sized input, batch 64. Target: ≤ 3×.
* ``emulator/vgg9-cim-onnx``: onnxruntime running the build's ``model.cim.onnx`` (the same
  numerics as the emulator, bit for bit) against the float model, for scale.

Quick mode uses batch 8.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import Benchmark


@dataclass
class EmuState:
    folder: Path
    emulator: Any
    float_session: Any
    cim_session: Any
    x: np.ndarray
    input_name: str


def _setup(batch: int) -> EmuState:
    import onnxruntime as ort

    import cimc.models as models
    from cimc.api import compile_model
    from cimc.emulator import Emulator
    from cimc.frontend import import_onnx
    from cimc.lowering.model import float_model, serialize

    folder = Path(tempfile.mkdtemp(prefix="cimc-bench-emu-"))
    models.export_onnx("vgg9", folder / "vgg9.onnx")
    compile_model(folder / "vgg9.onnx", folder / "build")
    providers = ["CPUExecutionProvider"]
    graph = import_onnx(folder / "vgg9.onnx")
    float_session = ort.InferenceSession(serialize(float_model(graph)), providers=providers)
    cim_session = ort.InferenceSession(str(folder / "build" / "model.cim.onnx"), providers=providers)
    x = np.random.default_rng(0).standard_normal((batch, 3, 32, 32)).astype(np.float32)
    return EmuState(folder, Emulator.open(folder / "build"), float_session, cim_session, x, graph.inputs[0])


def _float(state: EmuState) -> object:
    return state.float_session.run(None, {state.input_name: state.x})


def benchmarks(quick: bool) -> list[Benchmark]:
    batch = 8 if quick else 64
    teardown = lambda s: shutil.rmtree(s.folder, ignore_errors=True)  # noqa: E731
    return [
        Benchmark(name=f"emulator/vgg9-batch{batch}", setup=lambda: _setup(batch), run=lambda s: s.emulator.run(s.x),
                  reference=_float, reference_name="onnxruntime, float VGG9 (same batch, process)",
                  target_ratio=3.0, teardown=teardown),
        Benchmark(name="emulator/vgg9-cim-onnx", setup=lambda: _setup(batch),
                  run=lambda s: s.cim_session.run(None, {s.input_name: s.x}), reference=_float,
                  reference_name="onnxruntime, float VGG9 (same batch, process)", teardown=teardown),
    ]
