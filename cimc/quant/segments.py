"""All segments of a CIM layer as ONE grouped convolution (used by ``model.cim.onnx``; the
numpy reference and the emulator use im2col instead, so the formulations check each other).

Segment ``s`` covers rows ``[b_s, b_{s+1})`` of every group, i.e. input channels
``c_lo(s) = floor(b_s / k)`` … ``c_hi(s) = ceil(b_{s+1} / k)`` (``k = kh·kw``) of its group, partly
when a segment cuts a channel's kernel (dense tiling, kernels larger than the array). With
``C = max_s (c_hi − c_lo)`` channels per segment:

* ``index[s, g, j] = g·Cin_g + min(c_lo(s) + j, Cin_g − 1)``: the input channels gathered for
  conv group ``(s, g)``, in order ``s`` major, so the ``S·G`` groups' outputs reshape
  directly to ``(N, S, Cout, Ho, Wo)`` (``Cout`` index ``g·Cout_g + o``);
* ``weight[(s, g, o), j, i1, i2] = codes[g·Cout_g + o, r]`` for row
  ``r = (c_lo(s) + j)·k + i1·kw + i2`` inside the segment (``b_s ≤ r < b_{s+1}``) and a channel
  ``c_lo(s) + j < Cin_g``, else 0: the cells the bitline of output ``o`` holds in segment ``s``.

So ``conv(gather(a_q, index), weight, group=S·G)`` yields every partial sum ``p_s`` at once,
with ``Σ_s (c_hi − c_lo)·k ≈ rows`` multiply-adds per output: no segment is computed twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class SegmentConv:
    """The grouped convolution of one layer: gathered input channels (``None`` when the
    gather is the identity), the conv weight and its group count ``S·G``."""

    index: np.ndarray | None
    weight: np.ndarray
    groups: int


def channel_ranges(bounds: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """First channel of every segment and the channel count ``C`` of the widest one."""
    lo = bounds[:-1] // k
    hi = -(-bounds[1:] // k)
    return lo, int((hi - lo).max())


#: Channel blocks a segment's channels are padded to (``aligned_width``): onnxruntime's SIMD
#: blocks with AVX-512 and AVX2.
CHANNEL_BLOCKS = (16, 8)


def aligned_width(width: int, blocks: tuple[int, ...], overhead: float = 0.25) -> int:
    """``width`` rounded up to a multiple of the first of ``blocks`` that adds at most
    ``overhead`` of it (``width`` itself when none does)."""
    for block in blocks:
        padded = -(-width // block) * block
        if padded <= width * (1 + overhead):
            return padded
    return width


def segment_conv(codes: np.ndarray, bounds: tuple[int, ...] | np.ndarray, cin_g: int, groups: int,
                 kernel: tuple[int, int], align: tuple[int, ...] = ()) -> SegmentConv:
    """Build the grouped convolution (module doc) from the layer's code matrix ``codes``
    (``(Cout, rows)``, row ``r = c·k + i1·kw + i2`` of a group's input channel ``c``); the weight
    keeps ``codes``' dtype.

    ``align``: channel blocks to round ``C`` up to (``aligned_width``; the extra channels have
    zero weights, so every sum is unchanged): onnxruntime runs a grouped convolution whose
    channels per group are a multiple of its SIMD block (8 with AVX2, 16 with AVX-512) in its
    blocked layout, several times faster (``model.cim.onnx`` uses ``CHANNEL_BLOCKS``).

    One gather builds every cell: ``codes`` gets a zero column, which every cell outside its
    segment reads (the rows of channels past ``Cin_g`` lie past ``b_S``, so among them); the
    cells of all segments are taken at once, then laid out segment-major (a 512 × 4,608 layer
    of 19 segments: 2.3 ms, against 11.8 ms for the former gather through per-segment
    columns)."""
    b = np.asarray(bounds, dtype=np.int64)
    cout, rows = codes.shape
    s_count = b.shape[0] - 1
    kh, kw = kernel
    k = kh * kw
    lo, width = channel_ranges(b, k)
    width = aligned_width(width, align)
    channel = lo[:, None] + np.arange(width)[None, :]  # (S, C)
    row = channel[:, :, None] * k + np.arange(k)[None, None, :]  # (S, C, k)
    valid = (row >= b[:-1, None, None]) & (row < b[1:, None, None])  # a channel past Cin_g has r ≥ b_S
    padded = np.zeros((cout, rows + 1), dtype=codes.dtype)
    padded[:, :rows] = codes
    cells = np.take(padded, np.where(valid, row, rows).reshape(-1), axis=1)  # (Cout, S·C·k)
    weight = np.ascontiguousarray(cells.reshape(cout, s_count, width * k).transpose(1, 0, 2))
    weight = weight.reshape(s_count * cout, width, kh, kw)
    index = (np.arange(groups)[None, :, None] * cin_g + np.minimum(channel, cin_g - 1)[:, None, :]).reshape(-1)
    identity = index.shape[0] == groups * cin_g and bool((index == np.arange(index.shape[0])).all())
    return SegmentConv(None if identity else index, weight, s_count * groups)
