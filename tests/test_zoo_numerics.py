"""The IR interpreter matches onnxruntime on every zoo model, before and after fold-batchnorm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from cimc.frontend import import_onnx
from cimc.ir import verify
from cimc.ir.interpreter import run
from cimc.macro import MacroSpec
from cimc.models import available, export_onnx, input_shape
from cimc.passes.fold_batchnorm import FoldBatchNorm
from cimc.passes.manager import PassContext

pytestmark = pytest.mark.torch  # the zoo or the training hook

SLOW = {"vgg16", "resnet18"}


def ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0])


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in available()])
def test_interpreter_matches_onnxruntime(name: str, tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    export_onnx(name, path)
    x = np.random.default_rng(0).standard_normal(input_shape(name)).astype(np.float32)
    graph = import_onnx(path)
    expected = ort_run(path, x)
    got = run(graph, {graph.inputs[0]: x})[graph.outputs[0]]
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * scale)
    folded = FoldBatchNorm().run(graph, PassContext(macro=MacroSpec()))
    verify(folded.graph)
    assert folded.modified and not any(n.op == "BatchNormalization" for n in folded.graph.nodes)
    got_folded = run(folded.graph, {graph.inputs[0]: x})[graph.outputs[0]]
    np.testing.assert_allclose(got_folded, expected, rtol=1e-4, atol=1e-5 * scale)
