"""Quantized model out (``cimc export-qdq``, ``cimc.lowering.qdq``): the QDQ model onnxruntime
runs gives the build's ``model.cim.onnx`` outputs, DAC codes and ADC codes bit for bit, under
every graph optimisation level."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto

from cimc.api import compile_model
from cimc.cli.main import main
from cimc.errors import UnsupportedError
from cimc.lowering.model import LAYER_TENSORS, expose
from cimc.lowering.qdq import code_type, qdq_model, read_cim_model

LEVELS = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)


def layers(model: onnx.ModelProto) -> list[str]:
    props = {p.key: p.value for p in model.metadata_props}
    return [entry["cim_layer"] for entry in json.loads(props["cimc.cim_layers"])]


def run(model: onnx.ModelProto, x: np.ndarray, level: ort.GraphOptimizationLevel) -> dict[str, np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    session = ort.InferenceSession(model.SerializeToString(), options)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {model.graph.input[0].name: x}), strict=True))


def assert_same(build: Path, opset: int, x: np.ndarray) -> onnx.ModelProto:
    """QDQ export of ``build`` at ``opset``: every output and every layer's codes equal."""
    cim = read_cim_model(build)
    qdq = qdq_model(cim, opset)
    names = layers(cim)
    for level in LEVELS:
        want, got = run(expose(cim, names), x, level), run(expose(qdq, names), x, level)
        assert set(want) == set(got) and len(want) == 1 + len(names) * len(LAYER_TENSORS)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{key} at {level}")
    return qdq


def count(model: onnx.ModelProto, op: str) -> int:
    return sum(n.op_type == op for n in model.graph.node)


def inputs(seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((8, 3, 8, 8)) * 1.5).astype(np.float32)


def test_default_build_int4_cells(tmp_path: Path) -> None:
    """4-bit weights on 4-bit cells: int4 cell codes at opset 21, a Q/DQ pair per quantizer."""
    compile_model("tiny_cnn", tmp_path / "b")
    qdq = assert_same(tmp_path / "b", 21, inputs())
    cim_layers = len(layers(qdq))
    assert count(qdq, "QuantizeLinear") == 2 * cim_layers  # DAC and ADC of every layer
    assert count(read_cim_model(tmp_path / "b"), "QLinearConv") == cim_layers  # integer layers, expanded first
    assert count(qdq, "Round") == 0  # the DAC: Round(Div) became QuantizeLinear; the ADC: QDQ already
    assert not any(n.op_type == "Cast" and "cell_codes" in n.input[0] for n in qdq.graph.node)
    types = {t.data_type for t in qdq.graph.initializer}
    assert TensorProto.INT4 in types and qdq.opset_import[0].version == 21
    assert not [n for n in qdq.graph.node if n.op_type == "Div" and n.output[0].endswith("_scaled")]


def test_sliced_per_column_build(tmp_path: Path) -> None:
    """8-bit weights and inputs on 4-bit cells and DACs, steps per column: the ADC steps
    ``S_ADC·2^−m`` per conversion and channel become a power-of-two Mul and a per-axis scale."""
    compile_model("tiny_cnn", tmp_path / "b", w_bits=8, a_bits=8, granularity="column")
    qdq = assert_same(tmp_path / "b", 21, inputs(1))
    assert count(qdq, "QuantizeLinear") == 2 * len(layers(qdq))
    assert any(n.op_type == "QuantizeLinear" and any(a.name == "axis" for a in n.attribute) for n in qdq.graph.node)


def test_opset_17_int8_only_and_mapped_fc(tmp_path: Path) -> None:
    """At opset 17 every code is int8/uint8; a mapped Gemm (signed inputs) is exact too."""
    compile_model("tiny_residual", tmp_path / "b", map_fc=True)
    shape = [d.dim_value for d in read_cim_model(tmp_path / "b").graph.input[0].type.tensor_type.shape.dim]
    x = (np.random.default_rng(2).standard_normal([4, *shape[1:]]) * 2).astype(np.float32)
    qdq = assert_same(tmp_path / "b", 17, x)
    allowed = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT64, TensorProto.INT8, TensorProto.UINT8}
    assert {t.data_type for t in qdq.graph.initializer} <= allowed


