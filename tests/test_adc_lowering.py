"""The ADC of ``model.cim.onnx`` (``LayerEmitter.adc``): the full-scale clip moved before the
division (``adc_full_scale``), ``QuantizeLinear``/``DequantizeLinear`` for ``Round(Div)``, and
the three forms (saturated, per channel, wide ADC) bit-exact with the emulator and reference."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from cimc.ir.annotations import QuantParams
from cimc.ir.graph import Graph
from cimc.lowering.layer import adc_full_scale
from tests.cim_helpers import assert_three_way, cim_names, compile_ir, small_cnn, write

STEPS = (10.541666984558105, 1.0, 2.0, 0.3, 7.0 / 3.0, 0.1, 1234.5678)


def _around(bound: np.float32, step: float) -> np.ndarray:
    """Integers within a few steps of ``±bound``, the bound itself and its float neighbours."""
    reach = int(bound) + 4 * int(np.ceil(step)) + 4
    near = [bound, np.nextafter(bound, np.float32(np.inf)), np.nextafter(bound, np.float32(0))]
    values = np.concatenate([np.arange(-reach, reach + 1, dtype=np.float32), near, np.negative(near)])
    return values.astype(np.float32)


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("m", [1, 7, 15, 127])
def test_full_scale_clip_before_the_division_gives_the_same_codes(step: float, m: int) -> None:
    """``rint(Clip(p, −U, U) / S) = Clip(rint(p / S), −M, M)`` on every integer partial sum and at ``±U``."""
    s = np.float32(step)
    bound = adc_full_scale(s, m)
    assert bound is not None
    p = _around(bound, step)
    want = np.clip(np.rint(p / s), -m, m)
    got = np.rint(np.clip(p, -bound, bound) / s)
    np.testing.assert_array_equal(got, want)
    assert (want == m).any() and (want == -m).any() and (np.abs(want) < m).any()


def _adc_model(step: np.ndarray, m: int, axis: int | None) -> bytes:
    """``Clip(Round(Div(p, S)), −M, M)`` and ``Clip(DequantizeLinear(QuantizeLinear(p, S, int8 0), 1), −M, M)``."""
    attrs: dict[str, Any] = {} if axis is None else {"axis": axis}
    zero = np.zeros(step.shape, np.int8)
    nodes = [helper.make_node("Div", ["p", "step_b"], ["scaled"]), helper.make_node("Round", ["scaled"], ["r"]),
             helper.make_node("Clip", ["r", "lo", "hi"], ["old"]),
             helper.make_node("QuantizeLinear", ["p", "step", "zero"], ["q"], **attrs),
             helper.make_node("DequantizeLinear", ["q", "one", "zero0"], ["dq"]),
             helper.make_node("Clip", ["dq", "lo", "hi"], ["new"])]
    shaped = step if axis is None else step.reshape(1, -1, 1)
    inits = [numpy_helper.from_array(step, "step"), numpy_helper.from_array(shaped, "step_b"),
             numpy_helper.from_array(zero, "zero"), numpy_helper.from_array(np.array(0, np.int8), "zero0"),
             numpy_helper.from_array(np.array(1, np.float32), "one"),
             numpy_helper.from_array(np.array(-m, np.float32), "lo"),
             numpy_helper.from_array(np.array(m, np.float32), "hi")]
    shape = [None, None, None]
    graph = helper.make_graph(nodes, "adc", [helper.make_tensor_value_info("p", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(t, TensorProto.FLOAT, shape) for t in ("old", "new")],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _near_ties(steps: np.ndarray) -> np.ndarray:
    """``(1, C, V)``: per step ``S`` every ``fl((k + ½)·S)`` with ``|k| ≤ 127``, its float
    neighbours and the integers below 2^12: where ``rint`` and the division's rounding matter."""
    k = np.arange(-127, 127, dtype=np.float32) + np.float32(0.5)
    ties = (k[None, :] * steps[:, None]).astype(np.float32)
    up, down = np.nextafter(ties, np.float32(np.inf)), np.nextafter(ties, np.float32(-np.inf))
    integers = np.broadcast_to(np.arange(-(1 << 12), 1 << 12, dtype=np.float32), (steps.size, 1 << 13))
    return np.concatenate([ties, up, down, integers], axis=1)[None].astype(np.float32)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("optimize", [False, True])
