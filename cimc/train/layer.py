"""One CIM layer in torch: the float forward, phase 1 (Eq. 6) and phase 2 (Eq. 7–8).

The caller passes the BN-folded float weight ``W`` (``Cout × Cin_g × kh × kw``; a Gemm or
MatMul is a 1×1 conv on ``(N, K, 1, 1)``) and bias ``b``. With input codes
``a_q = round(clip(a/S_A))`` and cell codes ``w_q = round(clip(W/S_W, ±Qp))``:

    phase 1:  y = conv(a_q, w_q) · (S_W·S_A) + b
    phase 2:  p_s = conv_s(a_q, w_q)  (every segment, ``SegmentPlan``)
              y = Σ_s round(clip(p_s / S_ADC, ±Qp_ADC)) · ((S_W·S_ADC)·S_A) + b

A layer's bits are its own (``QuantConfig.bits_of``). A layer wider than the macro's cells
or DACs is bit-sliced in phase 2 (``cimc.train.sliced``: one ADC conversion per segment,
input slice and weight slice, each kind ``(t, j)`` of conversion at the step
``S_ADC·2^−m_{t,j}``, then the shift-add); its exponents ``m`` are the buffer ``adc_shift``
(int64 ``(T·S,)``, set by calibration, never trained; unsliced layers have none). Phase 1
needs no slicing (without the ADC the digits recombine to the codes exactly). Unsliced
layers take the path above.

The phase-2 scale and the final multiply-add are computed in float32 in exactly the order of
``numerics.output_scale`` and docs/build-format.md, 'The numerical contract' (step 7), so ``y`` equals the numpy
contract bit for bit.
``S_W`` and ``S_A`` are learned in phase 1 and frozen in phase 2 (paper); ``S_ADC`` is fixed
in phase 2 unless ``learn_adc_step``.

A pooled layer (``QuantConfig.weight_pool``) takes its codes ``w_q`` from the model's shared
pool (``cimc.train.pool``: index per vector re-assigned every step, straight-through), with
``S_W = α``, and its segments are the pool's vectors; everything after the codes is as above.
"""

from __future__ import annotations

import torch
from torch import nn

from cimc.errors import UsageError
from cimc.quant import numerics
from cimc.train import sliced
from cimc.train.config import QuantConfig
from cimc.train.phase2 import ConvGeometry, SegmentPlan, conv2d
from cimc.train.pool import SharedPool
from cimc.train.quant import StepQuantizer, adc_sum, channel_view, quantize_codes

__all__ = ["PHASES", "CimQuantLayer", "QuantConfig"]

PHASES = ("float", "1", "2")