def test_code_types() -> None:
    assert code_type(0, 255, 21, "t") == (TensorProto.UINT8, True)
    assert code_type(0, 15, 21, "t") == (TensorProto.UINT8, False)  # a clip, no uint4 (module doc)
    assert code_type(-7, 7, 21, "t") == (TensorProto.INT8, False)  # narrow: int8 and a clip
    assert code_type(0, 15, 17, "t") == (TensorProto.UINT8, False)
    assert code_type(-32767, 32767, 21, "t") == (TensorProto.INT16, False)
    with pytest.raises(UnsupportedError, match="opset 21"):
        code_type(-32767, 32767, 17, "t")


def test_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["compile", "tiny_cnn", "-o", str(tmp_path / "b")]).exit_code == 0
    out = tmp_path / "m.qdq.onnx"
    result = runner.invoke(main, ["--json", "export-qdq", str(tmp_path / "b"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["opset"] == 21 and doc["QuantizeLinear"] > 0 and out.stat().st_size == doc["bytes"]
    onnx.checker.check_model(onnx.load(out), full_check=True)
    again = runner.invoke(main, ["export-qdq", str(tmp_path / "b"), "-o", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    cim = tmp_path / "b" / "model.cim.onnx"
    cim.write_bytes(cim.read_bytes() + b"\0")
    tampered = runner.invoke(main, ["export-qdq", str(tmp_path / "b"), "-o", str(out), "--force"])
    assert tampered.exit_code == 8 and "sha256" in tampered.output


@pytest.mark.parametrize("granularity", ["column", "layer"])
def test_real_scales_int4_weights(tmp_path: Path, granularity: str) -> None:
    """``--scales real``: int4 weights with the build's ``S_W`` (per column: a per-axis scale);
    the first layer (same inputs in both models) has every ADC code within one of
    model.cim.onnx's: the float32 convolution of real values is not exact, so ties
    ``p/S_ADC = k + ½`` may flip (digits_cnn per layer, on these inputs: 237 of 131,072)."""
    from onnx import numpy_helper

    from cimc.lowering.qdq import read_weight_steps

    compile_model("digits_cnn", tmp_path / "b", granularity=granularity)
    cim = read_cim_model(tmp_path / "b")
    steps = read_weight_steps(tmp_path / "b")
    qdq = qdq_model(cim, 21, steps)
    first = layers(cim)[0]
    cells = next(n for n in qdq.graph.node if n.output[0] == f"{first}/cells")
    inits = {t.name: t for t in qdq.graph.initializer}
    assert cells.op_type == "DequantizeLinear" and inits[cells.input[0]].data_type == TensorProto.INT4
    scale = numpy_helper.to_array(inits[cells.input[1]])
    np.testing.assert_array_equal(scale.reshape(-1), np.tile(steps[first], scale.size // steps[first].size))
    assert [a.i for a in cells.attribute if a.name == "axis"] == ([0] if granularity == "column" else [])
    shape = [d.dim_value for d in cim.graph.input[0].type.tensor_type.shape.dim]
    x = (np.random.default_rng(0).standard_normal([64, *shape[1:]]) * 1.5).astype(np.float32)
    want = run(expose(cim, [first]), x, LEVELS[0])
    got = run(expose(qdq, [first]), x, LEVELS[0])
    diff = np.abs(got[f"{first}/adc_codes"] - want[f"{first}/adc_codes"])
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    if granularity == "layer":
        assert (diff > 0).sum() > 0  # the tolerance is real, not hypothetical


@pytest.mark.parametrize("metadata", ["{not json", '[{"cim_layer": "x"}]', '[{"adc_bits": 5}]', "7",
                                      '[{"cim_layer": "x", "adc_bits": 99}]', "[" * 10_000])
def test_real_scales_malformed_layer_metadata_is_a_build_error(tmp_path: Path, metadata: str) -> None:
    """``--scales real`` reads each layer's ADC bits from ``cimc.cim_layers`` (untrusted):
    malformed, incomplete, out-of-range or deeply nested metadata is a ``BuildError``, never a
    bare exception."""
    from cimc.errors import BuildError
    from cimc.lowering.qdq import read_weight_steps

    compile_model("tiny_cnn", tmp_path / "b")
    cim = read_cim_model(tmp_path / "b")
    for prop in cim.metadata_props:
        if prop.key == "cimc.cim_layers":
            prop.value = metadata
    with pytest.raises(BuildError):
        qdq_model(cim, 21, read_weight_steps(tmp_path / "b"))
