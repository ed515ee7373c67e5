"""``cimc search`` on a model trained by ``cimc qat`` (issue 15, point 6): the search starts from
the bits the model was trained at, scores them with the trained steps — as ``cimc compile``
uses them — and calibrates only other bits.

The "QAT model" is the shipped ``digits_cnn`` (no torch) carrying ``metadata["cimc.quant"]``
steps that calibration would not give (the activation steps scaled by 1.25), so a test that
passes can only pass by using them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cimc.api import CompileOptions, compile_model, load_source
from cimc.frontend.onnx_export import save_onnx
from cimc.ir.annotations import QuantParams
from cimc.mapping.select import cim_nodes
from cimc.quant.qat_metadata import KEY, qat_metadata
from cimc.search import ProblemSpec, build_problem, greedy_search

EVAL = 64
BITS = (4, 4, 5)


@pytest.fixture(scope="module")
def qat_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, QuantParams]]:
    folder = tmp_path_factory.mktemp("qat")
    built = compile_model("digits_cnn", folder / "b", CompileOptions(calib="digits", no_shift=True))
    trained = {n.name: replace(q, a_step=q.a_step * 1.25, source="qat", cell_bits=None, dac_bits=None)
               for n in cim_nodes(built.graph) if (q := n.ann[QuantParams])}
    graph, _ = load_source("digits_cnn", CompileOptions())
    graph.metadata[KEY] = qat_metadata(trained)
    save_onnx(graph, folder / "qat.onnx")
    return folder / "qat.onnx", trained


def test_search_starts_from_the_trained_bits_and_steps(qat_model: tuple[Path, dict[str, QuantParams]],
                                                       tmp_path: Path) -> None:
    path, trained = qat_model
    prob = build_problem(str(path), ProblemSpec(data="digits", eval_size=EVAL, options=CompileOptions(calib_size=16)))
    assert prob.start == (BITS,) * len(trained)
    for name, want in trained.items():
        got = prob.proxy.quant(name, BITS)
        assert got.source == "qat" and got.a_step == pytest.approx(want.a_step)
        assert prob.proxy.quant(name, (8, 8, 5)).source == "calibration"
    greedy_search(prob, max_evals=3)
    first = prob.history[0]
    assert first.origin == "greedy start (qat)" and first.config == prob.start
    assert all(p.config != prob.space.widest() for p in prob.history)  # it descends from the trained bits
    options = CompileOptions(no_shift=True, eval_data="digits", eval_size=EVAL)  # every layer from QAT
    report = compile_model(path, tmp_path / "b", options).report
    assert report["quantization"]["qat_layers"] == sorted(trained)
    assert prob.test is not None and prob.test.score(prob.start).accuracy == report["accuracy"]["compiled_top1"]


def test_trained_bits_outside_the_candidates_start_from_the_widest(qat_model: tuple[Path, dict[str, QuantParams]],
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    path, _ = qat_model
    with caplog.at_level("WARNING"):
        prob = build_problem(str(path), ProblemSpec(data="digits", eval_size=EVAL, w_choices=(2, 8),
                                                    options=CompileOptions(calib_size=16)))
    assert prob.start is None and "are not among the candidates" in caplog.text
    greedy_search(prob, max_evals=1)
    assert prob.history[0].origin == "greedy start" and prob.history[0].config == prob.space.widest()


def test_a_model_without_qat_starts_from_the_widest() -> None:
    spec = ProblemSpec(data="digits", eval_size=EVAL, options=CompileOptions(calib_size=16))
    prob = build_problem("digits_cnn", spec)
    assert prob.start is None and prob.proxy.qat == {}
