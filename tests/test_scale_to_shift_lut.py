"""scale-to-shift's ``"lut"`` fold: a layer read only by an activation (elementwise ops computing
one function of its output alone, one of them not homogeneous: Sigmoid, SiLU as
``Mul(y, Sigmoid(y))``) outputs ``gain·y`` and a ``Mul(·, fl32(r))`` (``ActivationScale``) is put
before the activation, its lookup table's input scale. Where the remainder may go that way
(``lut_readers``), that the three engines agree bit for bit, that the float model of the loss
report skips the Mul, and that the shifted model is then closer to the exact scales than with
the ADC fold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cimc.ir.annotations import ActivationScale, Shift
from cimc.ir.graph import Graph
from cimc.passes import scale_to_shift
from cimc.passes.scale_to_shift import lut_readers, sqnr_db
from cimc.quant.loss import layer_losses
from cimc.quant.reference import run_compiled
from tests.cim_helpers import add_node, assert_three_way, compile_ir, write
from tests.ir_builders import add_unary
from tests.shift_builders import Between, shifted, two_conv_cnn

pytestmark = pytest.mark.torch  # the compile helpers import the zoo

SHAPE = (1, 8, 8, 8)


def _silu(g: Graph, y: str) -> str:
    return add_node(g, "Mul", [y, add_unary(g, "Sigmoid", y, "sig")], SHAPE, "silu")


def _scalar(g: Graph) -> str:
    g.set_initializer("half", np.array(0.5, np.float32))
    return "half"


def _channel_constant(g: Graph) -> str:
    g.set_initializer("k", np.full((1, 8, 1, 1), 0.5, np.float32))
    return "k"


def _pooled(g: Graph, y: str) -> str:
    return add_node(g, "MaxPool", [y], SHAPE, "mp", kernel_shape=[1, 1], strides=[1, 1], pads=[0, 0, 0, 0],
                    dilations=[1, 1], ceil_mode=0)


TABLES: dict[str, Between] = {
    "sigmoid": lambda g, y: add_unary(g, "Sigmoid", y, "sig"),
    "silu": _silu,
    "relu_silu": lambda g, y: _silu(g, add_unary(g, "Relu", y, "r1")),
    "tanh_times_scalar": lambda g, y: add_node(g, "Mul", [add_unary(g, "Tanh", y, "t"), _scalar(g)], SHAPE, "m"),
    "sigmoid_of_scalar_times": lambda g, y: add_unary(g, "Sigmoid", add_node(g, "Mul", [y, _scalar(g)], SHAPE, "m"),
                                                      "sig"),
}
NOT_TABLES: dict[str, Between] = {
    "square": lambda g, y: add_node(g, "Mul", [y, y], SHAPE, "m"),  # no one-input non-linearity
    "clip": lambda g, y: add_unary(g, "Clip", y, "clip", min=0.0, max=6.0),  # bounds take a scale: no table
    "per_channel_constant": lambda g, y: add_unary(g, "Sigmoid", add_node(g, "Mul", [y, _channel_constant(g)], SHAPE,
                                                                             "m"), "sig"),
    "also_pooled": lambda g, y: add_node(  # y is also read by a pool: that reader sees the code
        g, "Add", [add_unary(g, "Sigmoid", y, "sig"), _pooled(g, y)], SHAPE, "a"),
}


def _cnn(act: Between, also_output: bool = False) -> Graph:
    """conv c1 → ``act`` → conv c2 → relu → GAP → flatten → gemm (``also_output``: c1's output is a
    graph output too)."""
    def between(g: Graph, y: str) -> str:
        if also_output:
            g.outputs.append(y)
        return act(g, y)

    return two_conv_cnn(between, seed=5)


def _inputs() -> np.ndarray:
    return np.random.default_rng(8).standard_normal((6, 3, 8, 8)).astype(np.float32)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_an_activation_of_the_output_alone_takes_the_remainder(name: str) -> None:
    graph, _ = compile_ir(_cnn(TABLES[name]), shift=False)
    readers = lut_readers(graph, graph.node("c1"))
    first = {"sigmoid": ["sig"], "silu": ["sig", "silu"], "relu_silu": ["r1"], "tanh_times_scalar": ["t"],
             "sigmoid_of_scalar_times": ["m"]}[name]
    assert readers is not None and sorted(r.name for r in readers) == first


@pytest.mark.parametrize("name", sorted(NOT_TABLES))
def test_anything_else_reading_the_output_blocks_the_table(name: str) -> None:
    graph, _ = compile_ir(_cnn(NOT_TABLES[name]), shift=False)
    assert lut_readers(graph, graph.node("c1")) is None


def test_a_graph_output_blocks_the_table() -> None:
    graph, _ = compile_ir(_cnn(_silu, also_output=True), shift=False)
    assert lut_readers(graph, graph.node("c1")) is None


def test_the_lut_fold_puts_the_remainder_before_the_activation() -> None:
    """c1's output is ``gain·y``; one Mul by ``fl32(1/gain)`` feeds both halves of the SiLU."""
    graph, ctx = compile_ir(_cnn(_silu), shift=False)
    out = shifted(graph, ctx)
    shift = out.node("c1").ann[Shift]
    assert shift.fold == "lut" and shift.gain != 1.0
    r = shift.exact_scale[0] / np.float32(2.0 ** -int(shift.k[0]))
    assert shift.gain == pytest.approx(1.0 / r, rel=1e-6)
    (mul,) = out.consumers(out.node("c1").outputs[0])
    factor = out.initializers[mul.inputs[1]]
    assert mul.op == "Mul" and factor.size == 1 and mul.ann[ActivationScale].factor == factor.item()
    assert factor.item() == float(np.float32(1.0 / shift.gain))
    assert sorted(n.name for n in out.consumers(mul.outputs[0])) == ["sig", "silu"]
    assert out.node("c2").ann[Shift].fold == "activation"  # c2 → relu → GAP → fc as before


