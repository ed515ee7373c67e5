"""``cimc qat``: end to end on real digits, a user's own trainer, resume, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cimc.cli.main import main
from cimc.frontend import import_onnx
from cimc.train.checkpoint import read_meta
from cimc.train.export import QUANT_KEY, parse_quant_metadata

USER_TRAINER = '''
import json, pathlib

pytestmark = pytest.mark.torch  # the zoo or the training hook

def fit(model, data, phase, *, epochs, lr, regularizer=None, progress=True, checkpoint=None, seed=0):
    log = pathlib.Path(__file__).with_name("calls.jsonl")
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad and "log_step" in n)
    with log.open("a") as fh:
        fh.write(json.dumps({"phase": phase, "epochs": epochs, "lr": lr, "steps": len(trainable)}) + "\\n")
    return {"train_loss": 0.0, "test_acc": 0.5}
'''


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The zoo's digits_cnn as an ONNX file, exported once for the module."""
    import cimc.models as models

    path = tmp_path_factory.mktemp("qat") / "digits_cnn.onnx"
    models.export_onnx("digits_cnn", path)
    return str(path)


def qat(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--json", "qat", *args])
    return result.exit_code, result.output


@pytest.mark.slow
def test_qat_digits_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "digits.qat.onnx"
    code, text = qat("digits_cnn", "--data", "digits", "--float-epochs", "2", "--epochs", "1", "-o", str(out))
    assert code == 0, text
    report = json.loads(text)
    assert sorted(report["metrics"]) == ["1", "2", "float"]
    assert report["metrics"]["2"]["test_acc"] > 0.3
    graph = import_onnx(out)
    quant = parse_quant_metadata(graph.metadata[QUANT_KEY])
    assert len(quant) == 3 and all(q["a_signed"] is False for q in quant.values())


def test_user_trainer(model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mytrainer.py").write_text(USER_TRAINER)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "o.onnx"
    code, text = qat(model, "--data", "synthetic", "--epochs", "3", "--trainer", "mytrainer:fit",
                     "--granularity", "column", "-o", str(out))
    assert code == 0, text
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert [c["phase"] for c in calls] == ["1", "2"]
    assert [c["lr"] for c in calls] == [1e-3, 1e-2] and all(c["epochs"] == 3 for c in calls)
    assert [c["steps"] for c in calls] == [6, 0]  # S_W and S_A of 3 layers train in phase 1 only
    assert out.is_file()


def test_resume_skips_finished_phase(model: str, tmp_path: Path) -> None:
    ckpt, out = tmp_path / "run.safetensors", tmp_path / "o.onnx"
    args = [model, "--data", "synthetic", "--epochs", "1", "--resume", str(ckpt), "-o", str(out)]
    assert qat(*args)[0] == 0
    assert read_meta(ckpt)["phase"] == "2" and read_meta(ckpt)["epoch"] == 1
    first = out.read_bytes()
    code, text = qat(*args)
    assert code == 0 and sorted(json.loads(text)["metrics"]) == ["2"]
    assert out.read_bytes() == first


def test_errors_are_one_line_with_exit_codes(model: str, tmp_path: Path) -> None:
    out = str(tmp_path / "o.onnx")
    code, text = qat(model, "--data", "cifar10", "--data-root", str(tmp_path), "-o", out)
    assert code == 2 and "CIFAR-10 not found" in json.loads(text)["message"]
    code, text = qat(model, "--data", "synthetic", "--trainer", "no_such_module:fit", "-o", out)
    assert code == 2 and "cannot load trainer" in json.loads(text)["message"]
    code, text = qat(model, "--data", "imagenet", "-o", out)
    assert code == 2 and "unknown dataset" in json.loads(text)["message"]
