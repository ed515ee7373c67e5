"""A net exported by torch's default (dynamo) exporter shows its module paths, not ``node_conv2d_N``,
in the compile tables, the inspect legend and the layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cimc.cli.main import main

pytestmark = pytest.mark.torch


def _export(path: Path) -> None:
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), Block(), Block())
            self.fc = nn.Linear(4 * 6 * 6, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.features(x).flatten(1))

    torch.manual_seed(0)
    torch.onnx.export(Net().eval(), (torch.randn(1, 1, 6, 6),), path, dynamo=True, verbose=False)


def test_dynamo_export_shows_module_paths(tmp_path: Path) -> None:
    _export(tmp_path / "net.onnx")
    runner = CliRunner()
    out = runner.invoke(main, ["compile", str(tmp_path / "net.onnx"), "-o", str(tmp_path / "b")])
    assert out.exit_code == 0, out.output
    layout = json.loads((tmp_path / "b" / "layout.json").read_text())
    modules = {x["node"]: x.get("module") for x in layout["layers"]}
    assert modules["node_conv2d_1"] == "features.1.conv.0" and modules["node_conv2d_2"] == "features.2.conv.0"
    assert modules["node_conv2d"] == "features.0"
    for shown in (out.output, runner.invoke(main, ["inspect", str(tmp_path / "b")]).output):
        assert "features.1.conv.0" in shown and "features.2.conv.0" in shown
        assert "node_conv2d" not in shown  # neither table nor legend falls back to the exporter's numbers
