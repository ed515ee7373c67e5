"""The accuracy report (issue 15, point 2): with evaluation data, float vs compiled top-1 (or,
without labels, agreement and output SQNR), per CIM layer its SQNR and its loss split into
weights, DAC, ADC and shift, and a warning above ``--max-acc-drop`` naming the layers and the
fix; without evaluation data, the report says the accuracy is unknown.

The model is the zoo's shipped ``digits_cnn`` (ONNX, no torch). It need not be trained: the
labelled data here are the digits test images labelled with the float model's own top-1, so
float top-1 is 100% and the compiled top-1 is what the hardware numerics keep of it.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cimc.api import CompileOptions, compile_model, load_source
from cimc.cli.main import main
from cimc.data import load_dataset
from cimc.evaluation import FIXES, accuracy_warning, evaluator, run_onnx, top1
from cimc.lowering.model import float_model, serialize
from cimc.macro import PRESETS
from cimc.quant import loss
from cimc.quant.cim_layer import cim_spec
from cimc.quant.reference import digital_op, is_quantized_cim, run_layer

MODEL = "digits_cnn"
SAMPLES = 120


@pytest.fixture(scope="module")
def self_labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digits test images labelled with the float model's top-1 (``x``/``y`` in an ``.npz``)."""
    graph, _ = load_source(MODEL, CompileOptions())
    x = load_dataset("digits", "test").x[:SAMPLES]
    y = top1(run_onnx(serialize(float_model(graph)), x))
    path = tmp_path_factory.mktemp("data") / "self.npz"
    np.savez(path, x=x, y=y)
    return path


def compiled(tmp: Path, data: str | Path | None, **options: object) -> dict:
    result = compile_model(MODEL, tmp / "build", CompileOptions(calib="digits", map_fc=True, force=True,
                                                               eval_data=None if data is None else str(data),
                                                               **options))  # type: ignore[arg-type]
    return result.report


def test_tiny_adc_is_blamed_and_warned(tmp_path: Path, self_labelled: Path) -> None:
    """A 2-bit ADC is every layer's dominant loss (without scale-to-shift, whose ADC fold on so
    coarse an ADC moves the step by up to √2 and is then blamed on the shift, as it should)."""
    acc = compiled(tmp_path, self_labelled, adc_bits=2, no_shift=True)["accuracy"]
    assert acc["labelled"] and acc["float_top1"] == 1.0 and acc["compiled_top1"] < 0.9
    assert acc["drop"] == pytest.approx(100 * (1 - acc["compiled_top1"]))
    assert acc["layer_samples"] == 64 and len(acc["layers"]) == 4
    for layer in acc["layers"]:
        assert layer["dominant"] == "adc", layer
        assert layer["adc_db"] < min(layer["weights_db"], layer["dac_db"]) - 5
    warning = acc["warning"]
    assert warning.startswith(f"compiled top-1 is {acc['drop']:.2f} points below float")
    assert FIXES["adc"] in warning and FIXES["weights"] not in warning
    worst = min(acc["layers"], key=lambda r: r["local_sqnr_db"])["name"]
    assert f"worst layers: {worst} (" in warning
    md = (tmp_path / "build" / "report.md").read_text()
    assert "## Accuracy" in md and f"**Warning**: {warning}." in md and "| dominant |" in md


def test_eight_bits_keep_every_layer_clean(tmp_path: Path, self_labelled: Path) -> None:
    wide = replace(PRESETS["paper"], adc_bits=8)
    eight = compiled(tmp_path, self_labelled, macro=wide, w_bits=8, a_bits=8, adc_bits=8)["accuracy"]
    four = compiled(tmp_path, self_labelled, macro=wide)["accuracy"]  # the paper's 4/4/5 on the same macro
    for hi, lo in zip(eight["layers"], four["layers"], strict=True):
        assert hi["name"] == lo["name"]
        assert hi["local_sqnr_db"] > 25 and hi["sqnr_db"] > 25, hi
        assert hi["weights_db"] > lo["weights_db"] + 15  # four more weight bits: ~24 dB in theory
        assert hi["dac_db"] > lo["dac_db"] + 15
    assert eight["agreement"] >= 0.95 and eight["output_sqnr_db"] > 25