@pytest.mark.parametrize("granularity", ["layer", "column"])
def test_the_lut_fold_is_bit_exact_three_ways(tmp_path: Path, granularity: str) -> None:
    graph, ctx = compile_ir(_cnn(_silu), granularity=granularity)
    folds = {"layer": "lut", "column": "adc"}  # one table for the layer: a per-column scale has none
    assert graph.node("c1").ann[Shift].fold == folds[granularity]
    assert_three_way(write(graph, ctx, tmp_path / "build"), graph, _inputs())


def test_the_lut_fold_is_closer_to_the_exact_scales_than_the_adc_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SiLU's output against the unshifted model's: the table keeps it up to float rounding,
    the ADC fold (the behaviour before the table) changes c1's ADC step and so its codes."""
    graph, ctx = compile_ir(_cnn(_silu), shift=False)
    feeds, silu = {graph.inputs[0]: _inputs()}, graph.node("silu").outputs

    def act(g: Graph) -> np.ndarray:
        return run_compiled(g, feeds, keep=silu).outputs[silu[0]]

    exact, table = act(graph), act(shifted(graph, ctx))
    monkeypatch.setattr(scale_to_shift, "lut_readers", lambda graph, node: None)
    adc = shifted(graph, ctx)
    assert adc.node("c1").ann[Shift].fold == "adc"
    assert sqnr_db(exact, table) > 100 > 40 > sqnr_db(exact, act(adc))


def test_layer_losses_skip_the_activation_scale_in_the_float_model() -> None:
    """The float model has no Mul by ``r``: c2's float input is SiLU(y), so c2's SQNRs, end to end
    and alone, are those without the shift (c1's table keeps c2's compiled input), not those
    against a float input off by ``r``."""
    graph, ctx = compile_ir(_cnn(_silu), shift=False)
    out = shifted(graph, ctx)
    x = _inputs()
    before = {loss.name: loss for loss in layer_losses(graph, x)}
    after = {loss.name: loss for loss in layer_losses(out, x)}
    for figure in ("sqnr_db", "local_sqnr_db"):
        assert getattr(after["c2"], figure) == pytest.approx(getattr(before["c2"], figure), abs=0.01)
    assert after["c1"].sources_db["shift"] is not None and after["c1"].sources_db["shift"] > 60


@pytest.mark.parametrize("weight_gain", [2.0 ** 6, 2.0 ** -6])
def test_the_lut_remainder_is_the_exact_scale_over_the_shift(weight_gain: float) -> None:
    """With c1's weights scaled so that its shift ``k`` is far from 0, the table's input scale
    is ``r = s / 2^−k`` (not ``s·2^−k``: the two agree only at ``k = 0``) and the layer's gain
    ``1/r``, so ``gain·s = 2^−k``, the shifter's scale."""
    cnn = _cnn(_silu)
    weight, bias = cnn.node("c1").inputs[1:3]
    for name in (weight, bias):
        cnn.set_initializer(name, (cnn.initializers[name] * np.float32(weight_gain)).astype(np.float32))
    graph, ctx = compile_ir(cnn, shift=False)
    shift = shifted(graph, ctx).node("c1").ann[Shift]
    k = int(shift.k[0])
    assert shift.fold == "lut" and abs(k) >= 3
    assert shift.gain * shift.exact_scale[0] == pytest.approx(2.0 ** -k, rel=1e-6)
