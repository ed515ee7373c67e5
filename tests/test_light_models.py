"""The legacy ONNX-zoo models shipped with the onnx package (``onnx/backend/test/data/light``:
AlexNet, DenseNet-121, GoogLeNet, Inception-v2, ResNet-50, ShuffleNet, SqueezeNet, VGG19,
ZFNet-512 at opset 9, their weights built by ``ConstantOfShape`` from their shapes) compile
with default settings and validate. VGG19's 25088×4096 FC weight (411 MB of float32) and
ZFNet's 18432×4096 one (302 MB), over the element budget folding had before (2^26), are folded
within the default 1 GiB tensor budget (``--max-tensor-bytes``).

SqueezeNet is also checked numerically (IR interpreter = onnxruntime on the ONNX file; emulator =
reference = onnxruntime on ``model.cim.onnx`` bit for bit). All are ``slow`` (SqueezeNet alone
takes 15–45 s here); ``scripts/light_models.py`` measures time and peak memory of each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cimc.api import CompileResult, compile_model
from cimc.check.validate import validate_build
from cimc.frontend import import_onnx
from cimc.ir.interpreter import run
from tests.cim_helpers import assert_three_way

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
MODELS = sorted(p.stem for p in LIGHT.glob("light_*.onnx")) if LIGHT.is_dir() else []
DEFAULT = "light_squeezenet"  # the smallest compile (about 10 s)
pytestmark = pytest.mark.skipif(not MODELS, reason="this onnx package ships no light models")


def _input(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (1, 3, 224, 224)).astype(np.float32)


def _compile_and_validate(name: str, out: Path) -> CompileResult:
    result = compile_model(LIGHT / f"{name}.onnx", out)  # default settings
    validation = validate_build(result.out_dir)
    assert validation.ok, [str(v) for v in validation.violations]
    assert result.cost.bitlines > 0 and result.report["totals"]["macros"] > 0
    return result


def test_the_package_ships_the_nine_light_models() -> None:
    assert len(MODELS) >= 9 and {DEFAULT, "light_vgg19", "light_zfnet512"} <= set(MODELS)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in MODELS if n != DEFAULT])
def test_light_model_compiles_and_validates_with_default_settings(name: str, tmp_path: Path) -> None:
    _compile_and_validate(name, tmp_path / "b")


@pytest.mark.slow
def test_squeezenet_interpreter_and_build_agree_with_onnxruntime(tmp_path: Path) -> None:
    """SqueezeNet compiles and validates with default settings; the interpreter's logits (the
    Softmax's input: about 10^10 with the constant 0.02 weights, so the Softmax itself turns
    float32 rounding into 0 or 1/1000) are onnxruntime's within float32 rounding; emulator,
    reference and onnxruntime on ``model.cim.onnx`` agree bit for bit."""
    path, x = LIGHT / f"{DEFAULT}.onnx", _input()
    graph = import_onnx(path)
    model = onnx.load(str(path))
    named = {t for n in model.graph.node for t in n.output}
    logits = next(n for n in graph.topo_order() if n.op == "Softmax").inputs[0]
    while logits not in named:  # back through the opset upgrade's Flatten to the model's own tensor
        logits = graph.producer(logits).inputs[0]  # type: ignore[union-attr]
    model.graph.output.append(onnx.ValueInfoProto(name=logits))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = session.run([logits], {graph.inputs[0]: x})[0]
    np.testing.assert_allclose(run(graph, {graph.inputs[0]: x}, keep=True)[logits], want, rtol=1e-5)
    result = _compile_and_validate(DEFAULT, tmp_path / "b")
    assert_three_way(result.out_dir, result.graph, x)