def test_warning_only_above_the_threshold(tmp_path: Path, self_labelled: Path) -> None:
    graph, _ = load_source(MODEL, CompileOptions())
    result = compile_model(MODEL, tmp_path / "b", CompileOptions(calib="digits", map_fc=True, adc_bits=3))
    onnx = (tmp_path / "b" / "model.cim.onnx").read_bytes()
    first = evaluator(graph, str(self_labelled), max_drop=0.0)(onnx, result.graph)
    assert first.drop is not None and first.drop > 1 and first.warning is not None
    below = evaluator(graph, str(self_labelled), max_drop=first.drop + 0.01)(onnx, result.graph)
    assert below.warning is None and below.drop == first.drop and below.max_drop == first.drop + 0.01
    above = evaluator(graph, str(self_labelled), max_drop=first.drop - 0.01, layer_samples=0)(onnx)
    assert above.warning is not None and above.layers == [] and above.layer_samples == 0
    assert "fix: `cimc qat`" in above.warning  # without layers: the general fix


def test_warning_text_names_the_worst_layers_and_their_fixes() -> None:
    rows = [loss.LayerLoss("a", 20.0, 30.0, {"weights": 31.0, "dac": 40.0, "adc": 45.0, "shift": None}),
            loss.LayerLoss("b", 10.0, 12.0, {"weights": 30.0, "dac": 40.0, "adc": 12.5, "shift": 50.0}),
            loss.LayerLoss("c", 15.0, 18.0, {"weights": 30.0, "dac": 19.0, "adc": 35.0, "shift": math.inf}),
            loss.LayerLoss("d", 15.0, 40.0, {"weights": 41.0, "dac": 50.0, "adc": 50.0, "shift": None})]
    assert accuracy_warning(0.99, True, 1.0, rows, (0.9, 0.8901)) is None
    text = accuracy_warning(3.0, True, 1.0, rows, (0.9, 0.87))
    assert text is not None and "3.00 points below float (90.00% -> 87.00%; threshold 1.00)" in text
    assert "worst layers: b (12.0 dB alone, mostly adc), c (18.0 dB alone, mostly dac), a (30.0 dB" in text
    assert text.index(FIXES["adc"]) < text.index(FIXES["dac"]) < text.index(FIXES["weights"])
    assert FIXES["shift"] not in text and " d (" not in text
    text = accuracy_warning(5.0, False, 1.0, rows[:1])
    assert text is not None and text.startswith("compiled and float top-1 differ on 5.00% of the samples (no labels")


def test_without_evaluation_data_accuracy_is_unknown(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["compile", MODEL, "-o", str(tmp_path / "b"), "--calib", "digits"])
    assert result.exit_code == 0, result.output
    assert "accuracy unknown: no evaluation data" in result.stderr + result.stdout
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert "accuracy" not in report and report["accuracy_unknown"].startswith("no evaluation data")
    assert f"Unknown: {report['accuracy_unknown']}." in (tmp_path / "b" / "report.md").read_text()
    mapping = compile_model(MODEL, tmp_path / "m", CompileOptions(disable=("quantize", "scale-to-shift"))).report
    assert "accuracy_unknown" not in mapping  # a float build loses nothing to quantization


