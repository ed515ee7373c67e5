"""``--adc-step output`` (``cimc.quant.adc_output``): the ADC step of least error of the layer's
output after its activation. The activation's range is read from the graph (Relu, Clip,
equalize's ``Mul → Clip``), the float output is the float conv, the chosen factor is the least
of the scored ones and never worse than the MSE step, the activation's range changes the choice
where it should, and the option reaches quantize, the manifest (only when set) and a build that
stays bit-exact."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import cimc.models as models
from cimc.api import CompileOptions, compile_model
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.ir.tensor import TensorInfo
from cimc.passes.quantize import Quantize, calibrate_layer
from cimc.quant import adc_output as ao
from cimc.quant.cim_layer import CimSpec, cim_spec
from tests.cim_helpers import SMALL, assert_three_way, zoo_onnx
from tests.ir_builders import add_conv, add_unary, graph_with_input
from tests.test_ptq_remedies import tiled

pytestmark = pytest.mark.torch  # tests.cim_helpers builds zoo models
INF = np.inf


def _after(act: str) -> Graph:
    """conv 3→4 followed by ``act``: relu, clip, mul-clip (equalize's wrapping), two readers, none."""
    g = graph_with_input((1, 3, 4, 4))
    y = add_conv(g, "x", 4, 1, rng=np.random.default_rng(0), name="c")
    if act == "relu":
        g.outputs.append(add_unary(g, "Relu", y, "r"))
    elif act == "clip":
        g.outputs.append(add_unary(g, "Clip", y, "k", min=0.0, max=6.0))
    elif act == "mul-clip":
        g.set_initializer("s", np.array([1.0, 2.0, 4.0, 0.5], np.float32).reshape(1, 4, 1, 1))
        g.tensors["m"] = TensorInfo("m", g.shape(y))
        g.add_node(Node("mul", "Mul", (y, "s"), ("m",)))
        g.outputs.append(add_unary(g, "Clip", "m", "k", min=0.0, max=6.0))
    elif act == "two":
        g.outputs += [add_unary(g, "Relu", y, "r"), add_unary(g, "Sigmoid", y, "sg")]
    else:
        g.outputs.append(add_unary(g, "Sigmoid", y, "sg"))
    return g


@pytest.mark.parametrize(("act", "lo", "hi"), [
    ("relu", [0.0] * 4, [INF] * 4), ("clip", [0.0] * 4, [6.0] * 4),
    ("mul-clip", [0.0] * 4, [6.0, 3.0, 1.5, 12.0]), ("two", [-INF] * 4, [INF] * 4), ("sigmoid", [-INF] * 4, [INF] * 4)])
def test_the_activation_range_is_read_in_the_layers_units(act: str, lo: list[float], hi: list[float]) -> None:
    g = _after(act)
    got = ao.output_bounds(g, g.node("c"))
    np.testing.assert_array_equal(got[0], lo)
    np.testing.assert_array_equal(got[1], hi)


def _windows_conv(spec: CimSpec, x: np.ndarray) -> np.ndarray:
    """An independent float conv (no padding, stride 1, one group) as ``(M, Cout)``."""
    kh, kw = spec.kernel
    win = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), (kh, kw), axis=(2, 3))  # N,C,Ho,Wo,kh,kw
    y = np.einsum("nchwij,ocij->nhwo", win, spec.weight.astype(np.float64)) + spec.bias.astype(np.float64)
    return y.reshape(-1, spec.cout)


