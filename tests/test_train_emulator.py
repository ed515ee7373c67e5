"""QAT → ``cimc compile`` → ``cimc.emulator``: the macro emulator reproduces the QAT
model's own phase-2 forward exactly (every CIM layer's outputs bit for bit, the same
predictions) on the same inputs. ``no_shift`` keeps the trained scale ``S_W·S_ADC·S_A``
(scale-to-shift would replace it by a power of two, a different model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cimc.api import CompileOptions, compile_model
from cimc.emulator import Emulator
from cimc.train import QuantConfig
from cimc.train.export import export_onnx
from tests.train_helpers import trained_module

pytestmark = pytest.mark.torch  # the zoo or the training hook


@pytest.mark.parametrize("name,config", [
    ("digits_cnn", QuantConfig()),
    ("tiny_cnn", QuantConfig(granularity="column", map_fc=True)),
])
def test_compile_emulate_reproduces_qat_model(name: str, config: QuantConfig, tmp_path: Path) -> None:
    module = trained_module(name, config)
    graph = export_onnx(module, tmp_path / "model.qat.onnx")
    compile_model(tmp_path / "model.qat.onnx", tmp_path / "build",
                  CompileOptions(no_shift=True, map_fc=config.map_fc, granularity=config.granularity))
    x = torch.rand(24, *graph.shape(graph.inputs[0])[1:], generator=torch.Generator().manual_seed(9))
    emulated = Emulator.open(tmp_path / "build").run(x.numpy(), record=True)
    with torch.no_grad():
        ours = module.run(x)
    assert sorted(emulated.traces) == sorted(module.cim_layers())
    for layer, trace in emulated.traces.items():
        assert np.array_equal(trace.outputs, ours[graph.node(layer).outputs[0]].numpy()), layer
    want = ours[graph.outputs[0]].numpy()
    got = emulated.outputs[graph.outputs[0]]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.array_equal(got.argmax(1), want.argmax(1))
