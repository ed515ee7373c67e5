"""The QAT backward pass: the fused ADC's STE clip mask (paper Eq. 7), the learned ADC step's
LSQ gradient (``learn_adc_step``) and half-to-even rounding of trainable steps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cimc.quant import numerics
from cimc.train.layer import CimQuantLayer, QuantConfig
from cimc.train.phase2 import ConvGeometry
from cimc.train.quant import adc_sum, quantize_codes

pytestmark = pytest.mark.torch


def test_saturated_adc_code_has_zero_gradient() -> None:
    """Frozen ADC step (the fused ``adc_sum``): ∂Σ_s code/∂p = [|p/s| ≤ Qp]/s, 0 where saturated."""
    p = torch.tensor([[-40.0, -21.0, -3.0, 0.0], [5.0, 20.0, 21.5, 60.0]], requires_grad=True)  # (S=2, 4)
    step = torch.tensor(3.0)
    qp = numerics.signed_max(4)  # 7: |p/3| ≤ 7 ⟺ |p| ≤ 21
    total = adc_sum(p, step, 4, dim=0)
    assert torch.equal(total, torch.from_numpy(numerics.adc_codes(p.detach().numpy(), 3.0, 4).sum(axis=0)))
    total.backward(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    inside = (p.detach() / 3.0).abs() <= qp
    assert p.grad is not None
    assert torch.equal(p.grad, torch.where(inside, torch.tensor([1.0, 2.0, 3.0, 4.0]) / 3.0, 0.0))
    assert not inside.all() and inside.any()


def _layer(learn: bool) -> CimQuantLayer:
    geom = ConvGeometry((1, 1), (1, 1, 1, 1), (1, 1), 1)
    layer = CimQuantLayer("conv", 3, 40, (3, 3), geom,
                          QuantConfig(wordlines=128, learn_adc_step=learn), a_signed=False)
    layer.w.set_step(torch.tensor([0.04]))
    layer.a.set_step(torch.tensor([0.15]))
    layer.adc.set_step(torch.tensor([4.0]))  # saturates some sums: both LSQ gradient branches count
    layer.freeze_for_phase("2")
    return layer


def test_learned_adc_step_receives_lsq_gradient() -> None:
    """With ``learn_adc_step`` phase 2 trains ``log S_ADC`` by LSQ's gradient: with ``v = p/s``,
    ``∂L/∂s`` through the codes is ``(round(v) − v)`` inside the range and ``±Qp`` outside, times
    ``g = 1/√(N·Qp)`` and ``s`` (log space); checked against a plain-torch LSQ written out here."""
    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.uniform(0, 2, (2, 40, 5, 5)).astype(np.float32))
    w = torch.from_numpy(rng.normal(0, 0.1, (3, 40, 3, 3)).astype(np.float32))
    layer = _layer(True)
    assert layer.plan.segments > 1 and layer.adc.log_step.requires_grad
    y = layer(x, w, None, "2")
    y.sum().backward()
    got = layer.adc.log_step.grad
    assert got is not None and got.abs().item() > 0

    with torch.no_grad():
        a_q, s_a = layer.input_codes(x)
        w_q, s_w = layer.weight_codes(w)
        p = layer.plan.partial_sums(a_q, w_q, layer.geom)  # (N, Ho, Wo, 1, S, Cout)
    qp = layer.adc.qp
    log_s = torch.tensor([math.log(4.0)], requires_grad=True)
    s = torch.exp(log_s)
    g = 1.0 / math.sqrt(p[0].numel() * qp)
    s = s * g + (s - s * g).detach()  # LSQ's gradient scale: value s, gradient g·∂/∂s
    v = torch.clamp(p / s, -qp, qp)
    codes = v + (torch.round(v) - v).detach()  # round with a straight-through gradient
    want = codes.sum(dim=4).flatten(3, 4) * (s_w * s * s_a)
    want.sum().backward()
    assert (p.abs() > 4.0 * qp).any() and (p.abs() <= 4.0 * qp).any()
    assert log_s.grad is not None
    assert got.item() == pytest.approx(log_s.grad.item(), rel=1e-4)


def test_adc_step_is_frozen_without_learn_adc_step() -> None:
    layer = _layer(False)
    assert not layer.adc.log_step.requires_grad
    w = torch.full((3, 40, 3, 3), 0.05, requires_grad=True)
    layer(torch.ones(1, 40, 4, 4), w, None, "2").sum().backward()
    assert layer.adc.log_step.grad is None and w.grad is not None


TIES = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5])


@pytest.mark.parametrize("trained", [True, False])
def test_qat_rounds_ties_to_even(trained: bool) -> None:
    """Codes of exact halves: 2.5 → 2, 3.5 → 4, −0.5 → 0 (``numerics.quantize``'s ``np.rint``),
    with a trained step (``round_ste``) and with a frozen one (the fused path)."""
    step = torch.tensor([0.5], requires_grad=trained)
    x = TIES * 0.5  # x / 0.5 is the tie exactly
    q = quantize_codes(x, step, 4, signed=True)
    assert q.tolist() == [-2.0, -2.0, 0.0, 0.0, 2.0, 2.0, 4.0]
    assert np.array_equal(q.detach().numpy(), numerics.quantize(x.numpy(), 0.5, 4, True))


@pytest.mark.parametrize("signed", [True, False])
def test_ste_passes_the_gradient_of_the_boundary_codes(signed: bool) -> None:
    """``x/s`` exactly ``lo`` or ``hi`` is inside the clip range (gradient ``1/s``); a hair beyond is not."""
    lo, hi = numerics.code_range(3, signed)
    step = torch.tensor([0.5])
    x = (torch.tensor([lo, hi, lo - 0.01, hi + 0.01]) * 0.5).requires_grad_(True)
    quantize_codes(x, step, 3, signed).sum().backward()
    assert x.grad is not None and x.grad.tolist() == [2.0, 2.0, 0.0, 0.0]