def test_the_float_output_is_the_float_conv() -> None:
    g = graph_with_input((2, 3, 6, 6))
    add_conv(g, "x", 5, 3, bias=True, rng=np.random.default_rng(1), name="c")
    g.outputs.append("c.y")
    graph, _ = tiled(g)
    spec = cim_spec(graph, graph.node("c"))
    x = np.random.default_rng(2).standard_normal((2, 3, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(ao.float_output(spec, x), _windows_conv(spec, x), rtol=1e-5, atol=1e-5)


def _layer() -> tuple[CimSpec, np.ndarray]:
    """Layer ``c1`` of the small CNN with its bias lowered by 1 (most outputs below 0), a 3-bit
    ADC, on a normal input: a case where ReLU's range moves the best factor off 1."""
    graph, _ = tiled()
    x = np.random.default_rng(2).normal(0.0, 1.0, (32, 3, 8, 8)).astype(np.float32)
    spec = cim_spec(graph, graph.node("c1"))
    spec = replace(spec, bias=(spec.bias - 1.0).astype(np.float32))
    return replace(spec, quant=calibrate_layer(spec, x, (4, 4, 3), "layer", "mse", SMALL)), x


def _errors(spec: CimSpec, x: np.ndarray, bounds: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    want = ao.float_output(spec, x)
    return np.array([ao.output_error(replace(spec, quant=replace(spec.q, adc_step=(spec.q.adc_step * f)
                                                                 .astype(np.float32))), x, want, bounds, True)
                     for f in ao.FACTORS])


@pytest.mark.parametrize("relu", [True, False])
def test_the_chosen_step_is_the_scored_factor_of_least_error(relu: bool) -> None:
    spec, x = _layer()
    bounds = (np.zeros(spec.cout) if relu else np.full(spec.cout, -INF), np.full(spec.cout, INF))
    errors = _errors(spec, x, bounds)
    chosen = ao.output_adc_step(spec, spec, x, bounds, centred=True)
    factor = float(chosen.adc_step.reshape(-1)[0] / spec.q.adc_step.reshape(-1)[0])
    np.testing.assert_allclose(factor, ao.FACTORS[int(np.argmin(errors))], rtol=1e-6)
    assert errors.min() <= errors[0]  # FACTORS[0] = 1: the MSE step
    assert chosen.adc_shift is spec.q.adc_shift or np.array_equal(chosen.adc_shift, spec.q.adc_shift)


def test_the_relu_range_changes_the_choice() -> None:
    """Errors of outputs below 0 do not count after a Relu: the least factor differs (checks
    that ``output_error`` applies the range)."""
    spec, x = _layer()
    inf = np.full(spec.cout, INF)
    relu, line = _errors(spec, x, (np.zeros(spec.cout), inf)), _errors(spec, x, (-inf, inf))
    assert int(np.argmin(relu)) != int(np.argmin(line))
    assert relu.min() < 0.999 * relu[0]


def test_removing_the_mean_error_makes_clipping_cheaper() -> None:
    """On a skewed input (a 3-bit ADC that clips), the error left after bias correction (each
    channel's mean removed) is least at a finer step than the MSE one; the raw error is least at
    the MSE step (checks that ``centred`` removes the mean)."""
    graph, _ = tiled()
    x = np.abs(np.random.default_rng(0).normal(2.0, 1.0, (16, 3, 8, 8))).astype(np.float32)
    spec = cim_spec(graph, graph.node("c1"))
    spec = replace(spec, quant=calibrate_layer(spec, x, (4, 4, 3), "layer", "mse", SMALL))
    line = (np.full(spec.cout, -INF), np.full(spec.cout, INF))
    factors = [float(ao.output_adc_step(spec, spec, x, line, centred).adc_step.reshape(-1)[0]
                     / spec.q.adc_step.reshape(-1)[0]) for centred in (True, False)]
    assert factors[0] == pytest.approx(2 ** -0.125) and factors[1] == 1.0


def test_the_option_reaches_quantize_and_is_recorded_only_when_set() -> None:
    assert "adc_method" not in CompileOptions().public()
    options = CompileOptions(adc_method="output")
    assert options.public()["adc_method"] == "output"
    assert Quantize.from_options(options).adc_method == "output"


def test_the_build_stays_bit_exact_and_moves_some_step(tmp_path: Path) -> None:
    common = {"calib_size": 8, "macro": "small-64", "map_fc": True, "bias_correction": True, "no_shift": True}
    base = compile_model(zoo_onnx("tiny_residual"), tmp_path / "a", **common)
    result = compile_model(zoo_onnx("tiny_residual"), tmp_path / "b", adc_method="output", **common)
    shape = models.input_shape("tiny_residual")
    x = np.random.default_rng(6).standard_normal((3, *shape[1:])).astype(np.float32)
    assert_three_way(result.out_dir, result.graph, x, optimize=True)
    steps = [[float(cim_spec(r.graph, n).q.adc_step.reshape(-1)[0]) for n in r.graph.nodes if n.name in names]
             for r in (base, result) for names in [{m.name for m in base.graph.nodes if m.op in ("Conv", "Gemm")}]]
    assert steps[0] != steps[1]
