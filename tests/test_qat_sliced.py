"""QAT with per-layer bits and bit-slicing: torch digits equal ``cimc.quant.slicing.digits``; the
phase-2 forward of sliced layers (per-kind ADC steps ``S_ADC·2^−m``) equals
``cimc.quant.reference.run_compiled`` on the exported, compiled graph bit for bit (``P`` and
``y``); sliced calibration gives the compile path's ``(S_ADC, m)`` on the same partial sums;
per-layer bits reach the compiler's ``QuantParams``; sliced phase 2 trains; ``finetune``."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from cimc.api import CompileOptions, compile_graph
from cimc.errors import UnsupportedError, UsageError
from cimc.ir.annotations import QuantParams
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.passes.manager import PassContext, run_passes
from cimc.passes.quantize import Quantize, adc_steps
from cimc.passes.select_cim import SelectCim
from cimc.passes.tile_wordlines import TileWordlines
from cimc.quant import slicing
from cimc.quant.calibration import MAX_PIXELS, partial_sums
from cimc.quant.cim_layer import cim_spec
from cimc.quant.reference import run_compiled
from cimc.train import (
    QuantConfig,
    export_graph,
    finetune,
    load_train_data,
    module_from_graph,
    prepare_phase,
    train_steps,
)
from cimc.train.calibrate import conversions, init_adc_steps, record
from cimc.train.layer import CimQuantLayer
from cimc.train.module import IRModule
from cimc.train.phase2 import ConvGeometry
from cimc.train.sliced import digits, max_shift
from tests.train_helpers import trained_module, zoo_graph

pytestmark = pytest.mark.torch  # the zoo or the training hook


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Small tensors: one intra-op thread (oversubscribed CPUs make torch's pool crawl)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


M44 = MacroSpec(name="m44", wordlines=64, bitlines=64, adcs=16, adc_bits=7, load_cycles=64)
M21 = MacroSpec(name="m21", wordlines=32, bitlines=64, cell_bits=2, dac_bits=1, adcs=16, adc_bits=6,
                load_cycles=64)


@pytest.mark.parametrize("bits,width,signed", [(8, 4, True), (8, 4, False), (5, 2, True), (3, 1, False),
                                               (7, 3, True), (4, 4, True)])
def test_torch_digits_equal_numpy(bits: int, width: int, signed: bool) -> None:
    lo, hi = (-(1 << (bits - 1)) + 1, (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    q = torch.arange(lo, hi + 1, dtype=torch.float32).reshape(1, -1).requires_grad_()
    got = digits(q, bits, width, signed)
    assert np.array_equal(got.detach().numpy(), slicing.digits(q.detach().numpy(), bits, width, signed))
    # straight-through: the recombined value has gradient 1 per code
    (got * torch.from_numpy(slicing.digit_weights(bits, width)).reshape(-1, 1, 1)).sum().backward()
    assert q.grad is not None and torch.allclose(q.grad, torch.ones_like(q))


def _compiled(module: IRModule, macro: MacroSpec, config: QuantConfig) -> Graph:
    """The exported QAT graph through select-cim, tile-wordlines and quantize (QAT steps)."""
    passes = [SelectCim(map_fc=config.map_fc), TileWordlines(mode=config.tiling), Quantize()]
    return run_passes(export_graph(module), passes, PassContext(macro=macro))


def _torch_sums(module: IRModule, x: torch.Tensor) -> dict[str, np.ndarray]:
    seen: dict[str, np.ndarray] = {}
    module.capture = lambda name, layer, xi, w: seen.__setitem__(name, layer.accumulated_sums(xi, w).numpy())
    try:
        with torch.no_grad():
            module(x)
    finally:
        module.capture = None
    return seen


CASES = [
    ("digits_cnn", M44, {"w_bits": 8, "a_bits": 8, "adc_bits": 7}, {}),
    ("digits_cnn", M21, {"w_bits": 4, "a_bits": 3, "adc_bits": 5, "granularity": "column", "map_fc": True}, {}),
    ("tiny_residual", M44, {"tiling": "dense", "adc_bits": 6},
     {"node_conv2d": {"w_bits": 8, "a_bits": 8}, "node_conv2d_1": {"w_bits": 6},
      "node_conv2d_2": {"a_bits": 7, "adc_bits": 5}}),
]


@pytest.mark.parametrize("name,macro,options,per_layer", CASES)
def test_sliced_phase2_equals_reference(name: str, macro: MacroSpec, options: dict, per_layer: dict) -> None:
    config = QuantConfig.for_macro(macro, layer_bits=per_layer, **options)
    module = trained_module(name, config)
    layers = module.cim_layers()
    assert any(layer.bits.sliced for layer in layers.values())
    compiled = _compiled(module, macro, config)
    x = torch.rand(12, *compiled.shape(compiled.inputs[0])[1:], generator=torch.Generator().manual_seed(7))
    ref = run_compiled(compiled, {compiled.inputs[0]: x.numpy()}, record=True)
    sums = _torch_sums(module, x)
    with torch.no_grad():
        ours = module.run(x)
    assert sorted(ref.traces) == sorted(layers)
    shifted = 0
    for layer, trace in ref.traces.items():
        q = compiled.node(layer).ann[QuantParams]
        bits = layers[layer].bits
        assert (q.w_slices, q.a_slices) == (bits.w_slices, bits.a_slices), layer
        shift = layers[layer].adc_shift
        assert (q.adc_shift is None) == (shift is None or not bits.sliced), layer
        if q.adc_shift is not None and shift is not None:
            assert np.array_equal(q.adc_shift, shift.numpy()), layer
            shifted += int(q.adc_shift.max() > 0)
        p = sums[layer] if sums[layer].shape == trace.sums.shape else sums[layer].reshape(trace.sums.shape)
        assert np.array_equal(p, trace.sums), layer
        assert np.array_equal(ours[compiled.node(layer).outputs[0]].numpy(), trace.outputs), layer
    out = compiled.outputs[0]
    np.testing.assert_allclose(ours[out].numpy(), ref.outputs[out], rtol=1e-5, atol=1e-6)
    assert shifted > 0  # some kinds of conversion really have their own ADC step


@pytest.mark.parametrize("macro,options", [(M44, {"w_bits": 8, "a_bits": 8, "adc_bits": 7}),
                                           (M21, {"w_bits": 4, "a_bits": 3, "adc_bits": 5, "granularity": "column"}),
                                           (M44, {"w_bits": 4, "a_bits": 4, "adc_bits": 5}),
                                           (M44, {"w_bits": 3, "a_bits": 4, "adc_bits": 4, "granularity": "column"})],
                         ids=["sliced", "sliced-column", "unsliced", "unsliced-column"])
def test_adc_calibration_equals_compile_path(macro: MacroSpec, options: dict) -> None:
    """The torch conversion sums equal ``cimc.quant.calibration.partial_sums`` and the calibrated
    ``(S_ADC, m)`` equal ``cimc.passes.quantize.adc_steps`` on them — sliced or not (the unsliced
    QAT search was once its own 64-candidate grid)."""
    config = QuantConfig.for_macro(macro, **options)
    module = trained_module("digits_cnn", config, steps=1)
    compiled = _compiled(module, macro, config)
    batch = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    init_adc_steps(module, batch, force=True)
    for name, (x, w) in record(module, batch, "1").items():
        layer = module.cim_layers()[name]
        ours = layer.partial_sums(x, w)
        ours = (ours if layer.bits.sliced else conversions(ours)).numpy()
        want = partial_sums(cim_spec(compiled, compiled.node(name)), x.numpy().reshape(-1, *x.shape[1:]),
                            layer.w.effective_step().detach().numpy(), layer.w.bits,
                            float(layer.a.effective_step()), layer.a.bits, layer.a.signed,
                            cell_bits=macro.cell_bits, dac_bits=macro.dac_bits)
        assert np.array_equal(ours.reshape(want.shape), want), name
        step, shift = adc_steps(want, layer.adc.bits, layer.bits.a_slices * layer.bits.w_slices,
                                layer.adc.channels > 1)
        if not layer.bits.sliced:
            assert shift is None and layer.adc_shift is None, name
        else:
            assert shift is not None and shift.max() <= max_shift(layer.bits, layer.plan), name
            assert layer.adc_shift is not None and np.array_equal(layer.adc_shift.numpy(), shift), name
        np.testing.assert_allclose(layer.adc.effective_step().detach().numpy(), step, rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("granularity,bits", [("layer", 4), ("column", 4), ("layer", 8)],
                         ids=["unsliced", "unsliced-column", "sliced"])
def test_adc_calibration_samples_the_compile_paths_pixels(granularity: str, bits: int) -> None:
    """Over ``MAX_PIXELS`` output pixels both paths calibrate on the same seeded random subset
    (``step_search.subsample``), so QAT's ``S_ADC`` (and ``m``) is the compile path's on the
    same batch. QAT once took evenly spaced pixels (the compile path's old rule): other sums,
    other steps."""
    config = QuantConfig.for_macro(M44, w_bits=bits, a_bits=bits, adc_bits=4, granularity=granularity)
    module = trained_module("digits_cnn", config, steps=1)
    compiled = _compiled(module, M44, config)
    batch = torch.rand(48, 1, 8, 8, generator=torch.Generator().manual_seed(3))  # 48·64 = 3,072 pixels
    init_adc_steps(module, batch, force=True)
    checked = 0
    for name, (x, w) in record(module, batch, "1").items():
        layer = module.cim_layers()[name]
        ours = layer.partial_sums(x, w)
        if (ours if layer.bits.sliced else conversions(ours)).shape[0] <= MAX_PIXELS:
            continue
        want = partial_sums(cim_spec(compiled, compiled.node(name)), x.numpy(),
                            layer.w.effective_step().detach().numpy(), layer.w.bits,
                            float(layer.a.effective_step()), layer.a.bits, layer.a.signed,
                            cell_bits=M44.cell_bits, dac_bits=M44.dac_bits)
        kinds = layer.bits.a_slices * layer.bits.w_slices
        step, shift = adc_steps(want, layer.adc.bits, kinds, layer.adc.channels > 1)
        if shift is not None:
            shift = np.minimum(shift, max_shift(layer.bits, layer.plan))
            assert layer.adc_shift is not None and np.array_equal(layer.adc_shift.numpy(), shift), name
        np.testing.assert_allclose(layer.adc.effective_step().detach().numpy(), step, rtol=1e-6, err_msg=name)
        checked += 1
    assert checked >= 1


def test_per_layer_bits_reach_compile() -> None:
    per_layer = {"node_conv2d": {"w_bits": 8, "a_bits": 8}, "node_conv2d_2": {"w_bits": 6, "adc_bits": 5}}
    config = QuantConfig.for_macro(M44, adc_bits=6, layer_bits=per_layer, tiling="dense")
    module = trained_module("tiny_residual", config, steps=1)
    # no bits asked at compile: the QAT metadata decides every layer's bits (asked bits that differ
    # re-quantize those layers: tests/test_quantize.py::test_bits_asked_after_qat_requantize_…)
    options = CompileOptions(macro=M44, tiling="dense", no_shift=True)
    graph, _ = compile_graph(export_graph(module), options)
    for name, layer in module.cim_layers().items():
        q = graph.node(name).ann[QuantParams]
        want = config.bits_of(name)
        assert (q.w_bits, q.a_bits, q.adc_bits) == (want.w_bits, want.a_bits, want.adc_bits), name
        assert (q.w_bits, q.a_bits, q.adc_bits) == (layer.w.bits, layer.a.bits, layer.adc.bits), name
        assert (q.cell_bits, q.dac_bits, q.source) == (M44.cell_bits, M44.dac_bits, "qat")
    assert graph.node("node_conv2d").ann[QuantParams].w_slices == 2
    assert graph.node("node_conv2d_1").ann[QuantParams].w_slices == 1


def test_slice_gradient_equals_unsliced_without_adc_loss() -> None:
    """ADC step 1 and no clipping: sliced phase 2 is the unsliced conv, gradients included."""
    rng = np.random.default_rng(1)
    geom = ConvGeometry((1, 1), (1, 1, 1, 1), (1, 1), 1)
    x0 = torch.from_numpy(rng.uniform(0, 2, (2, 6, 5, 5)).astype(np.float32))
    w0 = torch.from_numpy(rng.normal(0, 0.2, (4, 6, 3, 3)).astype(np.float32))
    grads = []
    for cell in (4, None):
        layer = CimQuantLayer("c", 4, 6, (3, 3), geom, QuantConfig(w_bits=8, a_bits=8, adc_bits=16, cell_bits=cell,
                                                                  dac_bits=cell), a_signed=False)
        layer.w.set_step(torch.tensor([0.02]))  # |codes| ≤ 50 (two weight digits), |p| < 2^15: no clipping
        layer.a.set_step(torch.tensor([0.08]))  # codes ≤ 25 (two input digits)
        layer.adc.set_step(torch.tensor([1.0]))
        layer.freeze_for_phase("2")
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        y = layer(x, w, None, "2")
        (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        grads.append((y.detach(), x.grad, w.grad))
    assert layer.bits.sliced is False
    for a, b in zip(grads[0], grads[1], strict=True):
        assert a is not None and b is not None
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_sliced_phase2_training_reduces_loss() -> None:
    graph = zoo_graph("digits_cnn")
    config = QuantConfig.for_macro(M21, w_bits=4, a_bits=3, adc_bits=4)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 1, 8, 8, generator=gen), torch.randint(0, 10, (32,), generator=gen)
    module = module_from_graph(graph, config, nonnegative_inputs=frozenset(graph.inputs))
    prepare_phase(module, "1", x)
    prepare_phase(module, "2", x)
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(module.train()(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(layer.bits.sliced for layer in module.cim_layers().values())
    assert losses[-1] < losses[0] - 0.1 and sum(b < a for a, b in itertools.pairwise(losses)) >= 10, losses


def test_bits_are_checked() -> None:
    graph = zoo_graph("digits_cnn")
    with pytest.raises(UsageError, match="not CIM layers"):
        module_from_graph(graph, QuantConfig(layer_bits={"nope": {"w_bits": 4}}))
    with pytest.raises(UsageError, match="ADCs have 7 bits"):
        QuantConfig.for_macro(M44, layer_bits={"node_conv2d": {"adc_bits": 8}})
    with pytest.raises(UsageError, match=r"w_bits = 1 must be an integer in 2\.\.16"):
        QuantConfig(layer_bits={"node_conv2d": {"w_bits": 1}})
    with pytest.raises(UnsupportedError, match="2\\^24"):
        module_from_graph(graph, QuantConfig(w_bits=16, a_bits=16, cell_bits=None, dac_bits=None))


def test_finetune_api(tmp_path: Path) -> None:
    data = load_train_data("digits", batch_size=64)
    float_model = module_from_graph(zoo_graph("digits_cnn"))
    train_steps(float_model, data, 60, lr=1e-2)  # a trained float model to start from
    graph = float_model.to_graph()
    bits = {"node_conv2d": (8, 8, 5), "node_conv2d_1": (4, 4, 4)}  # the first layer sliced
    out, accuracy = finetune(graph, bits, MacroSpec(), data, steps=40)
    assert accuracy > 0.9  # measured 0.994 (float 0.997; 0.82 with one ADC step for all slices)
    compiled, _ = compile_graph(out, CompileOptions(no_shift=True))
    q = {n.name: n.ann[QuantParams] for n in compiled.nodes if QuantParams in n.ann}
    first, second, third = q["node_conv2d"], q["node_conv2d_1"], q["node_conv2d_2"]
    assert (first.w_bits, first.a_bits, first.adc_bits, first.w_slices, first.a_slices) == (8, 8, 5, 2, 2)
    assert (second.w_bits, second.adc_bits) == (4, 4) and (third.w_bits, third.adc_bits) == (4, 5)


def test_step_exponents_of_an_unsliced_layer_are_refused() -> None:
    """``set_adc_shift`` on a layer without bit slicing (no ``adc_shift`` buffer) names the layer."""
    geom = ConvGeometry((1, 1), (1, 1, 1, 1), (1, 1), 1)
    layer = CimQuantLayer("conv", 4, 3, (3, 3), geom, QuantConfig(), a_signed=False)
    with pytest.raises(ValueError, match="layer 'conv' is not bit-sliced"):
        layer.set_adc_shift(torch.zeros(1, dtype=torch.int64))


def test_sliced_phase_two_runs_a_batch_of_one() -> None:
    """The ADC step's gradient scale counts the conversions of one example (``p[:, 0]``), which
    a batch of one has too; its output is the first row of a batch that starts with it."""
    rng = np.random.default_rng(2)
    geom = ConvGeometry((1, 1), (1, 1, 1, 1), (1, 1), 1)
    config = QuantConfig(w_bits=8, a_bits=8, cell_bits=4, dac_bits=4)
    layer = CimQuantLayer("c", 4, 6, (3, 3), geom, config, a_signed=False)
    layer.w.set_step(torch.tensor([0.02]))
    layer.a.set_step(torch.tensor([0.08]))
    layer.adc.set_step(torch.tensor([4.0]))
    layer.freeze_for_phase("2")
    assert layer.bits.sliced
    x = torch.from_numpy(rng.uniform(0, 2, (2, 6, 5, 5)).astype(np.float32))
    w = torch.from_numpy(rng.normal(0, 0.2, (4, 6, 3, 3)).astype(np.float32))
    torch.testing.assert_close(layer(x[:1], w, None, "2"), layer(x, w, None, "2")[:1], rtol=0, atol=0)


def test_sliced_per_column_adc_step_counts_one_columns_conversions() -> None:
    """LSQ's gradient scale of a per-column ``S_ADC`` of a sliced layer counts the conversions of
    one column for one example, ``T·Ho·Wo·Seg·S`` (the unsliced count:
    ``test_train_step_grad.py::test_per_column_learned_adc_steps_get_lsq_gradients_per_column``)."""
    geom = ConvGeometry((1, 1), (1, 1, 1, 1), (1, 1), 1)
    config = QuantConfig(w_bits=8, a_bits=8, cell_bits=4, dac_bits=4, granularity="column", learn_adc_step=True)
    layer = CimQuantLayer("c", 4, 6, (3, 3), geom, config, a_signed=False)
    layer.w.set_step(torch.full((4,), 0.02))
    layer.a.set_step(torch.tensor([0.08]))
    layer.adc.set_step(torch.full((4,), 4.0))
    layer.freeze_for_phase("2")
    counts: list[int] = []
    scaled = layer.adc.scaled_step

    def spy(per_step_elements: int) -> torch.Tensor:
        counts.append(per_step_elements)
        return scaled(per_step_elements)

    layer.adc.scaled_step = spy  # type: ignore[method-assign]
    x = torch.from_numpy(np.random.default_rng(3).uniform(0, 2, (2, 6, 5, 5)).astype(np.float32))
    layer(x, torch.full((4, 6, 3, 3), 0.1), None, "2")
    assert layer.bits.sliced and counts == [2 * 5 * 5 * layer.plan.segments * 2]
