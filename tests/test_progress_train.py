"""Progress of ``cimc qat`` and ``cimc morph`` (``cimc.progress``): import, data, training (its
own bars beside), the output file, on stderr with the threshold at 0; nothing with ``--json`` or
morph's ``--quiet``. A stand-in trainer (``tests.morph_trainer``) keeps them fast."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from cimc.cli.main import main

pytestmark = pytest.mark.torch

LINE = re.compile(r"^cimc: \[ *\d+\.\d s\] (.*)$", re.MULTILINE)
STUB = ("--trainer", "tests.morph_trainer:fit")


@pytest.mark.parametrize(("args", "expected"), [
    (["qat", "digits_cnn", "--data", "synthetic", "--epochs", "1", *STUB],
     ["importing digits_cnn", "loading synthetic", "training", "exporting out.onnx"]),
    (["morph", "digits_cnn", "--bl", "256", "--data", "synthetic", "--rounds", "1", "--epochs", "1", *STUB],
     ["importing digits_cnn", "loading synthetic", "training: seed", "writing out.onnx"]),
])
def test_training_commands_show_their_phases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str],
                                             expected: list[str]) -> None:
    monkeypatch.setenv("CIMC_PROGRESS_AFTER", "0")
    result = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "out.onnx")])
    assert result.exit_code == 0, result.output
    shown = LINE.findall(result.stderr)
    assert [next((s for s in shown if s.startswith(e)), None) is not None for e in expected] == [True] * len(expected)
    order = [next(i for i, s in enumerate(shown) if s.startswith(e)) for e in expected]
    assert order == sorted(order) and shown[-1].startswith("done in ")
    assert not LINE.findall(result.stdout)
    for quiet in (["--json"], ["--quiet"] if args[0] == "morph" else ["--json"]):
        silent = CliRunner().invoke(main, [*args, *quiet, "-o", str(tmp_path / "out2.onnx")])
        assert silent.exit_code == 0, silent.output
        assert not LINE.findall(silent.stderr) and not LINE.findall(silent.stdout)