class CimQuantLayer(nn.Module):
    """Step sizes, segment plan and quantized forward of one CIM layer."""

    adc_shift: torch.Tensor | None

    def __init__(self, node: str, cout: int, cin_g: int, kernel: tuple[int, int], geom: ConvGeometry,
                 config: QuantConfig, a_signed: bool, pool: SharedPool | None = None) -> None:
        super().__init__()
        self.node, self.geom, self.config = node, geom, config
        self.pool = pool
        self.bits = config.bits_of(node)
        if numerics.always_zero(self.bits.a_bits, a_signed):
            raise UsageError(f"layer '{node}': its inputs can be negative, so they need signed codes, and "
                             f"{numerics.ONE_BIT_SIGNED}", hint="use 2 or more input bits for this layer")
        channels = cout if config.granularity == "column" else 1
        self.w = StepQuantizer(self.bits.w_bits, True, channels)
        self.a = StepQuantizer(self.bits.a_bits, a_signed, 1)
        self.adc = StepQuantizer(self.bits.adc_bits, True, channels)
        self.plan = SegmentPlan(cin_g, kernel, geom.groups, *config.segment_tiling())
        sliced.check_exact(node, self.bits, self.plan, a_signed)
        kinds = self.bits.a_slices * self.bits.w_slices
        self.register_buffer("adc_shift", torch.zeros(kinds, dtype=torch.int64) if self.bits.sliced else None)

    def forward(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, phase: str) -> torch.Tensor:
        if phase == "float":
            y = conv2d(x, w, self.geom)
            return y if b is None else y + b.reshape(1, -1, 1, 1)
        a_q, s_a = self.input_codes(x)
        w_q, s_w = self.weight_codes(w)
        y = self._phase1(a_q, w_q, s_w, s_a) if phase == "1" else self._phase2(a_q, w_q, s_w, s_a)
        return y if b is None else y + b.reshape(1, -1, 1, 1)

    def input_codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s_a = self.a.scaled_step(x[0].numel())
        return quantize_codes(x, s_a.reshape(1, 1, 1, 1), self.a.bits, self.a.signed), s_a

    def weight_codes(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s_w = self.w.scaled_step(w.numel() // self.w.channels)
        if self.pool is not None:
            u = w / channel_view(s_w, w.ndim, 0)
            return self.pool.codes(u.reshape(w.shape[0], -1), s_w).reshape(w.shape), s_w
        return quantize_codes(w, channel_view(s_w, w.ndim, 0), self.w.bits, True), s_w

    @torch.no_grad()
    def materialised(self, w: torch.Tensor) -> torch.Tensor:
        """``fl32(S_W·w_q)`` of weight ``w``: what export writes for a pooled layer, so that the
        compile path's ``round(W/S_W)`` gives back the codes ``w_q`` (``|w_q| ≤ 3``)."""
        w_q, s_w = self.weight_codes(w)
        return (w_q * channel_view(s_w, w.ndim, 0)).to(torch.float32)

    def _phase1(self, a_q: torch.Tensor, w_q: torch.Tensor, s_w: torch.Tensor, s_a: torch.Tensor) -> torch.Tensor:
        return conv2d(a_q, w_q, self.geom) * channel_view(s_w * s_a, 4, 1)

    def _phase2(self, a_q: torch.Tensor, w_q: torch.Tensor, s_w: torch.Tensor, s_a: torch.Tensor) -> torch.Tensor:
        total, s_adc = self.phase2_sums(a_q, w_q)
        y = total * (s_w * s_adc * s_a)
        return y.permute(0, 3, 1, 2)

    def phase2_sums(self, a_q: torch.Tensor, w_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The accumulated ADC codes ``P`` ``(N, Ho, Wo, Cout)`` and the ADC step used."""
        if self.bits.sliced:
            p = sliced.sliced_partial_sums(self.plan, a_q, w_q, self.geom, self.bits, self.a.signed)
            s_adc = self.adc.scaled_step(p[:, 0].numel() // self.adc.channels)
            assert self.adc_shift is not None
            factors = sliced.shift_factors(self.adc_shift, self.bits)
            total = sliced.sliced_total(p, s_adc, factors, self.bits, self.plan.groups)
            return total.flatten(3, 4), s_adc
        p = self.plan.partial_sums(a_q, w_q, self.geom)  # (N, Ho, Wo, G, S, Cout_g)
        s_adc = self.adc.scaled_step(p[0].numel() // self.adc.channels)
        total = adc_sum(p, self.adc_view(s_adc, p.shape[5]), self.adc.bits, dim=4)  # ADC codes + adder tree
        return total.flatten(3, 4), s_adc

    @torch.no_grad()
    def accumulated_sums(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Phase 2's ``P`` ``(N, Cout, Ho, Wo)`` on float input ``x`` and weight ``w`` (the
        reference's ``LayerTrace.sums``)."""
        a_q, _ = self.input_codes(x)
        w_q, _ = self.weight_codes(w)
        return self.phase2_sums(a_q, w_q)[0].permute(0, 3, 1, 2)

    def adc_view(self, s_adc: torch.Tensor, cout_g: int) -> torch.Tensor:
        """The ADC step broadcast over ``(N, Ho, Wo, G, S, Cout_g)`` partial sums."""
        if s_adc.numel() == 1:
            return s_adc.reshape(1, 1, 1, 1, 1, 1)
        return s_adc.reshape(1, 1, 1, -1, 1, cout_g)

    @torch.no_grad()
    def partial_sums(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Integer partial sums ``(N, Ho, Wo, G, S, Cout_g)`` with the current steps (calibration);
        a sliced layer's every conversion as ``(N·Ho·Wo, Seg·T·S, Cout)`` (``sliced.conversion_sums``)."""
        a_q, _ = self.input_codes(x)
        w_q, _ = self.weight_codes(w)
        if self.bits.sliced:
            p = sliced.sliced_partial_sums(self.plan, a_q, w_q, self.geom, self.bits, self.a.signed)
            return sliced.conversion_sums(p)
        return self.plan.partial_sums(a_q, w_q, self.geom)

    def set_adc_shift(self, shift: torch.Tensor) -> None:
        """The step exponents ``m`` ``(T·S,)`` of a sliced layer (calibration)."""
        if self.adc_shift is None:
            raise ValueError(f"layer '{self.node}' is not bit-sliced: it has no ADC step exponents")
        self.adc_shift.copy_(shift.reshape(self.adc_shift.shape))

    def freeze_for_phase(self, phase: str) -> None:
        """Phase 1 learns ``S_W`` and ``S_A``; phase 2 freezes them, ``S_ADC`` learned only on request."""
        self.w.log_step.requires_grad_(phase == "1")
        self.a.log_step.requires_grad_(phase == "1")
        self.adc.log_step.requires_grad_(phase == "2" and self.config.learn_adc_step)
