"""LSQ quantizers with straight-through estimators (Esser et al. 2019; paper Eq. 6–8).

A quantizer turns a float tensor into integer-valued codes with a learnable step ``s``:

    q = round(clip(x / s, lo, hi))                    (= ``numerics.quantize``, bit for bit)

``[lo, hi]`` is ``numerics.code_range(bits, signed)``: narrow signed ``±(2^(b−1) − 1)`` for
weights and ADC codes, unsigned ``[0, 2^b − 1]`` for DAC inputs that are never negative
(``cimc.train.signs``; narrow signed otherwise). Layers multiply the codes
by the steps afterwards (``y = conv(q_a, q_w)·s_w·s_a``), which is the same function as the
usual fake quantization ``x̂ = q·s``. Backward (straight-through estimator):

    ∂q/∂x = 1/s inside the clip range, 0 outside          (round is skipped, clip is not)
    ∂(q·s)/∂s = round(x/s) − x/s inside, lo or hi outside   (LSQ's step gradient)

The step gradient is multiplied by ``g = 1/√(N·Qp)`` (LSQ's gradient scale; ``N`` = elements
per step: weights per layer or per column, activation features per example) through
``grad_scale``, whose forward is the identity, so exported steps equal the steps used.
Initial step (LSQ): ``s0 = 2·mean|x|/√Qp``, per layer or per output column.

The trained parameter is ``log s`` (``s = exp(log s)``, as TQT trains log thresholds): Adam's
updates are then relative, and a step can never reach 0 or turn negative — with per-column
steps of ~0.01 and learning rates of 1e-3..1e-2, a linear step does (and then saturates its
whole column). ``∂L/∂log s = s·g·∂L/∂s``: LSQ's gradient, scaled, in log space.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from cimc.quant.numerics import code_range

#: Smallest initial step (an all-zero tensor would otherwise give step 0).
MIN_STEP = 1e-8


class _RoundSTE(torch.autograd.Function):
    """``torch.round`` (half to even) forward, identity backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


class _GradScale(torch.autograd.Function):
    """Identity forward (the exact same values), gradient multiplied by ``g`` backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, g: float) -> torch.Tensor:
        ctx.g = g
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.g, None


class _FixedStepCodes(torch.autograd.Function):
    """``round(clip(x / s, lo, hi))`` for a constant step, fused: backward ``grad·[lo ≤ x/s ≤ hi]/s``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, step: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        scaled = x / step
        inside = scaled.abs().le_(hi) if lo == -hi else (scaled >= lo).logical_and_(scaled <= hi)
        ctx.save_for_backward(inside, step)
        return scaled.round_().clamp_(lo, hi)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        inside, step = ctx.saved_tensors
        return grad * inside / step, None, None, None


class _FixedStepAdcSum(torch.autograd.Function):
    """``Σ_dim round(clip(p / s, ±qp))`` for a constant ADC step, fused (the largest tensors of
    phase 2): forward ``c = clip(p/s)``, mask ``c == p/s``, ``round_``, sum; backward
    ``grad·[inside]/s`` broadcast over the summed axis (the STE of ``quantize_codes``)."""

    @staticmethod
    def forward(ctx: Any, p: torch.Tensor, step: torch.Tensor, qp: int, dim: int) -> torch.Tensor:
        scaled = p / step
        clipped = scaled.clamp(-qp, qp)
        inside = clipped == scaled
        del scaled
        ctx.save_for_backward(inside, step)
        ctx.dim = dim
        return clipped.round_().sum(dim=dim)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        inside, step = ctx.saved_tensors
        g = (grad.unsqueeze(ctx.dim) / step).expand(inside.shape)
        return torch.where(inside, g, 0.0), None, None, None


def adc_sum(p: torch.Tensor, step: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """``quantize_codes(p, step, bits, signed=True).sum(dim)`` — fused when ``step`` is frozen."""
    if step.requires_grad:
        return quantize_codes(p, step, bits, True).sum(dim=dim)
    out: torch.Tensor = _FixedStepAdcSum.apply(p, step, code_range(bits, True)[1], dim)
    return out


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even with a straight-through gradient."""
    out: torch.Tensor = _RoundSTE.apply(x)
    return out


def grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    """``x`` unchanged, its gradient scaled by ``g``."""
    out: torch.Tensor = _GradScale.apply(x, g)
    return out


def quantize_codes(x: torch.Tensor, step: torch.Tensor, bits: int, signed: bool) -> torch.Tensor:
    """``round(clip(x / step, lo, hi))`` with the STE; ``step`` broadcasts against ``x``. A step
    that is not trained takes a fused path (less memory and time on large partial-sum tensors)."""
    lo, hi = code_range(bits, signed)
    if not step.requires_grad:
        out: torch.Tensor = _FixedStepCodes.apply(x, step, lo, hi)
        return out
    return round_ste(torch.clamp(x / step, lo, hi))


def lsq_init(x: torch.Tensor, bits: int, signed: bool, channels: int = 1) -> torch.Tensor:
    """``2·mean|x|/√Qp`` per layer (``channels=1``) or per leading-axis channel."""
    qp = code_range(bits, signed)[1]
    mean = x.detach().abs().reshape(channels, -1).mean(dim=1) if channels > 1 else x.detach().abs().mean()[None]
    return (2.0 * mean / math.sqrt(qp)).clamp_min(MIN_STEP).to(torch.float32)


def channel_view(step: torch.Tensor, ndim: int, axis: int) -> torch.Tensor:
    """``step`` of shape ``(1,)`` or ``(C,)`` reshaped to broadcast along ``axis`` of a rank-``ndim`` tensor."""
    if step.numel() == 1:
        return step.reshape([1] * ndim)
    shape = [1] * ndim
    shape[axis] = -1
    return step.reshape(shape)


class StepQuantizer(nn.Module):
    """One learnable step (``(1,)`` per layer or ``(C,)`` per column, stored as its log) with its code range.

    ``initialized`` (a buffer, so it travels with checkpoints) tells calibration whether
    the step still needs its statistics-based initial value.
    """

    initialized: torch.Tensor

    def __init__(self, bits: int, signed: bool, channels: int = 1) -> None:
        super().__init__()
        self.bits = bits
        self.signed = signed
        self.log_step = nn.Parameter(torch.zeros(channels, dtype=torch.float32))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    @property
    def channels(self) -> int:
        return self.log_step.numel()

    @property
    def qp(self) -> int:
        return code_range(self.bits, self.signed)[1]

    def effective_step(self) -> torch.Tensor:
        """The step the forward pass divides by (what export writes)."""
        return torch.exp(self.log_step)

    def scaled_step(self, per_step_elements: int) -> torch.Tensor:
        """The effective step with LSQ's gradient scale ``1/√(N·Qp)`` when it is trained."""
        step = self.effective_step()
        if not step.requires_grad:
            return step
        return grad_scale(step, 1.0 / math.sqrt(max(per_step_elements, 1) * self.qp))

    def set_step(self, value: torch.Tensor) -> None:
        with torch.no_grad():
            self.log_step.copy_(torch.log(value.reshape(self.log_step.shape).to(torch.float32)))
            self.initialized.fill_(True)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}, channels={self.channels}"
