"""Segmented convolution for phase 2: every wordline segment's partial sum in ONE grouped conv.

A CIM layer's group ``g`` has ``rows = C·k`` unrolled rows (``C`` input channels of the
group, ``k = kh·kw``, row ``r = c·k + p``). ``tile-wordlines`` splits them into segments
``[b_s, b_{s+1})`` with ``cimc.mapping.tiling.segment_bounds`` — imported here, so
training sees exactly the compiler's segments. The partial sum of segment ``s`` is

    p_s[n, o, y, x] = Σ_{r ∈ [b_s, b_{s+1})} w_q[o, r] · a_q[n, r @ (y, x)]

Segment ``s`` touches the channels ``c0_s = ⌊b_s/k⌋ … c1_s = ⌈b_{s+1}/k⌉``. Every segment
gets a slot of ``m = max_s (c1_s − c0_s)`` channels (padded with an all-zero channel);
the input is gathered into ``(N, G·S·m, H, W)`` and the weights into ``(G·S·Cout_g, m, kh,
kw)`` — with a 0/1 row mask when a segment starts or ends inside a channel (row-dense
tiling, kernels taller than the array) — and ONE grouped convolution (``groups = G·S``)
gives every ``p_s`` at once. Nothing loops over segments. The grouped convolution runs in
one of two equivalent forms, chosen per layer by the output size:

* ``conv``: ``F.conv2d(groups=G·S)`` on channels-last tensors (oneDNN's fast grouped
  kernels); the partial sums come out channels-last and are read as ``(N, Ho, Wo, G, S,
  Cout_g)`` without a copy;
* ``bmm`` (at most ``BMM_MAX_PIXELS`` output pixels, e.g. VGG9's last 2×2 layers): the
  same grouped convolution as im2col plus one batched matmul over the ``G·S`` groups,
  ``(G·S, Cout_g, m·k) @ (G·S, m·k, N·Ho·Wo)``, which is faster there on CPUs (measured:
  VGG9's phase-2 step 1.71× phase 1 with the threshold at 4 pixels, 1.87× at 16, 1.88× never).

The ADC then quantizes each ``p_s`` (``numerics.adc_codes``) and the digital adder sums the
codes over ``s``. On integer-valued inputs both forms are exact in float32
(docs/build-format.md, 'The numerical contract').
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cimc.mapping.tiling import segment_bounds

#: Layers with at most this many output pixels use the im2col + batched-matmul form.
BMM_MAX_PIXELS = 4
CL = torch.channels_last


@dataclass(frozen=True)
class ConvGeometry:
    """Static conv attributes: ONNX pads ``(top, left, bottom, right)``."""

    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    dilations: tuple[int, int]
    groups: int


def conv2d(x: torch.Tensor, w: torch.Tensor, geom: ConvGeometry, groups: int | None = None) -> torch.Tensor:
    """``F.conv2d`` with ONNX (possibly asymmetric) pads."""
    t, l, b, r = geom.pads
    padding: tuple[int, int] = (0, 0)
    if (t, l) == (b, r):
        padding = (t, l)
    else:
        x = F.pad(x, (l, r, t, b))
    return F.conv2d(x, w, None, geom.strides, padding, geom.dilations, groups or geom.groups)


def _out_size(size: torch.Size, kernel: torch.Size, geom: ConvGeometry) -> tuple[int, int]:
    t, l, b, r = geom.pads
    dims = [(size[i] + p0 + p1 - geom.dilations[i] * (kernel[i] - 1) - 1) // geom.strides[i] + 1
            for i, (p0, p1) in enumerate(((t, b), (l, r)))]
    return dims[0], dims[1]


def slot_layout(bounds: np.ndarray, channels: int, k: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``(index, mask)``: channel of each slot ``(S, m)`` (``channels`` = zero pad) and the row
    mask ``(S, m, k)`` — ``None`` when every segment holds whole channels."""
    lo, hi = bounds[:-1], bounds[1:]
    c0, c1 = lo // k, -(-hi // k)
    width = int((c1 - c0).max())
    slot = np.arange(width)[None, :]
    index = np.where(slot < (c1 - c0)[:, None], c0[:, None] + slot, channels)
    if not np.any(bounds % k):  # every bound on a channel edge
        return index, None
    rows = index[:, :, None] * k + np.arange(k)[None, None, :]
    mask = (rows >= lo[:, None, None]) & (rows < hi[:, None, None])  # a pad's rows are >= C·k >= hi
    return index, mask


