"""Phase 2 of a bit-sliced layer: every (segment, input slice, weight slice) through the ADC.

The codes are split into two's-complement digits exactly as ``cimc.quant.slicing.digits`` does,
here in float32 torch (exact on integers below 2^24): with ``f_j = ⌊q·2^(−j·c)⌋``

    d_j = f_j − 2^c·f_(j+1)   (j < n−1, unsigned [0, 2^c − 1])      d_(n−1) = f_(n−1)

(the top digit is signed for signed codes; for unsigned codes ``f_(n−1) < 2^top`` already).
The digits carry a straight-through gradient on the codes: ``∂d_j/∂q = 2^(−j·c)/n``, so
that ``Σ_j 2^(j·c)·∂d_j/∂q = 1`` and, where no ADC clips, the recombined sum has the
gradient of the unsliced layer.

The ``S`` weight digits become ``S`` extra output channels (channel ``o·S + j``, adjacent
columns as on the macro) and the ``T`` input digits a ``T``-fold batch, so ONE grouped
convolution of ``SegmentPlan`` gives every partial sum ``p[t, n, y, x, g, s, o, j]``. Each
is one ADC conversion; kind ``(t, j)`` has its own step ``S_ADC·2^−m_{t,j}`` (``S_ADC`` the
layer's, per layer or per output column; the exponents ``m`` the layer's ``adc_shift``,
fixed after calibration). The adder tree sums the codes over segments and the shift-add
recombines

    P = Σ_{t,j} 2^(j·cell_bits + t·dac_bits − m_{t,j}) · Σ_s round(clip(p_{s,t,j} / (S_ADC·2^−m_{t,j}), ±Qp_ADC))

exactly as ``cimc.quant.reference.sliced_adc`` / ``recombine``: the step is float32 ``S_ADC``
times an exact power of two, and every term of ``P`` is a multiple of ``2^−M`` (``M = max m``)
with ``|P|·2^M < 2^24``, so float32 sums are exact in any order. ``max_shift`` bounds ``M``
so that this holds for any codes: ``segments · Σ_{t,j} 2^(j·c + t·dac) · Qp_ADC · 2^M < 2^24``
(then the quantize pass's exactness check accepts the exported layer too).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cimc.errors import UnsupportedError
from cimc.quant import numerics, slicing
from cimc.train.config import LayerBits
from cimc.train.phase2 import ConvGeometry, SegmentPlan
from cimc.train.quant import adc_sum

EXACT_LIMIT = 1 << 24


class _Digits(torch.autograd.Function):
    """Digits ``(n, *q.shape)`` of integer-valued codes ``q`` (module doc), STE backward."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, bits: int, width: int, signed: bool) -> torch.Tensor:
        n = slicing.slice_count(bits, width)
        shape = (n,) + (1,) * q.ndim
        scale = torch.tensor([2.0 ** (-j * width) for j in range(n)], dtype=q.dtype, device=q.device).reshape(shape)
        floors = torch.floor(q.unsqueeze(0) * scale)  # f_j, exact (power-of-two scale)
        out = floors.clone()
        out[:-1] -= floors[1:] * float(1 << width)
        ctx.save_for_backward(scale / n)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (share,) = ctx.saved_tensors
        return (grad * share).sum(dim=0), None, None, None


def digits(q: torch.Tensor, bits: int, width: int | None, signed: bool) -> torch.Tensor:
    """``cimc.quant.slicing.digits`` in torch with the straight-through gradient (``q[None]`` when unsliced)."""
    if width is None or slicing.slice_count(bits, width) == 1:
        return q.unsqueeze(0)
    out: torch.Tensor = _Digits.apply(q, bits, width, signed)
    return out


