"""The 2-D window machinery the op kernels share: window views, padding, conv, pool geometry.

All of it is vectorised: convolutions and pools build a strided window view
(``sliding_window_view``) and reduce it with one ``matmul``/``max``/``sum`` (a convolution whose
im2col matrix exceeds ``CONV_WORKSPACE_BYTES``: one ``matmul`` per chunk of images or output
rows); no Python loop runs over pixels, channels or groups. The per-op kernels themselves live in ``cimc.ops.defs``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def pad_hw(x: np.ndarray, pads: tuple[int, ...], value: float) -> np.ndarray:
    """Pad the two spatial dims of NCHW ``x`` with ONNX pads ``(top, left, bottom, right)``."""
    t, l, b, r = pads
    if not any(pads):
        return x
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=value)


def windows(x: np.ndarray, kernel: tuple[int, int], strides: tuple[int, ...],
            dilations: tuple[int, ...]) -> np.ndarray:
    """View of all (dilated) kernel windows of padded NCHW ``x``: shape (N, C, Ho, Wo, kh, kw)."""
    kh, kw = kernel
    dh, dw = dilations
    span = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    view = sliding_window_view(x, span, axis=(2, 3))
    return view[:, :, ::strides[0], ::strides[1], ::dh, ::dw]


def window_tap(x: np.ndarray, tap: tuple[int, int], strides: tuple[int, ...], dilations: tuple[int, ...],
               out: tuple[int, ...]) -> np.ndarray:
    """Tap ``(i, j)`` of every window of padded NCHW ``x``, a strided view of shape (N, C, Ho, Wo):
    ``x[:, :, h·s_h + i·d_h, w·s_w + j·d_w]``. A pool reduces its ``kh·kw`` taps elementwise,
    which is much faster than reducing the 6-D ``windows`` view over its last two axes."""
    (i, j), (sh, sw), (dh, dw), (oh, ow) = tap, strides, dilations, out
    return x[:, :, i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw:j * dw + (ow - 1) * sw + 1:sw]


#: Bytes of the im2col workspace one ``conv2d`` step may form (a 64-channel 3×3 conv on
#: 224×224 images needs 115 MB an image). Larger convolutions run in chunks of images, or of
#: output rows of one image, so the workspace stays near this bound whatever the batch.
CONV_WORKSPACE_BYTES = 64 * 2**20


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, strides: tuple[int, ...],
           pads: tuple[int, ...], dilations: tuple[int, ...], group: int) -> np.ndarray:
    """y[n,o,h,w] = b[o] + Σ_{c∈group(o), i, j} W[o,c,i,j] · x_pad[n, c, h·s+i·d, w·s+j·d].

    Each chunk (``conv_chunks``) is one GEMM of its im2col windows by the weight matrix, so
    the workspace is bounded by ``CONV_WORKSPACE_BYTES`` plus one padded chunk of input. A
    convolution whose whole workspace fits is one GEMM (one chunk), as before chunking."""
    n = x.shape[0]
    cout, cg, kh, kw = w.shape
    ho, wo = window_out(x.shape[2:], ((kh - 1) * dilations[0] + 1, (kw - 1) * dilations[1] + 1), strides, pads)
    wmat = w.reshape(group, cout // group, cg * kh * kw).transpose(0, 2, 1)
    y = np.empty((n, cout, ho, wo), dtype=x.dtype)
    row_bytes = wo * group * cg * kh * kw * np.result_type(x, w).itemsize  # one output row's windows
    for (n0, n1), (h0, h1) in conv_chunks(n, ho, row_bytes, CONV_WORKSPACE_BYTES):
        win = windows(pad_hw(x[n0:n1], pads, 0.0), (kh, kw), strides, dilations)[:, :, h0:h1]
        part = _conv_gemm(win, wmat, group) if b is None else _conv_gemm(win, wmat, group) + b.reshape(1, -1, 1, 1)
        y[n0:n1, :, h0:h1] = part
    return y


def _conv_gemm(win: np.ndarray, wmat: np.ndarray, group: int) -> np.ndarray:
    """The convolution of a window view ``(N, C, Ho, Wo, kh, kw)`` by ``wmat`` ``(G, Cg·kh·kw, Cout_g)``:
    ``(N, Cout, Ho, Wo)``, as one GEMM of the im2col matrix ``(G, N·Ho·Wo, Cg·kh·kw)``."""
    n, c, ho, wo, kh, kw = win.shape
    cg, cog = c // group, wmat.shape[2]
    # (N, G, Cg, Ho, Wo, kh, kw) -> (G, N·Ho·Wo, Cg·kh·kw)
    cols = win.reshape(n, group, cg, ho, wo, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6).reshape(group, n * ho * wo, -1)
    y = np.matmul(cols, wmat)  # (G, N·Ho·Wo, Cout_g)
    return y.reshape(group, n, ho, wo, cog).transpose(1, 0, 4, 2, 3).reshape(n, group * cog, ho, wo)


def conv_chunks(n: int, ho: int, row_bytes: int, budget: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Chunks ``((n0, n1), (h0, h1))`` of images and output rows covering an ``n × ho`` output,
    each holding at most ``budget`` bytes of windows (``row_bytes`` per output row) where it can:
    whole images when at least one fits, else rows of one image (at least one row a chunk)."""
    image = ho * row_bytes
    if n * image <= budget:
        return [((0, n), (0, ho))]
    if image <= budget:
        step = budget // image
        return [((i, min(i + step, n)), (0, ho)) for i in range(0, n, step)]
    rows = max(1, budget // max(1, row_bytes))
    return [((i, i + 1), (h, min(h + rows, ho))) for i in range(n) for h in range(0, ho, rows)]


def ceil_extra(size: int, span: int, stride: int, pad_begin: int, pad_end: int) -> int:
    """Extra end padding that ``ceil_mode`` needs: ONNX/PyTorch take
    ``out = ceil((size + pads − span) / stride) + 1`` windows, dropping the last one if it
    would start in the end padding (``(out − 1)·stride ≥ size + pad_begin``)."""
    out = -(-(size + pad_begin + pad_end - span) // stride) + 1
    if (out - 1) * stride >= size + pad_begin:
        out -= 1
    return max(0, (out - 1) * stride + span - (size + pad_begin + pad_end))


def span_of(a: dict[str, Any]) -> tuple[int, int]:
    """Extent ``(k − 1)·d + 1`` of a pool's (dilated) window along H and W."""
    k, d = tuple(a["kernel_shape"]), tuple(a.get("dilations", (1, 1)))
    return (k[0] - 1) * d[0] + 1, (k[1] - 1) * d[1] + 1


def pool_pads(hw: tuple[int, ...], a: dict[str, Any]) -> tuple[int, int, int, int]:
    """A pool's ``(top, left, bottom, right)`` pads on an ``hw`` input, ``ceil_mode``'s extra included."""
    t, l, b, r = a["pads"]
    if a.get("ceil_mode", 0):
        span = span_of(a)
        b += ceil_extra(hw[0], span[0], a["strides"][0], t, b)
        r += ceil_extra(hw[1], span[1], a["strides"][1], l, r)
    return t, l, b, r


def window_out(hw: tuple[int, ...], span: tuple[int, int], strides: tuple[int, ...],
               pads: tuple[int, ...]) -> tuple[int, int]:
    """Output ``(Ho, Wo)`` of a window op: ``⌊(size + pads − span) / stride⌋ + 1`` per axis."""
    t, l, b, r = pads
    return ((hw[0] + t + b - span[0]) // strides[0] + 1, (hw[1] + l + r - span[1]) // strides[1] + 1)


def pool_shape(shapes: list[tuple[int, ...]], a: dict[str, Any]) -> tuple[int, ...]:
    """Shape rule of MaxPool and AveragePool: ``(N, C, Ho, Wo)``, ``Ho = ⌊(H + pads − span) / s⌋ + 1``
    with ``ceil_mode``'s extra end padding."""
    x = shapes[0]
    return (*x[:2], *window_out(x[2:], span_of(a), a["strides"], pool_pads(x[2:], a)))
