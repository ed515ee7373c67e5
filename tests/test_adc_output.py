"""``--adc-step output`` (``cimc.quant.adc_output``): the ADC step of least error of the layer's
output after its activation. The activation's range is read from the graph (Relu, Clip,
equalize's ``Mul → Clip``), the float output is the float conv, the chosen factor is the least
of the scored ones and never worse than the MSE step, the activation's range changes the choice
where it should, and the option reaches quantize, the manifest (only when set) and a build that
stays bit-exact."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest

import cimc.models as models
from cimc.api import CompileOptions, compile_model
from cimc.ir.annotations import QuantParams
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.ir.tensor import TensorInfo
from cimc.passes.quantize import Quantize, calibrate_layer
from cimc.quant import adc_output as ao
from cimc.quant.cim_layer import CimSpec, cim_spec
from tests.cim_helpers import SMALL, add_gemm, add_node, assert_three_way, zoo_onnx
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


def test_the_factors_are_the_eighth_powers_of_two_within_root_two_one_first() -> None:
    want = [2.0 ** (j / 8) for j in (0, -4, -3, -2, -1, 1, 2, 3, 4)]
    np.testing.assert_allclose(ao.FACTORS, want, rtol=1e-15)
    assert ao.FACTORS[0] == 1.0


def _bounds(g: Graph, node: str) -> tuple[list[float], list[float]]:
    lo, hi = ao.output_bounds(g, g.node(node))
    return lo.tolist(), hi.tolist()


def test_the_channel_count_is_the_conv_outputs_second_axis() -> None:
    """A conv output ``(1, 4, 5, 6)``: ``Cout`` = 4 (not H = 5 or W = 6)."""
    g = graph_with_input((1, 3, 5, 6))
    g.outputs.append(add_unary(g, "Relu", add_conv(g, "x", 4, 1, rng=np.random.default_rng(0), name="c"), "r"))
    assert _bounds(g, "c") == ([0.0] * 4, [INF] * 4)


def _gemm_then(factor: np.ndarray | None, acts: list[tuple[str, dict[str, float]]]) -> Graph:
    """A Gemm 3→4 on 5 rows (output ``(5, 4)``), then ``Mul(·, factor)`` if given, then each of
    ``acts`` reading that (one reader each)."""
    g = graph_with_input((5, 3))
    y = add_gemm(g, "x", 4, np.random.default_rng(0), "fc")
    if factor is not None:
        g.set_initializer("s", factor.astype(np.float32))
        y = add_node(g, "Mul", [y, "s"], (5, 4), "mul")
    for i, (op, attrs) in enumerate(acts):
        g.outputs.append(add_unary(g, op, y, f"a{i}", **attrs))
    return g


CLIP = ("Clip", {"min": -1.0, "max": 6.0})


@pytest.mark.parametrize(("factor", "acts", "lo", "hi"), [
    (None, [("Relu", {})], [0.0] * 4, [INF] * 4),
    (None, [CLIP], [-1.0] * 4, [6.0] * 4),
    (np.array([1.0, 2.0, 4.0, 0.5]), [CLIP], [-1.0, -0.5, -0.25, -2.0], [6.0, 3.0, 1.5, 12.0]),
    (np.array([[1.0, 2.0, 4.0, 0.5]]), [CLIP], [-1.0, -0.5, -0.25, -2.0], [6.0, 3.0, 1.5, 12.0]),
    (np.array(2.0), [CLIP], [-0.5] * 4, [3.0] * 4),  # a scalar factor
    (np.array([1.0, 0.0, 1.0, 1.0]), [CLIP], [-INF] * 4, [INF] * 4),  # k > 0 only
    (np.array([1.0, -0.5, 1.0, 1.0]), [CLIP], [-INF] * 4, [INF] * 4),
    (np.array([1.0, 2.0]), [CLIP], [-INF] * 4, [INF] * 4),  # neither one factor nor one per channel
    (np.array([1.0, 2.0, 4.0, 0.5]), [("Relu", {})], [-INF] * 4, [INF] * 4),  # only Mul → Clip
    (np.array([1.0, 2.0, 4.0, 0.5]), [CLIP, CLIP], [-INF] * 4, [INF] * 4)])  # the Mul read twice
def test_the_range_of_a_gemm_layer(factor: np.ndarray | None, acts: list[tuple[str, dict[str, float]]],
                                   lo: list[float], hi: list[float]) -> None:
    """A 2-D output ``(N, Cout)`` with ``N ≠ Cout``: ``Cout`` is its last axis; the Mul's factor
    divides both bounds, is accepted only when positive, scalar or per channel, read by one Clip."""
    assert _bounds(_gemm_then(factor, acts), "fc") == (lo, hi)


def test_a_constant_times_the_output_is_not_read_as_the_layers_scale() -> None:
    """``Mul(k, y)`` (the constant first) is not equalize's form: the whole line."""
    g = _gemm_then(None, [])
    g.set_initializer("s", np.full(4, 2.0, np.float32))
    g.outputs.append(add_unary(g, "Clip", add_node(g, "Mul", ["s", "fc.y"], (5, 4), "mul"), "k", min=0.0, max=6.0))
    assert _bounds(g, "fc") == ([-INF] * 4, [INF] * 4)