def slice_weights(bits: LayerBits, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift-add factors ``2^(t·dac_bits)`` ``(T,)`` and ``2^(j·cell_bits)`` ``(S,)``."""
    a = slicing.digit_weights(bits.a_bits, bits.dac_bits)
    w = slicing.digit_weights(bits.w_bits, bits.cell_bits)
    return torch.from_numpy(a).to(device), torch.from_numpy(w).to(device)


def shift_factors(shift: torch.Tensor, bits: LayerBits) -> torch.Tensor:
    """``2^−m_{t,j}`` ``(T, S)`` from the exponents ``(T·S,)`` in ``(t, j)`` order (float32, exact)."""
    m = shift.detach().cpu().numpy().astype(np.int64)
    factors = np.ldexp(np.float32(1.0), -m).astype(np.float32).reshape(bits.a_slices, bits.w_slices)
    return torch.from_numpy(factors).to(shift.device)


def sliced_partial_sums(plan: SegmentPlan, a_q: torch.Tensor, w_q: torch.Tensor, geom: ConvGeometry,
                        bits: LayerBits, a_signed: bool) -> torch.Tensor:
    """Every conversion's partial sum ``(T, N, Ho, Wo, G, Seg, Cout_g, S)`` in one grouped conv."""
    w_dig = digits(w_q, bits.w_bits, bits.cell_bits, True)  # (S, Cout, Cin_g, kh, kw)
    a_dig = digits(a_q, bits.a_bits, bits.dac_bits, a_signed)  # (T, N, C, H, W)
    (ns, cout), (nt, n) = w_dig.shape[:2], a_dig.shape[:2]
    wide = w_dig.transpose(0, 1).reshape(cout * ns, *w_q.shape[1:])  # channel o·S + j
    p = plan.partial_sums(a_dig.reshape(nt * n, *a_q.shape[1:]), wide, geom)  # (T·N, Ho, Wo, G, Seg, Cout_g·S)
    return p.reshape(nt, n, *p.shape[1:5], cout // plan.groups, ns)


def sliced_total(p: torch.Tensor, s_adc: torch.Tensor, factors: torch.Tensor, bits: LayerBits,
                 groups: int) -> torch.Tensor:
    """``P`` ``(N, Ho, Wo, G, Cout_g)`` from the partial sums of ``sliced_partial_sums``, the
    layer's ADC step ``s_adc`` ``(1,)`` or ``(Cout,)`` and the ``shift_factors`` ``2^−m``."""
    step = adc_view(s_adc, groups, p.shape[6]) * factors.reshape(factors.shape[0], 1, 1, 1, 1, 1, 1, -1)
    codes = adc_sum(p, step, bits.adc_bits, dim=5)  # ADC per conversion, adder tree over segments
    a_w, w_w = slice_weights(bits, p.device)
    shift = (a_w[:, None] * w_w[None, :] * factors).reshape(-1, 1, 1, 1, 1, 1, factors.shape[1])  # exact
    return (codes * shift).sum(dim=(0, 6))


def adc_view(step: torch.Tensor, groups: int, cout_g: int) -> torch.Tensor:
    """The ADC step broadcast over ``(T, N, Ho, Wo, G, Seg, Cout_g, S)`` partial sums."""
    if step.numel() == 1:
        return step.reshape([1] * 8)
    return step.reshape(1, 1, 1, 1, groups, 1, cout_g, 1)


def conversion_sums(p: torch.Tensor) -> torch.Tensor:
    """``(T, N, Ho, Wo, G, Seg, Cout_g, S)`` → ``(N·Ho·Wo, Seg·T·S, Cout)``: the layout of
    ``cimc.quant.calibration.partial_sums`` (conversions in ``(s, t, j)`` order, column ``g·Cout_g + o``)."""
    t, n, ho, wo, g, seg, cg, s = p.shape
    return p.permute(1, 2, 3, 5, 0, 7, 4, 6).reshape(n * ho * wo, seg * t * s, g * cg)


def max_shift(bits: LayerBits, plan: SegmentPlan) -> int:
    """The largest ``M`` with ``segments · Σ_{t,j} 2^(j·c + t·dac) · Qp_ADC · 2^M < 2^24`` (module doc),
    of a layer ``check_exact`` accepts (``M = 0`` exists: the sum itself is below 2^24)."""
    weights = slicing.conversion_weights(plan.segments, bits.a_bits, bits.dac_bits, bits.w_bits, bits.cell_bits)
    base = int(weights.astype(np.int64).sum()) * numerics.signed_max(bits.adc_bits)
    return ((EXACT_LIMIT - 1) // base).bit_length() - 1


def check_exact(node: str, bits: LayerBits, plan: SegmentPlan, a_signed: bool) -> None:
    """Raise when a partial sum or the recombined ``P`` could reach 2^24 (float32 no longer
    exact; the quantize pass would refuse the layer too)."""
    rows = int(np.diff(plan.bounds).max())
    p_bound = rows * slicing.digit_max(bits.w_bits, bits.cell_bits, True) \
        * slicing.digit_max(bits.a_bits, bits.dac_bits, a_signed)
    weights = slicing.conversion_weights(plan.segments, bits.a_bits, bits.dac_bits, bits.w_bits, bits.cell_bits)
    total_bound = int(weights.astype(np.int64).sum()) * numerics.signed_max(bits.adc_bits)
    bound = max(p_bound, total_bound)
    if bound >= EXACT_LIMIT:
        raise UnsupportedError(f"layer '{node}': sums may reach {bound:,} ≥ 2^24 with {bits.w_bits}-bit weights, "
                               f"{bits.a_bits}-bit inputs and {bits.adc_bits}-bit ADC codes over {plan.segments} "
                               f"segment(s) of up to {rows} rows; float32 execution would not be exact",
                               hint="use fewer bits for this layer or a macro with fewer wordlines")
