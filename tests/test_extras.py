"""The lean install: what needs the ``train`` extra says so (exit 2, the install line), and
what the core serves never imports torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import cimc.extras as extras
from cimc.cli.main import main


@pytest.fixture
def without_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the core alone were installed (the modules of the extra not importable)."""
    monkeypatch.setattr(extras, "missing", lambda extra: list(extras.EXTRAS[extra]))
    for name in [m for m in sys.modules if m == "cimc.train" or m.startswith("cimc.train.")]:
        monkeypatch.delitem(sys.modules, name)


@pytest.mark.usefixtures("without_torch")
@pytest.mark.parametrize("args", [("compile", "vgg9"), ("zoo", "export", "resnet18"),
                                  ("qat", "tiny_cnn", "--data", "synthetic"),
                                  ("morph", "tiny_cnn", "--bl", "64", "--data", "synthetic")])
def test_commands_that_need_torch_name_the_extra(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "out.onnx")])
    assert result.exit_code == 2, result.output
    assert "cimc: error [usage]" in result.stderr and "'train' extra" in result.stderr
    assert "pip install torch==2.13.0 'cimc[train]'" in result.stderr


@pytest.mark.usefixtures("without_torch")
def test_shipped_zoo_models_compile_without_torch(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["compile", "tiny_residual", "-o", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output


def test_core_commands_never_import_torch(tmp_path: Path) -> None:
    """compile (an ONNX file), validate and emulate in one process: torch stays unloaded."""
    code = f"""
import sys
from click.testing import CliRunner
from cimc.cli.main import main
out = {str(tmp_path / "b")!r}
for args in (["compile", "tiny_cnn", "-o", out], ["validate", out], ["emulate", out, "--data", "synthetic"]):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, (args, result.output)
assert "torch" not in sys.modules, "torch was imported"
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


@pytest.mark.usefixtures("without_torch")
def test_a_training_sweep_is_refused_before_it_starts(tmp_path: Path) -> None:
    config = tmp_path / "sweep.toml"
    config.write_text('model = "tiny_cnn"\n[axes]\nw_bits = [4]\n[training]\ndata = "synthetic"\n')
    result = CliRunner().invoke(main, ["sweep", str(config), "--train", "-o", str(tmp_path / "r.jsonl")])
    assert result.exit_code == 2 and "'train' extra" in result.stderr, result.output
    assert not (tmp_path / "r.jsonl").exists()
