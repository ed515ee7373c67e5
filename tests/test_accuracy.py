"""Accuracy fidelity: a digits CNN trained here with plain torch (seeded, a few seconds) is
compiled with ``--calib digits --eval digits``; ``report.json`` holds the float and the
compiled accuracy side by side, and both are what torch and the emulator measure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from cimc.cli.main import main
from cimc.data import load_dataset
from cimc.emulator import Emulator
from cimc.models.export import export_onnx

pytestmark = pytest.mark.torch  # the zoo or the training hook


def digits_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def train(epochs: int = 5) -> nn.Module:
    """Seeded Adam on the digits train split, one thread (tiny convolutions: threads only cost)."""
    data = load_dataset("digits", "train")
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = digits_net()
            opt = torch.optim.Adam(model.parameters(), lr=1e-2)
            for _ in range(epochs):
                for idx in torch.randperm(len(y)).split(64):
                    opt.zero_grad()
                    nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                    opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


@pytest.fixture(scope="module")
def digits_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    folder = tmp_path_factory.mktemp("digits")
    model = train()
    export_onnx(model, torch.zeros(1, 1, 8, 8), folder / "digits.onnx")
    args = ["--json", "compile", str(folder / "digits.onnx"), "-o", str(folder / "build"), "--calib", "digits",
            "--eval", "digits", "--map-fc"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accuracy"]["samples"] == 360
    return folder / "build", model


def test_report_has_float_and_compiled_accuracy(digits_build: tuple[Path, nn.Module]) -> None:
    build, model = digits_build
    report = json.loads((build / "report.json").read_text())
    acc = report["accuracy"]
    assert acc["dataset"] == "digits" and acc["split"] == "test" and acc["samples"] == 360
    assert acc["float_top1"] > 0.85  # a real model, really trained
    assert acc["compiled_top1"] > 0.75 and acc["float_top1"] - acc["compiled_top1"] < 0.15
    assert report["quantization"]["calibration"] == {"source": "digits", "samples": 16}
    assert "## Accuracy" in (build / "report.md").read_text()
    test = load_dataset("digits", "test")
    with torch.no_grad():
        torch_top1 = model(torch.from_numpy(test.x)).argmax(1).numpy()
    assert abs(float((torch_top1 == test.y).mean()) - acc["float_top1"]) <= 1 / 360
    emulated = Emulator.open(build).run(test.x).outputs
    emu_top1 = next(iter(emulated.values())).argmax(1)
    assert float((emu_top1 == test.y).mean()) == acc["compiled_top1"]  # bit-exact with model.cim.onnx
    assert acc["agreement"] == pytest.approx(float((emu_top1 == torch_top1).mean()), abs=1 / 360)


def test_emulate_cli_reports_the_same_accuracy(digits_build: tuple[Path, nn.Module]) -> None:
    build, _ = digits_build
    report = json.loads((build / "report.json").read_text())
    result = CliRunner().invoke(main, ["--json", "emulate", str(build), "--data", "digits", "--batch", "100"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["accuracy"] == report["accuracy"]["compiled_top1"]
    assert np.isfinite(report["quantization"]["layers"][0]["a_step"])
