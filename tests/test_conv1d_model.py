"""A torch model over sequences (Conv1d, MaxPool1d, AvgPool1d, ConvTranspose1d) exported with both
exporters: its 1-D convs are imported as 2-D convs over ``(N, C, 1, L)`` and become CIM layers;
compile + validate; emulator == onnxruntime(``model.cim.onnx``) == numpy reference, bit for bit;
the imported float graph matches onnxruntime on the exported file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from cimc.api import compile_model
from cimc.check.validate import validate_build
from cimc.frontend import import_onnx
from cimc.ir.annotations import CimLayer
from cimc.ir.interpreter import run
from tests.cim_helpers import assert_three_way
from tests.models.export import export

pytestmark = pytest.mark.torch


class Sequence1d(nn.Module):
    """Conv1d → ReLU → MaxPool1d → grouped strided Conv1d → ReLU → ConvTranspose1d → AvgPool1d → Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(3, 8, 5, padding=2)
        self.pool = nn.MaxPool1d(2)
        self.c2 = nn.Conv1d(8, 8, 3, stride=2, padding=1, groups=2)
        self.up = nn.ConvTranspose1d(8, 6, 4, stride=2, padding=1)
        self.avg = nn.AvgPool1d(2)
        self.fc = nn.Linear(6 * 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.c1(x)))
        x = self.avg(self.up(torch.relu(self.c2(x))))
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("exporter", ["legacy", pytest.param("dynamo", marks=pytest.mark.slow)])
def test_conv1d_model_compiles_and_runs_bit_exact(exporter: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Sequence1d().eval()
    x = torch.randn(1, 3, 32)
    path = tmp_path / "seq.onnx"
    export(model, x, path, exporter)  # type: ignore[arg-type]
    graph = import_onnx(path)
    ours = run(graph, {graph.inputs[0]: x.numpy()})[graph.outputs[0]]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # the dynamo export's weights
    want = session.run(None, {graph.inputs[0]: x.numpy()})[0]  # are external data beside the file
    np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-5)
    result = compile_model(path, tmp_path / "build", calib_size=4)
    assert validate_build(result.out_dir).ok
    cim = [n for n in result.graph.nodes if CimLayer in n.ann]
    assert sum(n.op == "Conv" for n in cim) == 3  # c1, c2 and the ConvTranspose1d's conv
    samples = np.concatenate([x.numpy(), np.random.default_rng(1).standard_normal((1, 3, 32)).astype(np.float32)])
    assert_three_way(result.out_dir, result.graph, samples)
