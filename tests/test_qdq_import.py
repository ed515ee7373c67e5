"""Quantized models in (``cimc.frontend.quantizers``, ``cimc.quant.imported``): onnxruntime QDQ
(per-channel int8), a hand-written int4 QDQ model at opset 21 and QONNX ``Quant`` models import
as float graphs whose quantizer steps become the CIM layers' steps; what cimc cannot hold is
refused or re-quantized with a reason."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cimc.api import CompileOptions, compile_model, load_source
from cimc.errors import UnsupportedError
from cimc.frontend import import_onnx
from cimc.frontend.quantizers import QDQ_KEY
from cimc.ir.annotations import QuantParams
from cimc.macro import load_macro
from cimc.passes.manager import PassContext, run_passes
from cimc.passes.pipelines import DEFAULT, instantiate
from cimc.quant.qat_metadata import qat_metadata

TINY = Path(__file__).resolve().parents[1] / "cimc" / "models" / "shipped" / "tiny_cnn.onnx"
QONNX = "qonnx.custom_op.general"


# -- fixtures: models written here ------------------------------------------------------------
def ort_qdq(folder: Path, **extra: object) -> tuple[Path, Path]:
    """tiny_cnn with BatchNorm fused (``quant_pre_process``) and its onnxruntime
    ``quantize_static`` QDQ model (per-channel int8 weights, uint8 activations)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.batches = iter([{"input": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(8)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    float_path, qdq_path = folder / "float.onnx", folder / "qdq.onnx"
    quant_pre_process(str(TINY), str(float_path), skip_symbolic_shape=True)
    quantize_static(str(float_path), str(qdq_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8, extra_options=dict(extra))
    return float_path, qdq_path


def int4_model(opset: int = 21) -> onnx.ModelProto:
    """x → Q/DQ (uint4, S_A 0.1) → Conv (int4 weights per output channel) → Relu → Q/DQ (uint4)
    → Conv (int4 per tensor)."""
    rng = np.random.default_rng(1)
    w1 = rng.integers(-7, 8, (6, 3, 3, 3)).astype(np.int8)
    w2 = rng.integers(-7, 8, (4, 6, 1, 1)).astype(np.int8)
    i4 = helper.tensor_dtype_to_np_dtype(TensorProto.INT4)
    u4 = helper.tensor_dtype_to_np_dtype(TensorProto.UINT4)
    inits = [numpy_helper.from_array(w1.astype(i4), "w1_q"), numpy_helper.from_array(w2.astype(i4), "w2_q"),
             numpy_helper.from_array(np.linspace(0.01, 0.02, 6).astype(np.float32), "w1_s"),
             numpy_helper.from_array(np.float32(0.05), "w2_s"),
             numpy_helper.from_array(np.float32(0.1), "x_s"), numpy_helper.from_array(np.zeros((), u4), "u4_zp"),
             numpy_helper.from_array(np.float32(0.03), "h_s"),
             numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "b1")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_s", "u4_zp"], ["x_q"], name="x_Q"),
             helper.make_node("DequantizeLinear", ["x_q", "x_s", "u4_zp"], ["x_dq"], name="x_DQ"),
             helper.make_node("DequantizeLinear", ["w1_q", "w1_s"], ["w1"], name="w1_DQ", axis=0),
             helper.make_node("Conv", ["x_dq", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("QuantizeLinear", ["r1", "h_s", "u4_zp"], ["h_q"], name="h_Q"),
             helper.make_node("DequantizeLinear", ["h_q", "h_s", "u4_zp"], ["h_dq"], name="h_DQ"),
             helper.make_node("DequantizeLinear", ["w2_q", "w2_s"], ["w2"], name="w2_DQ"),
             helper.make_node("Conv", ["h_dq", "w2"], ["y"], name="conv2")]
    graph = helper.make_graph(nodes, "int4", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def qonnx_quant(x: np.ndarray, s: np.ndarray, z: float, b: int, signed: bool, narrow: bool) -> np.ndarray:
    """qonnx ``quant`` (src/qonnx/custom_op/general/quant.py), ROUND mode."""
    lo = -(2 ** (b - 1)) + narrow if signed else 0
    hi = 2 ** (b - 1) - 1 if signed else 2**b - 1 - narrow
    return ((np.round(np.clip(x / s + z, lo, hi)) - z) * s).astype(np.float32)


def qonnx_model(domain: str = QONNX, act: str = "Quant") -> tuple[onnx.ModelProto, np.ndarray]:
    """x → Quant (unsigned 4-bit activation) → Conv (weights through a signed narrow 4-bit Quant
    with per-channel scales) → Relu; returns the model and the float weights."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((5, 2, 3, 3)).astype(np.float32) * 0.3
    scales = (np.abs(w).reshape(5, -1).max(axis=1) / 7).astype(np.float32).reshape(5, 1, 1, 1)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(scales, "w_s"),
             numpy_helper.from_array(np.float32(0), "zero"), numpy_helper.from_array(np.float32(4), "four"),
             numpy_helper.from_array(np.float32(0.125), "x_s")]
    act_inputs = ["x", "x_s", "zero", "four"] if act != "BipolarQuant" else ["x", "x_s"]
    act_attrs = {"signed": 0, "narrow": 0, "rounding_mode": "ROUND"} if act != "BipolarQuant" else {}
    nodes = [helper.make_node(act, act_inputs, ["xq"], name="x_quant", domain=domain, **act_attrs),
             helper.make_node("Quant", ["w", "w_s", "zero", "four"], ["wq"], name="w_quant", domain=domain,
                              signed=1, narrow=1, rounding_mode="ROUND"),
             helper.make_node("Conv", ["xq", "wq"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "qonnx", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, 5, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(domain, 1)])
    return model, w


def quantized(path_or_model: Path | onnx.ModelProto, options: CompileOptions) -> dict[str, QuantParams]:
    """The QuantParams the default pipeline up to quantize gives every CIM layer."""
    if isinstance(path_or_model, Path):
        graph, _ = load_source(path_or_model, options)
    else:
        graph = import_onnx(path_or_model)
    names = DEFAULT[:DEFAULT.index("quantize") + 1]
    graph = run_passes(graph, instantiate(names, options), PassContext(macro=load_macro(options.macro)))
    return {n.name: n.ann[QuantParams] for n in graph.nodes if QuantParams in n.ann}


def layer_doc(graph_metadata: dict[str, str]) -> dict[str, dict[str, object]]:
    layers: dict[str, dict[str, object]] = json.loads(graph_metadata[QDQ_KEY])["layers"]
    return layers


# -- onnxruntime QDQ -----------------------------------------------------------------------------
def test_ort_qdq_float_model_with_the_same_steps_builds_identically(tmp_path: Path) -> None:
    """The acceptance test: the QDQ model and the float model it came from, the latter compiled
    with the QDQ build's steps (``cimc.quant`` metadata), give the same build: cell codes,
    layout, schedule, quant.json (but for the ``source`` labels), graph.json, digital constants
    and model.cim.onnx byte for byte without scale-to-shift. With it, the ADC fold of a layer
    with per-column scales picks each column's power of two from float calibration
    activations, and past the first layer those differ between the routes (the QDQ model's
    weights are its dequantized codes): a column whose two candidates are within that noise
    may take the other power — its ADC step differs by exactly 2×, nothing else does."""
    float_path, qdq_path = ort_qdq(tmp_path, QuantizeBias=False, QDQKeepRemovableActivations=True)
    _same_builds(tmp_path / "shift0", float_path, qdq_path, CompileOptions(map_fc=True, no_shift=True))
    _same_builds(tmp_path / "shift1", float_path, qdq_path, CompileOptions(map_fc=True), folds=True)


FOLDED = ("adc_step", "scale", "shift")  # what an ADC fold's choice of power of two changes


def _same_builds(tmp_path: Path, float_path: Path, qdq_path: Path, options: CompileOptions,
                 folds: bool = False) -> None:
    tmp_path.mkdir()
    params = quantized(qdq_path, options)
    assert {k: q.source for k, q in params.items()} == {
        "node_conv2d": "qdq-weights", "node_conv2d_1": "qdq", "node_conv2d_2": "qdq", "node_linear": "qdq-weights"}
    model = onnx.load(float_path)
    helper.set_model_props(model, {"cimc.quant": qat_metadata(params)})
    stepped = tmp_path / "float_steps.onnx"
    onnx.save(model, stepped)
    compile_model(qdq_path, tmp_path / "qdq_build", options)
    compile_model(stepped, tmp_path / "float_build", options)
    same = ("weights.safetensors", "layout.json", "schedule.json", "graph.json", "digital.safetensors")
    for name in same if folds else (*same, "model.cim.onnx"):
        assert (tmp_path / "qdq_build" / name).read_bytes() == (tmp_path / "float_build" / name).read_bytes(), name
    got, want = (json.loads((tmp_path / b / "quant.json").read_text()) for b in ("qdq_build", "float_build"))
    assert [layer.pop("source") for layer in got["layers"]] == ["qdq-weights", "qdq", "qdq", "qdq-weights"]
    assert {layer.pop("source") for layer in want["layers"]} == {"qat"}
    if folds:
        for a, b in zip(got["layers"], want["layers"], strict=True):
            ratio = np.asarray(a["adc_step"], np.float64) / np.asarray(b["adc_step"], np.float64)
            assert set(np.unique(ratio)) <= {0.5, 1.0, 2.0}, a.get("name", a)
            assert np.mean(ratio != 1.0) <= 0.1  # a few near-tie columns at most
            for key in FOLDED:
                a.pop(key, None), b.pop(key, None)
    assert got == want


def test_ort_qdq_steps_are_the_models_scales(tmp_path: Path) -> None:
    """Per-channel int8 weight scales become per-column ``S_W``, the uint8 (zero point 0) input
    scale ``S_A``; the weights are the dequantized codes, so cimc's codes are the model's."""
    _, qdq_path = ort_qdq(tmp_path)  # defaults: bias quantized to int32, Relus dropped into the uint8 range
    model = onnx.load(qdq_path)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    params = quantized(qdq_path, CompileOptions())
    q = params["node_conv2d_1"]
    assert q.source == "qdq" and (q.w_bits, q.a_bits, q.a_signed) == (8, 8, False)
    np.testing.assert_array_equal(q.w_step, inits["ConvBnFusion_W_features.1.0.weight_scale"])
    assert q.a_step == pytest.approx(float(inits["relu_scale"]), rel=0, abs=0)
    graph = import_onnx(qdq_path)
    node = next(n for n in graph.nodes if n.name == "node_conv2d_1")
    codes = inits["ConvBnFusion_W_features.1.0.weight_quantized"]
    spec_w = graph.initializers[node.inputs[1]]
    np.testing.assert_array_equal(np.rint(spec_w / q.w_step.reshape(-1, 1, 1, 1)), codes)
    # the Relu that the uint8 range implied is back (onnxruntime removed it from the QDQ model)
    assert [n.op for n in graph.consumers(node.inputs[0])] == ["Conv"]
    assert graph.producer(node.inputs[0]).op == "Relu"  # type: ignore[union-attr]
    # an asymmetric input (the model input, zero point 143) keeps the weights, calibrates S_A
    assert params["node_conv2d"].source == "qdq-weights"
    assert "zero point" in " ".join(layer_doc(graph.metadata)["node_conv2d"]["notes"])  # type: ignore[arg-type]


def test_asked_bits_requantize_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _, qdq_path = ort_qdq(tmp_path)
    with caplog.at_level(logging.WARNING):
        params = quantized(qdq_path, CompileOptions(w_bits=4))
    assert {q.w_bits for q in params.values()} == {4}
    assert params["node_conv2d_1"].source == "qdq-inputs"
    assert "4-bit weights asked, the model's are 8-bit" in caplog.text


def test_batchnorm_after_the_quantizer_recalibrates_weights(caplog: pytest.LogCaptureFixture) -> None:
    """A BatchNorm folded into dequantized weights moves them off the model's grid: S_W is
    calibrated, with a warning."""
    model = int4_model()
    g = model.graph
    g.node[3].output[0] = "c0"
    bn = helper.make_node("BatchNormalization", ["c0", "g", "b", "m", "v"], ["c1"], name="bn")
    g.node.insert(4, bn)
    for name, value in (("g", 1.7), ("b", 0.1), ("m", 0.2), ("v", 1.3)):
        g.initializer.append(numpy_helper.from_array(np.full(6, value, np.float32), name))
    with caplog.at_level(logging.WARNING):
        params = quantized(model, CompileOptions())
    assert params["conv1"].source == "qdq-inputs" and params["conv2"].source == "qdq"
    assert "not the model's 4-bit codes" in caplog.text


# -- int4 QDQ at opset 21 --------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [21, 23, 25])
def test_int4_qdq(opset: int) -> None:
    model = int4_model(opset)
    graph = import_onnx(model)
    assert not {n.op for n in graph.nodes} & {"QuantizeLinear", "DequantizeLinear"}
    params = quantized(model, CompileOptions())
    q1, q2 = params["conv1"], params["conv2"]
    assert (q1.source, q1.w_bits, q1.a_bits, q1.a_signed) == ("qdq", 4, 4, False)
    np.testing.assert_array_equal(q1.w_step, np.linspace(0.01, 0.02, 6).astype(np.float32))
    assert q1.a_step == np.float32(0.1) and q2.a_step == np.float32(0.03)
    assert q2.source == "qdq" and q2.w_step.tolist() == [np.float32(0.05)]
    inits = {t.name: numpy_helper.to_array(t).astype(np.int8) for t in model.graph.initializer if t.name == "w1_q"}
    node = next(n for n in graph.nodes if n.name == "conv1")
    np.testing.assert_array_equal(np.rint(graph.initializers[node.inputs[1]] / q1.w_step.reshape(-1, 1, 1, 1)),
                                  inits["w1_q"])


def test_int4_input_codes_equal_onnxruntime_quantizer(tmp_path: Path) -> None:
    """The first layer's DAC codes in model.cim.onnx are onnxruntime's QuantizeLinear codes."""
    import onnxruntime as ort

    from cimc.lowering.model import expose

    model = int4_model()
    path = tmp_path / "int4.onnx"
    onnx.save(model, path)
    compile_model(path, tmp_path / "build")
    x = np.random.default_rng(3).uniform(-0.3, 1.8, (1, 3, 6, 6)).astype(np.float32)
    exposed = model
    exposed.graph.output.append(helper.make_tensor_value_info("x_dq", TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    dequantized = ort.InferenceSession(exposed.SerializeToString(), options).run(["x_dq"], {"x": x})[0]
    codes = np.rint(dequantized / np.float32(0.1))  # numpy has no uint4: the codes back from q·0.1
    assert codes.max() == 15 and codes.min() == 0  # the range clips at both ends
    cim = expose(onnx.load(tmp_path / "build" / "model.cim.onnx"), ["conv1"])
    got = ort.InferenceSession(cim.SerializeToString(), options).run(["conv1/input_codes"], {"x": x})[0]
    np.testing.assert_array_equal(got, codes.astype(np.float32))


# -- QONNX ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("domain", [QONNX, "finn.custom_op.general"])
def test_qonnx_quant(domain: str) -> None:
    model, w = qonnx_model(domain)
    graph = import_onnx(model)
    node = next(n for n in graph.nodes if n.name == "conv")
    scales = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "w_s"))
    np.testing.assert_array_equal(graph.initializers[node.inputs[1]], qonnx_quant(w, scales, 0, 4, True, True))
    q = quantized(model, CompileOptions())["conv"]
    assert (q.source, q.w_bits, q.a_bits, q.a_signed, q.a_step) == ("qdq", 4, 4, False, 0.125)
    np.testing.assert_array_equal(q.w_step, scales.reshape(-1))


def test_qonnx_int_quant_and_bipolar_weights() -> None:
    model, _ = qonnx_model()
    model.graph.node[0].op_type = "IntQuant"
    bipolar = helper.make_node("BipolarQuant", ["w", "one"], ["wq"], name="w_quant", domain=QONNX)
    model.graph.node[1].CopyFrom(bipolar)
    model.graph.initializer.append(numpy_helper.from_array(np.float32(0.5), "one"))
    graph = import_onnx(model)
    node = next(n for n in graph.nodes if n.name == "conv")
    assert set(np.unique(graph.initializers[node.inputs[1]]).tolist()) <= {-0.5, 0.5}
    q = quantized(model, CompileOptions())["conv"]
    assert (q.source, q.w_bits) == ("qdq", 2) and q.w_step.tolist() == [0.5]


# -- QCDQ and refusals --------------------------------------------------------------------------------
def test_qcdq_clip_narrows_the_bits() -> None:
    """QuantizeLinear(int8) → Clip(−7, 7) → DequantizeLinear is a signed 4-bit quantizer."""
    model = int4_model(13)
    g = model.graph
    for t in g.initializer:
        if t.name in ("w1_q", "w2_q"):
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.int8), t.name))
        if t.name == "u4_zp":
            t.CopyFrom(numpy_helper.from_array(np.zeros((), np.int8), t.name))
    g.initializer.extend([numpy_helper.from_array(np.int8(-7), "lo"), numpy_helper.from_array(np.int8(7), "hi")])
    q = next(n for n in g.node if n.name == "h_Q")
    q.output[0] = "h_q0"
    g.node.insert(list(g.node).index(q) + 1, helper.make_node("Clip", ["h_q0", "lo", "hi"], ["h_q"], name="h_clip"))
    params = quantized(model, CompileOptions())
    assert (params["conv2"].a_bits, params["conv2"].a_signed, params["conv2"].source) == (4, True, "qdq")
    assert (params["conv1"].a_bits, params["conv1"].a_signed) == (8, True)


def test_refusals_name_the_node() -> None:
    model = int4_model()
    model.graph.node[-1].input[0] = "h_q"  # a Conv reading the integer tensor
    with pytest.raises(UnsupportedError, match=r"h_q.*QuantizeLinear 'h_Q'"):
        import_onnx(model)
    blocked = int4_model()
    blocked.graph.node[2].attribute.append(helper.make_attribute("block_size", 2))
    with pytest.raises(UnsupportedError, match=r"w1_DQ.*block_size"):
        import_onnx(blocked)
    bipolar, _ = qonnx_model(act="BipolarQuant")
    with pytest.raises(UnsupportedError, match=r"x_quant.*bipolar"):
        import_onnx(bipolar)


def test_a_models_own_qdq_metadata_is_ignored() -> None:
    """Only the importer writes ``cimc.qdq``: a float model carrying one gets calibrated steps."""
    model = onnx.load(TINY)
    helper.set_model_props(model, {QDQ_KEY: json.dumps({"version": 1, "layers": {"node_conv2d": {
        "w_bits": 4, "w_step": [1.0], "a_bits": 4, "a_step": 1.0, "a_signed": False, "notes": []}}})})
    params = quantized(model, CompileOptions())
    assert {q.source for q in params.values()} == {"calibration"}


def test_more_refusals() -> None:
    """Float8, a Q/DQ pair with different scales, a DequantizeLinear of a run-time integer
    input, a Trunc on an activation: UnsupportedError naming the node."""
    f8 = int4_model(21)
    zp = next(t for t in f8.graph.initializer if t.name == "u4_zp")
    zp.CopyFrom(helper.make_tensor("u4_zp", TensorProto.FLOAT8E4M3FN, [], [0.0]))
    with pytest.raises(UnsupportedError, match=r"x_Q.*FLOAT8E4M3FN"):
        import_onnx(f8)
    mismatch = int4_model()
    mismatch.graph.node[1].input[1] = "h_s"
    with pytest.raises(UnsupportedError, match="different scales"):
        import_onnx(mismatch)
    runtime = helper.make_model(helper.make_graph(
        [helper.make_node("DequantizeLinear", ["q", "s"], ["y"], name="dq")], "g",
        [helper.make_tensor_value_info("q", TensorProto.INT8, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.float32(0.5), "s")]), opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(UnsupportedError, match=r"'dq'.*computed at run time"):
        import_onnx(runtime)
    trunc, _ = qonnx_model()
    trunc.graph.node[0].CopyFrom(helper.make_node(
        "Trunc", ["x", "x_s", "zero", "four", "x_s", "zero", "four"], ["xq"], name="x_trunc", domain=QONNX))
    with pytest.raises(UnsupportedError, match=r"x_trunc.*Trunc"):
        import_onnx(trunc)


def test_hostile_quantizers() -> None:
    """Typed errors, never a traceback: a zero scale, a per-axis scale of the wrong length, a
    16-bit-plus QONNX bit width."""
    from cimc.errors import InvalidModelError

    zero = int4_model()
    s = next(t for t in zero.graph.initializer if t.name == "w2_s")
    s.CopyFrom(numpy_helper.from_array(np.float32(0), "w2_s"))
    with pytest.raises(InvalidModelError, match=r"w2_DQ.*positive"):
        import_onnx(zero)
    short = int4_model()
    s = next(t for t in short.graph.initializer if t.name == "w1_s")
    s.CopyFrom(numpy_helper.from_array(np.ones(5, np.float32), "w1_s"))
    with pytest.raises(InvalidModelError, match="per-axis scale of 5 values"):
        import_onnx(short)
    wide, _ = qonnx_model()
    b = next(t for t in wide.graph.initializer if t.name == "four")
    b.CopyFrom(numpy_helper.from_array(np.float32(40), "four"))
    with pytest.raises(UnsupportedError, match="bit width"):
        import_onnx(wide)


def test_qonnx_trunc_on_a_constant() -> None:
    """A Trunc of a constant is evaluated (qonnx ``trunc``: round, drop low bits with FLOOR)."""
    model, w = qonnx_model()
    g = model.graph
    g.node[1].output[0] = "wq0"
    g.initializer.extend([numpy_helper.from_array(np.float32(0.05), "t_s"),
                          numpy_helper.from_array(np.float32(0.2), "t_out"),
                          numpy_helper.from_array(np.float32(3), "three")])
    g.node.insert(2, helper.make_node("Trunc", ["w", "t_s", "zero", "four", "t_out", "zero", "three"], ["wq"],
                                      name="w_trunc", domain=QONNX, rounding_mode="FLOOR", signed=1, narrow=0))
    g.node[1].input[0] = "w"
    del g.node[1]  # the Trunc replaces the weight Quant
    graph = import_onnx(model)
    node = next(n for n in graph.nodes if n.name == "conv")
    y = np.rint(w / np.float32(0.05))
    want = (np.floor(np.clip(y / 4.0, -4, 3)) * np.float32(0.2)).astype(np.float32)
    np.testing.assert_allclose(graph.initializers[node.inputs[1]], want, rtol=0, atol=1e-7)
    assert "conv" not in layer_doc(graph.metadata)  # a truncated weight carries no step for cimc


def test_int4_qdq_round_trip_through_export(tmp_path: Path) -> None:
    """int4 QDQ in → build → QDQ out: the exported model equals model.cim.onnx bit for bit, and
    the first layer's cells are the model's int4 codes."""
    import onnxruntime as ort

    from cimc.lowering.qdq import qdq_model, read_cim_model

    model = int4_model()
    path = tmp_path / "int4.onnx"
    onnx.save(model, path)
    compile_model(path, tmp_path / "build")
    cim = read_cim_model(tmp_path / "build")
    qdq = qdq_model(cim)
    x = np.random.default_rng(4).uniform(-0.5, 2.0, (1, 3, 6, 6)).astype(np.float32)
    want = ort.InferenceSession(cim.SerializeToString()).run(None, {"x": x})[0]
    got = ort.InferenceSession(qdq.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, want)
    cells = {t.name: numpy_helper.to_array(t) for t in qdq.graph.initializer if t.data_type == TensorProto.INT4}
    codes = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "w1_q")).astype(np.int8)
    assert any(np.array_equal(np.sort(v.astype(np.int8).ravel()), np.sort(codes.ravel())) for v in cells.values())


@pytest.mark.parametrize(("lo", "hi", "want"), [
    (0, 255, (8, False)),        # uint8, zero point 0
    (-128, 127, (8, True)),      # int8 zp 0, or uint8 zp 128: signed (code -128 clips to -127)
    (-127, 127, (8, True)),      # narrow int8
    (0, 15, (4, False)),         # uint4, or a QCDQ clip of uint8 to 0..15
    (-7, 7, (4, True)),          # a QCDQ clip of int8 to 4 signed bits
    (-143, 112, None),           # uint8 with zero point 143: asymmetric
    (0, 254, None),              # QONNX unsigned narrow: not a full unsigned range
])
def test_code_ranges(lo: int, hi: int, want: tuple[int, bool] | None) -> None:
    from cimc.frontend.quantizers import FakeQuant

    bits, signed, reason = FakeQuant("q", np.ones(1, np.float32), None, lo, hi, 8).cim_range()
    assert ((bits, signed) if reason is None else None) == want


def test_bits_that_do_not_fit_the_macro_are_requantized(caplog: pytest.LogCaptureFixture) -> None:
    """16-bit weights and inputs would make sums beyond 2^24 on the paper macro: the layers are
    re-quantized at the macro's bits, with a warning."""
    model = int4_model(21)
    for t in model.graph.initializer:
        if t.name == "u4_zp":
            t.CopyFrom(numpy_helper.from_array(np.zeros((), np.uint16), t.name))
        if t.name in ("w1_q", "w2_q"):
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.int16) * 1000, t.name))
    with caplog.at_level(logging.WARNING):
        params = quantized(model, CompileOptions())
    assert {(q.source, q.w_bits, q.a_bits) for q in params.values()} == {("calibration", 4, 4)}
    assert "16-bit weights and 16-bit inputs do not fit macro 'paper'" in caplog.text


def test_output_dtype_without_zero_points() -> None:
    """Opset 21: a QuantizeLinear with ``output_dtype`` int8 and no zero points (nor on its
    DequantizeLinear) is a signed 8-bit quantizer."""
    model = int4_model(21)
    for node in model.graph.node:
        if node.name in ("h_Q", "h_DQ"):
            del node.input[2]
        if node.name == "h_Q":
            node.attribute.append(helper.make_attribute("output_dtype", TensorProto.INT8))
    q = quantized(model, CompileOptions())["conv2"]
    assert (q.source, q.a_bits, q.a_signed) == ("qdq", 8, True)
