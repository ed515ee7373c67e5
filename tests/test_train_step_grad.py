"""LSQ's gradient scale ``g = 1/√(N·Qp)`` of every trained step, with ``N`` the elements each
step serves: a quantizer's edge cases (one element, none) and a CIM layer's input, weight and
ADC steps, per layer and per column (``cimc.train.quant``, ``cimc.train.layer``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cimc.train.layer import CimQuantLayer, QuantConfig
from cimc.train.phase2 import ConvGeometry
from cimc.train.quant import StepQuantizer

pytestmark = pytest.mark.torch


def test_gradient_scale_of_a_one_element_step_is_one_over_sqrt_qp() -> None:
    """``N = 1`` (one weight per column): ``∂ scaled/∂ log s = s·g`` with ``g = 1/√Qp``."""
    quant = StepQuantizer(4, True)
    quant.set_step(torch.tensor([0.5]))
    quant.scaled_step(1).sum().backward()
    assert quant.log_step.grad is not None
    assert quant.log_step.grad.item() == pytest.approx(0.5 / math.sqrt(quant.qp), rel=1e-6)


def test_gradient_scale_of_an_empty_step_is_finite() -> None:
    """``N = 0`` (an empty batch) counts as one element instead of dividing by zero."""
    quant = StepQuantizer(4, True)
    quant.set_step(torch.tensor([0.5]))
    quant.scaled_step(0).sum().backward()
    assert quant.log_step.grad is not None
    assert quant.log_step.grad.item() == pytest.approx(0.5 / math.sqrt(quant.qp), rel=1e-6)


def _lsq(values: torch.Tensor, step: torch.Tensor, lo: int, hi: int,
         n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plain LSQ written out: ``(codes with a straight-through round, log step, step)``, the
    step's gradient scaled by ``1/√(n·hi)``."""
    log_s = torch.log(step).detach().requires_grad_(True)
    s = torch.exp(log_s)
    g = 1.0 / math.sqrt(n * hi)
    s = s * g + (s - s * g).detach()
    v = torch.clamp(values / s, lo, hi)
    return v + (torch.round(v) - v).detach(), log_s, s


def _conv_layer(granularity: str, learn_adc: bool = False) -> CimQuantLayer:
    geom = ConvGeometry((1, 1), (1, 1, 1, 1), (1, 1), 1)
    layer = CimQuantLayer("conv", 3, 40, (3, 3), geom,
                          QuantConfig(wordlines=128, granularity=granularity, learn_adc_step=learn_adc),
                          a_signed=False)
    channels = 3 if granularity == "column" else 1
    layer.w.set_step(torch.tensor([0.04, 0.03, 0.05][:channels]))
    layer.a.set_step(torch.tensor([0.15]))
    layer.adc.set_step(torch.tensor([4.0, 3.0, 5.0][:channels]))
    return layer


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(11)
    x = torch.from_numpy(rng.uniform(0, 2.5, (2, 40, 5, 5)).astype(np.float32))
    w = torch.from_numpy(rng.normal(0, 0.1, (3, 40, 3, 3)).astype(np.float32))
    return x, w


@pytest.mark.parametrize("granularity", ["layer", "column"])
def test_phase1_input_and_weight_steps_get_lsq_gradients_scaled_by_their_element_counts(granularity: str) -> None:
    """Phase 1 trains ``log S_A`` with ``N`` = features of one example and ``log S_W`` with
    ``N`` = weights per step (the layer's, or one column's), against a plain LSQ."""
    x, w = _inputs()
    layer = _conv_layer(granularity)
    layer.freeze_for_phase("1")
    assert layer.a.log_step.requires_grad and layer.w.log_step.requires_grad
    assert not layer.adc.log_step.requires_grad
    layer(x, w, None, "1").sum().backward()

    channels = layer.w.channels
    a_q, log_sa, s_a = _lsq(x, layer.a.effective_step().detach(), 0, layer.a.qp, x[0].numel())
    w_step = layer.w.effective_step().detach().reshape(-1, 1, 1, 1)
    w_q, log_sw, s_w = _lsq(w, w_step, -layer.w.qp, layer.w.qp, w.numel() // channels)
    y = torch.nn.functional.conv2d(a_q, w_q, padding=1) * (s_w.reshape(1, -1, 1, 1) * s_a)
    y.sum().backward()
    assert layer.a.log_step.grad is not None and layer.w.log_step.grad is not None
    assert log_sa.grad is not None and log_sw.grad is not None
    np.testing.assert_allclose(layer.a.log_step.grad.numpy(), log_sa.grad.numpy(), rtol=1e-4)
    np.testing.assert_allclose(layer.w.log_step.grad.numpy(), log_sw.grad.reshape(-1).numpy(), rtol=1e-4)


def test_per_column_learned_adc_steps_get_lsq_gradients_per_column() -> None:
    """Per-column ``S_ADC`` learned in phase 2 (``learn_adc_step``): column ``o``'s step sees
    only column ``o``'s partial sums, ``N`` = one column's partial sums per example."""
    x, w = _inputs()
    layer = _conv_layer("column", learn_adc=True)
    layer.freeze_for_phase("2")
    assert layer.adc.log_step.requires_grad and not layer.w.log_step.requires_grad
    assert not layer.a.log_step.requires_grad  # phase 2 freezes S_W and S_A
    layer(x, w, None, "2").sum().backward()

    with torch.no_grad():
        a_q, s_a = layer.input_codes(x)
        w_q, s_w = layer.weight_codes(w)
        p = layer.plan.partial_sums(a_q, w_q, layer.geom)  # (N, Ho, Wo, 1, S, Cout)
    qp = layer.adc.qp
    step = layer.adc.effective_step().detach().reshape(1, 1, 1, 1, 1, -1)
    codes, log_s, s = _lsq(p, step, -qp, qp, p[0].numel() // 3)
    assert (p.abs() > step * qp).any() and (p.abs() <= step * qp).any()  # both LSQ branches
    (codes.sum(dim=4).flatten(3, 4) * (s_w * s.reshape(-1) * s_a)).sum().backward()
    assert layer.adc.log_step.grad is not None and log_s.grad is not None
    np.testing.assert_allclose(layer.adc.log_step.grad.numpy(), log_s.grad.reshape(-1).numpy(), rtol=1e-4)


def test_float_phase_is_the_convolution_plus_the_bias() -> None:
    x, w = _inputs()
    b = torch.tensor([0.5, -1.0, 2.0])
    layer = _conv_layer("layer")
    want = torch.nn.functional.conv2d(x, w, b, padding=1)
    torch.testing.assert_close(layer(x, w, b, "float"), want, rtol=1e-5, atol=1e-5)