def test_centring_removes_each_channels_mean_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiled gemm output off by ``+1`` in every element: ``E`` is 0 centred, ``M·Cout`` raw."""
    want = np.arange(12.0).reshape(4, 3)
    monkeypatch.setattr(ao, "run_layer", lambda x, spec: SimpleNamespace(outputs=(want + 1.0).astype(np.float32)))
    spec = cast(CimSpec, SimpleNamespace(kind="gemm", cout=3))
    line = (np.full(3, -INF), np.full(3, INF))
    assert ao.output_error(spec, np.zeros(1), want, line, centred=True) == 0.0
    assert ao.output_error(spec, np.zeros(1), want, line, centred=False) == 12.0


@dataclass(frozen=True)
class _Spec:
    """The part of a ``CimSpec`` that ``output_adc_step`` reads (``quant``, ``q``)."""

    quant: QuantParams

    @property
    def q(self) -> QuantParams:
        return self.quant


def _scored(monkeypatch: pytest.MonkeyPatch, adc_step: list[float], error: Callable[[np.ndarray], float]
            ) -> tuple[list[float], QuantParams]:
    """``output_adc_step`` on a layer of ADC step ``adc_step`` whose ``E`` is ``error(step)``: the
    factors scored (of the first column, in order) and the chosen parameters."""
    steps: list[float] = []

    def fake_error(spec: CimSpec, *_: object) -> float:
        steps.append(float(spec.q.adc_step[0] / np.float32(adc_step[0])))
        return error(spec.q.adc_step)

    monkeypatch.setattr(ao, "float_output", lambda spec, x: np.zeros((1, 1)))
    monkeypatch.setattr(ao, "output_error", fake_error)
    step = np.array(adc_step, np.float32)
    q = QuantParams(4, 4, 3, np.ones(len(adc_step), np.float32), 1.0, step)
    spec = cast(CimSpec, _Spec(q))
    line = (np.full(1, -INF), np.full(1, INF))
    return steps, ao.output_adc_step(spec, spec, np.zeros(1), line, centred=True)


@pytest.mark.parametrize(("adc_step", "count"), [([2.0], 9), ([1.2], 7), ([1.0], 5), ([0.5], 5), ([0.5, 4.0], 5)])
def test_steps_finer_than_one_are_not_scored_unless_the_mse_step_was(
        monkeypatch: pytest.MonkeyPatch, adc_step: list[float], count: int) -> None:
    """The factors are scored in ``FACTORS`` order, skipping those whose least step falls below
    ``min(1, S_ADC)`` (1.2: ``2^(−3/8)·1.2 < 1 ≤ 2^(−2/8)·1.2``; 1 and 0.5: none finer)."""
    steps, _ = _scored(monkeypatch, adc_step, lambda step: 0.0)
    kept = [ao.FACTORS[0], *(f for f in ao.FACTORS[1:] if f * min(adc_step) >= min(1.0, min(adc_step)))]
    np.testing.assert_allclose(steps, kept, rtol=1e-6)
    assert len(steps) == count


def test_a_tie_keeps_the_first_scored_and_the_step_is_read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Equal errors everywhere: the MSE step (factor 1, scored first) is kept; the least error
    wins otherwise; the chosen step cannot be written (like every ``QuantParams`` array)."""
    _, same = _scored(monkeypatch, [2.0], lambda step: 1.0)
    assert same.adc_step.tolist() == [2.0] and not same.adc_step.flags.writeable
    _, finest = _scored(monkeypatch, [2.0], lambda step: float(step[0]))
    assert finest.adc_step[0] == np.float32(2.0 * 2 ** -0.5) and not finest.adc_step.flags.writeable
