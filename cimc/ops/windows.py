"""The 2-D window machinery the op kernels share: window views, padding, conv, pool geometry.

All of it is vectorised: convolutions and pools build a strided window view
(``sliding_window_view``) and reduce it with one ``matmul``/``max``/``sum``; no Python loop
runs over pixels, channels or groups. The per-op kernels themselves live in ``cimc.ops.defs``.
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


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, strides: tuple[int, ...],
           pads: tuple[int, ...], dilations: tuple[int, ...], group: int) -> np.ndarray:
    """y[n,o,h,w] = b[o] + Σ_{c∈group(o), i, j} W[o,c,i,j] · x_pad[n, c, h·s+i·d, w·s+j·d]."""
    n, _c = x.shape[:2]
    cout, cg, kh, kw = w.shape
    win = windows(pad_hw(x, pads, 0.0), (kh, kw), strides, dilations)
    ho, wo = win.shape[2:4]
    # (N, G, Cg, Ho, Wo, kh, kw) -> (G, N·Ho·Wo, Cg·kh·kw)
    cols = win.reshape(n, group, cg, ho, wo, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6)
    cols = cols.reshape(group, n * ho * wo, cg * kh * kw)
    wmat = w.reshape(group, cout // group, cg * kh * kw).transpose(0, 2, 1)
    y = np.matmul(cols, wmat)  # (G, N·Ho·Wo, Cout_g)
    y = y.reshape(group, n, ho, wo, cout // group).transpose(1, 0, 4, 2, 3).reshape(n, cout, ho, wo)
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return np.ascontiguousarray(y, dtype=x.dtype)


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