class SegmentPlan(nn.Module):
    """Gather indices and row mask of one layer; built once from ``segment_bounds``."""

    weight_index: torch.Tensor
    input_index: torch.Tensor
    row_mask: torch.Tensor | None

    def __init__(self, cin_g: int, kernel: tuple[int, int], groups: int, wordlines: int, mode: str) -> None:
        super().__init__()
        k = kernel[0] * kernel[1]
        self.bounds = segment_bounds(cin_g, k, wordlines, mode)
        index, mask = slot_layout(self.bounds, cin_g, k)
        self.segments, self.width = int(index.shape[0]), int(index.shape[1])
        self.groups, self.cin_g, self.kernel = groups, cin_g, kernel
        offsets = np.arange(groups)[:, None, None] * cin_g
        global_index = np.where(index[None] < cin_g, index[None] + offsets, groups * cin_g)
        self.register_buffer("weight_index", torch.from_numpy(index.reshape(-1)), persistent=False)
        self.register_buffer("input_index", torch.from_numpy(global_index.reshape(-1)), persistent=False)
        self.identity_input = bool(np.array_equal(global_index.reshape(-1), np.arange(groups * cin_g)))
        self.contiguous = bool(np.array_equal(index.reshape(-1), np.minimum(np.arange(index.size), cin_g)))
        mask_t = None if mask is None else torch.from_numpy(mask.astype(np.float32)).reshape(
            1, 1, self.segments, self.width, *kernel)
        self.register_buffer("row_mask", mask_t, persistent=False)

    def gather_input(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, G·Cin_g, H, W)`` → ``(N, G·S·m, H, W)``, channels-last."""
        if self.identity_input:
            return x.contiguous(memory_format=CL)
        n, _, h, w = x.shape
        if self.contiguous:  # whole channels in order: zero-pad each group's channels to S·m
            nhwc = x.permute(0, 2, 3, 1).reshape(n, h, w, self.groups, self.cin_g)
            nhwc = F.pad(nhwc, (0, self.segments * self.width - self.cin_g))
            return nhwc.reshape(n, h, w, -1).permute(0, 3, 1, 2)
        x = torch.cat([x, x.new_zeros(n, 1, h, w)], dim=1)
        return x.index_select(1, self.input_index).contiguous(memory_format=CL)

    def gather_weight(self, w: torch.Tensor) -> torch.Tensor:
        """``(G·Cout_g, Cin_g, kh, kw)`` → ``(G·S·Cout_g, m, kh, kw)``, segment-major per group."""
        cout = w.shape[0]
        cout_g = cout // self.groups
        if self.contiguous:
            w = F.pad(w, (0, 0, 0, 0, 0, self.segments * self.width - self.cin_g))
        else:
            w = torch.cat([w, w.new_zeros(cout, 1, *w.shape[2:])], dim=1).index_select(1, self.weight_index)
        w = w.reshape(self.groups, cout_g, self.segments, self.width, *self.kernel)
        if self.row_mask is not None:
            w = w * self.row_mask
        return w.transpose(1, 2).reshape(self.groups * self.segments * cout_g, self.width, *self.kernel)

    def partial_sums(self, a_q: torch.Tensor, w_q: torch.Tensor, geom: ConvGeometry,
                     method: str | None = None) -> torch.Tensor:
        """All segments' partial sums ``(N, Ho, Wo, G, S, Cout_g)`` (a view of channels-last
        memory); ``method`` ``"conv"`` or ``"bmm"`` (default: by output size, module doc)."""
        x, w = self.gather_input(a_q), self.gather_weight(w_q)
        n, cout_g = x.shape[0], w_q.shape[0] // self.groups
        ho, wo = _out_size(x.shape[2:], w.shape[2:], geom)
        if method is None:
            method = "bmm" if ho * wo <= BMM_MAX_PIXELS and self.segments > 1 else "conv"
        if method == "bmm":
            return self._bmm(x, w, geom, (ho, wo))
        p = conv2d(x, w.contiguous(memory_format=CL), geom, groups=self.groups * self.segments)
        return p.permute(0, 2, 3, 1).reshape(n, ho, wo, self.groups, self.segments, cout_g)

    def _bmm(self, x: torch.Tensor, w: torch.Tensor, geom: ConvGeometry, out: tuple[int, int]) -> torch.Tensor:
        t, l, b, r = geom.pads
        if (t, l) != (b, r):
            x, pad = F.pad(x, (l, r, t, b)), (0, 0)
        else:
            pad = (t, l)
        n, gs = x.shape[0], self.groups * self.segments
        rows = self.width * self.kernel[0] * self.kernel[1]
        cols = F.unfold(x, self.kernel, geom.dilations, pad, geom.strides)  # (N, G·S·m·k, L)
        cols = cols.reshape(n, gs, rows, -1).permute(1, 2, 0, 3).reshape(gs, rows, -1)
        p = torch.bmm(w.reshape(gs, -1, rows), cols)  # (G·S, Cout_g, N·L)
        p = p.reshape(self.groups, self.segments, -1, n, *out)
        return p.permute(3, 4, 5, 0, 1, 2)

    def extra_repr(self) -> str:
        return f"segments={self.segments}, width={self.width}, groups={self.groups}, bounds={self.bounds.tolist()}"