def test_quantize_linear_is_round_of_div_ties_to_even(per_channel: bool, optimize: bool) -> None:
    """onnxruntime's ``QuantizeLinear`` divides once in float32 and rounds ties to even, as
    ``Round(Div)``: on 257 steps, at and beside every tie ``(k + ½)·S`` of the int8 range (a
    quantizer multiplying by ``fl(1/S)`` instead differs on some of them)."""
    rng = np.random.default_rng(5)
    steps = np.concatenate([[10.541666984558105, 0.05992632, 0.20264399, 6.0],
                            rng.uniform(0.05, 40.0, 253)]).astype(np.float32)
    opts = ort.SessionOptions()
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    x = _near_ties(steps)
    if per_channel:
        session = ort.InferenceSession(_adc_model(steps, 127, 1), opts, providers=["CPUExecutionProvider"])
        old, new = session.run(["old", "new"], {"p": x})
    else:
        pairs = [ort.InferenceSession(_adc_model(steps[c].reshape(()), 127, None), opts,
                                      providers=["CPUExecutionProvider"]).run(["old", "new"], {"p": x[:, c:c + 1]})
                 for c in range(8)]
        old, new = (np.concatenate([pair[i] for pair in pairs], axis=1) for i in range(2))
        x, steps = x[:, :8], steps[:8]
    np.testing.assert_array_equal(new, old)
    reciprocal = np.clip(np.rint(x * (np.float32(1) / steps)[None, :, None]), -127, 127)
    if per_channel:
        assert (reciprocal != old).any()  # the values can tell a division from a reciprocal


def _with_adc(graph: Graph, layer: str, **changes: object) -> None:
    """Replace fields of ``layer``'s ``QuantParams`` (the ADC's bits and step here)."""
    node = graph.node(layer)
    q = node.ann.get_ann(QuantParams)
    assert q is not None
    node.ann.put(dataclasses.replace(q, **changes))  # type: ignore[arg-type]


@pytest.mark.parametrize("form", ["integer", "saturated", "per_channel", "wide"])
def test_adc_forms_are_bit_exact(tmp_path: Path, form: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The integer form (``QLinearConv``, ``cimc.lowering.integer``), the saturated float form
    (scalar step: ``Clip(±U)`` fused into the Conv, then Q/DQ), the per-channel form (Q/DQ per
    axis, then ``Clip(±M)``) and a 10-bit ADC (``Clip(Round(Div))``) agree with the emulator and
    the reference on every layer, with many codes at ``±M``."""
    if form != "integer":  # the float form of a layer the integer form could take
        monkeypatch.setattr("cimc.lowering.layer.integer_form", lambda spec: False)
    graph, ctx = compile_ir(small_cnn(batch=4), granularity="column" if form == "per_channel" else "layer")
    for layer in cim_names(graph):
        q = graph.node(layer).ann.get_ann(QuantParams)
        assert q is not None
        bits = 10 if form == "wide" else q.adc_bits
        _with_adc(graph, layer, adc_bits=bits, adc_step=(q.adc_step / np.float32(8)).astype(np.float32))
    build = write(graph, ctx, tmp_path / "b")
    model = onnx.load(str(build / "model.cim.onnx"))
    ops = [n.op_type for n in model.graph.node]
    saturations = [n for n in model.graph.node if n.output[0].endswith("/bitlines_saturated")]
    assert (ops.count("QLinearConv") == len(cim_names(graph))) == (form == "integer")
    assert (ops.count("QuantizeLinear") > 0) == (form != "wide")
    assert (len(saturations) == len(cim_names(graph))) == (form == "saturated")
    x = np.random.default_rng(3).standard_normal((4, 3, 8, 8)).astype(np.float32)
    for optimize in (False, True):
        reference = assert_three_way(build, graph, x, optimize)
    if form != "wide":  # a 10-bit ADC does not saturate here
        m = (1 << (graph.node("c1").ann.get_ann(QuantParams).adc_bits - 1)) - 1  # type: ignore[union-attr]
        assert (np.abs(reference.traces["c1"].adc_codes) == m).mean() > 0.05  # the saturation is exercised
