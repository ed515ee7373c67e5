"""LSQ quantizers (STE, gradient scale, init) and the segmented phase-2 conv against numpy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from cimc.errors import UsageError
from cimc.macro import MacroSpec
from cimc.mapping.tiling import segment_bounds
from cimc.ops.windows import conv2d as np_conv2d
from cimc.quant import numerics
from cimc.train.layer import CimQuantLayer, QuantConfig
from cimc.train.phase2 import ConvGeometry, SegmentPlan
from cimc.train.quant import StepQuantizer, channel_view, lsq_init, quantize_codes

pytestmark = pytest.mark.torch  # the zoo or the training hook


def test_codes_match_numerics_and_ste_zeroes_outside_range() -> None:
    x = torch.linspace(-3, 3, 121, requires_grad=True)
    step = torch.tensor([0.3])
    q = quantize_codes(x, step, 3, signed=True)
    assert np.array_equal(q.detach().numpy(), numerics.quantize(x.detach().numpy(), 0.3, 3, True))
    q.sum().backward()
    inside = (x.detach() / 0.3).abs() <= 3
    assert torch.equal(x.grad, torch.where(inside, 1 / step, torch.zeros(())))


@pytest.mark.parametrize("signed", [True, False])
def test_lsq_step_gradient(signed: bool) -> None:
    quant = StepQuantizer(4, signed)
    quant.set_step(torch.tensor([0.25]))
    x = torch.randn(500, generator=torch.Generator().manual_seed(0)) * 2
    n = x.numel()
    s = quant.scaled_step(n)
    (quantize_codes(x, s, 4, signed) * s).sum().backward()
    lo, hi = numerics.code_range(4, signed)
    v = x / s.item()
    expected = torch.where(v < lo, float(lo), torch.where(v > hi, float(hi), torch.round(v) - v)).sum()
    assert quant.log_step.grad is not None  # ∂/∂log s = s·g·∂/∂s
    assert quant.log_step.grad.item() == pytest.approx(s.item() * expected.item() / math.sqrt(n * hi), rel=1e-5)


def test_lsq_init_per_layer_and_column() -> None:
    w = torch.randn(6, 3, 3, 3, generator=torch.Generator().manual_seed(1))
    assert lsq_init(w, 4, True).item() == pytest.approx(2 * w.abs().mean().item() / math.sqrt(7), rel=1e-6)
    per_col = lsq_init(w, 4, True, channels=6)
    assert per_col.shape == (6,)
    assert per_col[2].item() == pytest.approx(2 * w[2].abs().mean().item() / math.sqrt(7), rel=1e-6)


def loop_partial_sums(a: np.ndarray, w: np.ndarray, bounds: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """Reference: one numpy conv per segment with the other rows' weights zeroed."""
    cout, cin_g, kh, kw = w.shape
    rows = np.arange(cin_g * kh * kw).reshape(cin_g, kh, kw)
    sums = []
    for lo, hi in itertools.pairwise(bounds):
        masked = np.where((rows >= lo) & (rows < hi), w, 0).astype(np.float32)
        sums.append(np_conv2d(a, masked, None, geom.strides, geom.pads, geom.dilations, geom.groups))
    p = np.stack(sums, axis=1)  # (N, S, Cout, Ho, Wo)
    n, s, _, ho, wo = p.shape
    return p.reshape(n, s, geom.groups, cout // geom.groups, ho, wo).transpose(0, 2, 1, 3, 4, 5)


CASES = [  # cin, cout, kernel, groups, wordlines, mode, strides, pads
    (40, 6, 3, 1, 256, "channel", (1, 1), (1, 1, 1, 1)),
    (64, 5, 3, 1, 256, "channel", (2, 2), (0, 1, 1, 0)),
    (40, 8, 3, 2, 90, "channel", (1, 1), (1, 1, 1, 1)),
    (13, 4, 3, 1, 50, "dense", (1, 1), (1, 1, 1, 1)),
    (5, 3, 5, 1, 10, "channel", (1, 1), (2, 2, 2, 2)),
    (30, 6, 1, 3, 4, "dense", (1, 1), (0, 0, 0, 0)),
]


@pytest.mark.parametrize("cin,cout,k,groups,wl,mode,strides,pads", CASES)
def test_segment_plan_matches_loop(cin: int, cout: int, k: int, groups: int, wl: int, mode: str,
                                   strides: tuple[int, int], pads: tuple[int, int, int, int]) -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 16, (2, cin, 7, 7)).astype(np.float32)
    w = rng.integers(-7, 8, (cout, cin // groups, k, k)).astype(np.float32)
    geom = ConvGeometry(strides, pads, (1, 1), groups)
    plan = SegmentPlan(cin // groups, (k, k), groups, wl, mode)
    assert np.array_equal(plan.bounds, segment_bounds(cin // groups, k * k, wl, mode))
    want = loop_partial_sums(a, w, plan.bounds, geom)  # (N, G, S, Cout_g, Ho, Wo)
    for method in ("conv", "bmm"):
        got = plan.partial_sums(torch.from_numpy(a), torch.from_numpy(w), geom, method).numpy()
        assert np.array_equal(got.transpose(0, 3, 4, 5, 1, 2), want), method


def numpy_phase2(x: np.ndarray, w: np.ndarray, b: np.ndarray, layer: CimQuantLayer) -> np.ndarray:
    """docs/build-format.md, 'The numerical contract' with ``cimc.quant.numerics`` (segments by an explicit loop)."""
    s_w, s_adc = layer.w.effective_step().detach().numpy(), layer.adc.effective_step().detach().numpy()
    s_a = np.float32(layer.a.effective_step().item())
    a_q = numerics.quantize(x, s_a, layer.a.bits, layer.a.signed)
    w_q = numerics.weight_codes(w, s_w, layer.w.bits)
    p = loop_partial_sums(a_q, w_q, layer.plan.bounds, layer.geom)
    n, g, s, cg, ho, wo = p.shape
    codes = numerics.adc_codes(p.transpose(0, 2, 1, 3, 4, 5).reshape(n, s, g * cg, ho, wo), s_adc,
                               layer.adc.bits, channel_axis=2)
    return numerics.layer_output(codes.sum(axis=1), numerics.output_scale(s_w, s_adc, s_a), b)


@pytest.mark.parametrize("granularity", ["layer", "column"])
@pytest.mark.parametrize("signed,groups", [(False, 1), (True, 2)])
def test_phase2_layer_is_bit_exact(granularity: str, signed: bool, groups: int) -> None:
    rng = np.random.default_rng(3)
    cin, cout = 60, 8
    geom = ConvGeometry((1, 1), (1, 1, 1, 1), (1, 1), groups)
    layer = CimQuantLayer("conv", cout, cin // groups, (3, 3), geom,
                          QuantConfig(granularity=granularity, wordlines=128), a_signed=signed)
    channels = cout if granularity == "column" else 1
    layer.w.set_step(torch.from_numpy(rng.uniform(0.02, 0.05, channels).astype(np.float32)))
    layer.a.set_step(torch.tensor([0.13]))
    layer.adc.set_step(torch.from_numpy(rng.uniform(2.0, 9.0, channels).astype(np.float32)))
    layer.freeze_for_phase("2")
    x = rng.uniform(-1 if signed else 0, 2, (3, cin, 6, 6)).astype(np.float32)
    w = rng.normal(0, 0.1, (cout, cin // groups, 3, 3)).astype(np.float32)
    b = rng.normal(0, 1, cout).astype(np.float32)
    y = layer(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), "2").detach().numpy()
    assert layer.plan.segments > 1
    assert np.array_equal(y, numpy_phase2(x, w, b, layer))


def test_phase1_is_fake_quantized_conv() -> None:
    rng = np.random.default_rng(4)
    geom = ConvGeometry((1, 1), (1, 1, 1, 1), (1, 1), 1)
    layer = CimQuantLayer("conv", 4, 6, (3, 3), geom, QuantConfig(), a_signed=False)
    layer.w.set_step(torch.tensor([0.05]))
    layer.a.set_step(torch.tensor([0.1]))
    x = torch.from_numpy(rng.uniform(0, 2, (2, 6, 5, 5)).astype(np.float32))
    w = torch.from_numpy(rng.normal(0, 0.2, (4, 6, 3, 3)).astype(np.float32))
    y = layer(x, w, None, "1")
    a_hat = numerics.quantize(x.numpy(), 0.1, 4, False) * np.float32(0.1)
    w_hat = numerics.quantize(w.numpy(), 0.05, 4, True) * np.float32(0.05)
    np.testing.assert_allclose(y.detach().numpy(), np_conv2d(a_hat, w_hat, None, (1, 1), (1, 1, 1, 1), (1, 1), 1),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("key", ["w_bits", "a_bits", "adc_bits"])
def test_for_macro_refuses_zero_bits_instead_of_taking_the_macros(key: str) -> None:
    """``None`` means the macro's bits; 0 is out of range and is refused (``or`` once turned it
    into the macro's bits without a word)."""
    macro = MacroSpec()
    assert QuantConfig.for_macro(macro, **{key: None}).bits_of("x") == QuantConfig.for_macro(macro).bits_of("x")
    with pytest.raises(UsageError, match=key):
        QuantConfig.for_macro(macro, **{key: 0})


def test_a_set_step_is_marked_initialized() -> None:
    """``set_step`` marks the quantizer initialized, so calibration keeps that step (a step
    restored from a checkpoint or chosen by hand is not overwritten)."""
    quant = StepQuantizer(4, True, 3)
    assert not bool(quant.initialized)
    quant.set_step(torch.tensor([0.5, 0.25, 2.0]))
    assert bool(quant.initialized)
    np.testing.assert_allclose(quant.effective_step().detach().numpy(), [0.5, 0.25, 2.0], rtol=1e-6)


def test_two_channel_steps_are_per_channel() -> None:
    """Two channels (the smallest per-column case): ``lsq_init`` gives each its own step and
    ``channel_view`` lays the two along the asked axis."""
    x = torch.tensor([[1.0, -1.0], [4.0, -4.0]])  # channel 0: mean |x| 1, channel 1: 4
    qp = numerics.signed_max(4)
    np.testing.assert_allclose(lsq_init(x, 4, True, channels=2).numpy(), [2 / math.sqrt(qp), 8 / math.sqrt(qp)],
                               rtol=1e-6)
    view = channel_view(torch.tensor([2.0, 3.0]), 4, 1)
    assert view.shape == (1, 2, 1, 1) and view.flatten().tolist() == [2.0, 3.0]