def test_unlabelled_data_give_agreement_and_sqnr(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    np.save(tmp_path / "raw" / "a.npy", load_dataset("digits", "test").x[:40])
    result = CliRunner().invoke(main, ["--json", "compile", MODEL, "-o", str(tmp_path / "b"), "--calib", "digits",
                                       "--eval", str(tmp_path / "raw"), "--max-acc-drop", "100"])
    assert result.exit_code == 0, result.output
    acc = json.loads(result.stdout)["accuracy"]
    assert not acc["labelled"] and acc["float_top1"] is None and acc["compiled_top1"] is None and acc["drop"] is None
    assert acc["samples"] == 40 and 0 < acc["agreement"] <= 1 and acc["warning"] is None
    assert isinstance(acc["output_sqnr_db"], float) and len(acc["layers"]) == 3  # convs only without --map-fc
    assert acc["layer_samples"] == 40
    md = (tmp_path / "b" / "report.md").read_text()
    assert "(no labels): top-1 agreement" in md
    synthetic = compiled(tmp_path, "synthetic", eval_size=16)["accuracy"]  # random labels mean nothing
    assert not synthetic["labelled"] and synthetic["samples"] == 16


def test_warning_reaches_stderr_under_json(tmp_path: Path, self_labelled: Path) -> None:
    result = CliRunner().invoke(main, ["--json", "compile", MODEL, "-o", str(tmp_path / "b"), "--calib", "digits",
                                       "--eval", str(self_labelled), "--adc-bits", "2"])
    assert result.exit_code == 0, result.output
    acc = json.loads(result.stdout)["accuracy"]
    assert result.stderr.strip() == f"warning: {acc['warning']}"


def test_stages_are_the_compiled_layer_in_float_units(tmp_path: Path) -> None:
    """The last stage of a layer equals the compiled layer in float units: up to float rounding
    for the first layer, and up to the rounding of the folded input gain for the next."""
    result = compile_model(MODEL, tmp_path / "b", CompileOptions(calib="digits"))
    nodes = [n for n in result.graph.topo_order() if is_quantized_cim(n)]
    first, second = cim_spec(result.graph, nodes[0]), cim_spec(result.graph, nodes[1])
    assert first.shift is not None and first.shift.fold == "activation" and first.shift.gain != 1.0
    x = load_dataset("digits", "test").x[:16]
    stages = loss.stage_outputs(x, first)
    assert list(stages) == ["float", "weights", "dac", "adc", "shift"]
    conv = digital_op("Conv", [x, first.weight, first.bias], nodes[0].attrs)  # the float model's kernel
    np.testing.assert_allclose(stages["float"], conv, rtol=1e-5, atol=1e-5)
    step = first.q.w_step.reshape(-1, 1, 1, 1)
    with_codes = digital_op("Conv", [x, first.codes() * step, first.bias], nodes[0].attrs)
    np.testing.assert_allclose(stages["weights"], with_codes, rtol=1e-5, atol=1e-5)
    want = run_layer(x, first).outputs / np.float32(first.shift.gain)
    np.testing.assert_allclose(stages["shift"], want, rtol=1e-5, atol=1e-6)  # P·2^−k/gain + b vs (P·2^−k + b·gain)/gain
    a_step, _, _ = loss.true_steps(second)
    gain_in = second.q.a_step / a_step
    assert gain_in == pytest.approx(first.shift.gain, rel=1e-5)  # the reader's input arrives times the gain
    h = np.maximum(np.random.default_rng(0).normal(size=(8, *second.weight.shape[1:2], 4, 4)), 0).astype(np.float32)
    got = loss.stage_outputs(h, second)["shift"]
    want = run_layer(h * np.float32(gain_in), second).outputs / np.float32(second.shift.gain if second.shift else 1)
    assert loss.db(float(np.square(want, dtype=np.float64).sum()),
                   float(np.square(got - want, dtype=np.float64).sum())) > 60


def test_no_shift_has_no_shift_source(tmp_path: Path, self_labelled: Path) -> None:
    acc = compiled(tmp_path, self_labelled, no_shift=True)["accuracy"]
    assert all(layer["shift_db"] is None and layer["dominant"] != "shift" for layer in acc["layers"])
    first = acc["layers"][0]
    assert first["sqnr_db"] == first["local_sqnr_db"]  # the first layer's input is the model's


def test_compile_model_takes_python_batches_for_calib_and_eval(tmp_path: Path) -> None:
    """Generators (read once) of ``(x, y)`` batches calibrate and evaluate like the named data set."""
    test = load_dataset("digits", "test")
    train = load_dataset("digits", "train")

    def batches(x: np.ndarray, y: np.ndarray):  # type: ignore[no-untyped-def]
        return ((x[i:i + 10], y[i:i + 10]) for i in range(0, len(x), 10))

    options = CompileOptions(calib=batches(train.x, train.y), calib_size=16, eval_data=batches(test.x, test.y),
                             eval_size=50, map_fc=True)
    report = compile_model(MODEL, tmp_path / "py", options).report
    named = compile_model(MODEL, tmp_path / "named", CompileOptions(calib="digits", calib_size=16, eval_data="digits",
                                                                     eval_size=50, map_fc=True)).report
    assert report["quantization"]["calibration"] == {"source": "python", "samples": 16}
    assert report["quantization"]["layers"] == named["quantization"]["layers"]  # the same first 16 samples
    assert {k: v for k, v in report["accuracy"].items() if k != "dataset"} == \
        {k: v for k, v in named["accuracy"].items() if k != "dataset"}
    assert report["accuracy"]["dataset"] == "python" and report["accuracy"]["labelled"]
    manifest = json.loads((tmp_path / "py" / "manifest.json").read_text())
    assert manifest["options"]["calib"] == "python"


def test_mean_and_std_on_arrays_are_ignored_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                           self_labelled: Path) -> None:
    with caplog.at_level("WARNING"):
        compile_model(MODEL, tmp_path / "b", CompileOptions(calib=str(self_labelled), mean="0.5", std="2"))
    assert "--mean, --std ignored for self.npz: only image folders are preprocessed" in caplog.text
