"""``model.cim.onnx``: standard ops only, checker-clean (opens in Netron), documented CIM nodes,
any batch size, and onnxruntime equal to the numpy reference with and without graph
optimisations; the float model equals the interpreter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cimc.ir import interpreter
from cimc.lowering.model import cim_model, expose, float_model, serialize
from cimc.mapping.tiling import segment_bounds
from cimc.quant.batching import batch_generic
from cimc.quant.cim_layer import CimSpec
from cimc.quant.reference import run_compiled, segment_sums
from cimc.quant.segments import segment_conv
from tests.cim_helpers import compile_ir, run_ort_exposed, small_cnn, write

pytestmark = pytest.mark.torch  # the zoo or the training hook

STANDARD = {"Div", "Round", "Clip", "Gather", "Cast", "Conv", "Reshape", "ReduceSum", "Mul", "Add", "Relu",
            "MaxPool", "Flatten", "Gemm", "QuantizeLinear", "DequantizeLinear", "QLinearConv",
            "Squeeze"}


@pytest.fixture(scope="module")
def compiled():  # type: ignore[no-untyped-def]
    return compile_ir(small_cnn(group=2))


def test_checker_clean_standard_ops_and_documented(compiled) -> None:  # type: ignore[no-untyped-def]
    graph, _ = compiled
    model = cim_model(graph)
    onnx.checker.check_model(model, full_check=True)
    assert {n.op_type for n in model.graph.node} <= STANDARD
    casts = [n for n in model.graph.node if n.op_type == "Cast" and n.attribute[0].i == onnx.TensorProto.DOUBLE]
    assert casts and casts[0].name.startswith("gap/")  # GlobalAveragePool as a float64 ReduceSum/Div
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    convs = {n.name.split("/")[0]: json.loads(n.doc_string) for n in model.graph.node
             if n.op_type in ("Conv", "QLinearConv") and n.doc_string}
    assert sorted(convs) == ["c1", "c2", "fc"]
    c2 = convs["c2"]
    assert c2["adc_bits"] == 5 and c2["shift"] is not None and len(c2["segments"]) == 2
    runs = [run for seg in c2["segments"] for run in seg["bitlines"]]
    assert sum(r["last"] - r["first"] + 1 for r in runs) == 2 * 20  # every column of c2 on some bitline
    assert c2["segments"][1]["rows"] == [27, 54]  # 6 channels per group, 3 of 3×3 per 32-wordline segment
    props = {p.key: p.value for p in model.metadata_props}
    assert [layer["cim_layer"] for layer in json.loads(props["cimc.cim_layers"])] == ["c1", "c2", "fc"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


@pytest.mark.parametrize("optimize", [False, True])
@pytest.mark.parametrize("batch", [1, 5])
def test_onnxruntime_equals_reference(compiled, tmp_path: Path, optimize: bool, batch: int) -> None:  # type: ignore[no-untyped-def]
    graph, ctx = compiled
    build = write(graph, ctx, tmp_path / "b")
    x = np.random.default_rng(batch).standard_normal((batch, 3, 8, 8)).astype(np.float32)
    got = run_ort_exposed(build, graph, {"x": x}, optimize)
    ref = run_compiled(graph, {"x": x}, record=True)
    np.testing.assert_array_equal(got["fc.y"], ref.outputs["fc.y"])
    for layer, trace in ref.traces.items():
        np.testing.assert_array_equal(got[f"{layer}/adc_codes"], trace.adc_codes)
        np.testing.assert_array_equal(got[f"{layer}/sums"], trace.sums)
    assert np.abs(ref.traces["c2"].adc_codes).max() <= 15


def test_float_model_matches_the_interpreter() -> None:
    graph = small_cnn(group=2)
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    session = ort.InferenceSession(serialize(float_model(graph)), providers=["CPUExecutionProvider"])
    want = interpreter.run(batch_generic(graph), {"x": x})["fc.y"]
    np.testing.assert_allclose(session.run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-5)


def test_expose_rejects_unknown_layers(compiled) -> None:  # type: ignore[no-untyped-def]
    model = cim_model(compiled[0])
    assert len(expose(model, ["c1"]).graph.output) == 1 + 3
    with pytest.raises(KeyError, match="ghost/input_codes"):
        expose(model, ["ghost"])


@pytest.mark.parametrize(("cin", "k", "wordlines", "mode", "group"), [
    (20, 3, 32, "channel", 1), (20, 3, 32, "dense", 2), (4, 3, 64, "channel", 4), (3, 11, 64, "channel", 1),
    (6, 5, 16, "dense", 1)])
def test_grouped_segment_convolution_equals_im2col(cin: int, k: int, wordlines: int, mode: str, group: int) -> None:
    """The two formulations of all segments at once agree (kernels split inside channels too)."""
    rng = np.random.default_rng(cin + k)
    cout, cin_g = 4 * group, cin // group
    bounds = segment_bounds(cin_g, k * k, wordlines, mode)
    w = rng.integers(-7, 8, (cout, cin_g, k, k)).astype(np.float32)
    x = rng.integers(0, 16, (2, cin, 9, 9)).astype(np.float32)
    spec = CimSpec("t", "conv", w, np.zeros(cout, np.float32), group, (1, 1), (1, 1, 1, 1), (1, 1),
                   tuple(int(b) for b in bounds), None, None)
    conv = segment_conv(w.reshape(cout, -1), bounds, cin_g, group, (k, k))
    from cimc.ops.windows import conv2d

    gathered = x if conv.index is None else x[:, conv.index]
    got = conv2d(gathered, conv.weight, None, (1, 1), (1, 1, 1, 1), (1, 1), conv.groups)
    want = segment_sums(x, w, spec)
    np.testing.assert_array_equal(got.reshape(want.shape), want)
    assert len(bounds) > 2 or group > 1
