"""Numpy kernels for every IR op (the reference semantics, matching ONNX).

All kernels are vectorised: convolutions and pools build a strided window view
(``sliding_window_view``) and reduce it with one ``matmul``/``max``/``sum``; no Python loop
runs over pixels, channels or groups.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Kernel = Callable[[list[np.ndarray], dict[str, Any]], np.ndarray]


def _pad_hw(x: np.ndarray, pads: tuple[int, ...], value: float) -> np.ndarray:
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


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, strides: tuple[int, ...],
           pads: tuple[int, ...], dilations: tuple[int, ...], group: int) -> np.ndarray:
    """y[n,o,h,w] = b[o] + Σ_{c∈group(o), i, j} W[o,c,i,j] · x_pad[n, c, h·s+i·d, w·s+j·d]."""
    n, _c = x.shape[:2]
    cout, cg, kh, kw = w.shape
    win = windows(_pad_hw(x, pads, 0.0), (kh, kw), strides, dilations)
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


def _conv(ins: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
    b = ins[2] if len(ins) > 2 else None
    return conv2d(ins[0], ins[1], b, a["strides"], a["pads"], a["dilations"], a["group"])


def ceil_extra(size: int, span: int, stride: int, pad_begin: int, pad_end: int) -> int:
    """Extra end padding that ``ceil_mode`` needs: ONNX/PyTorch take
    ``out = ceil((size + pads − span) / stride) + 1`` windows, dropping the last one if it
    would start in the end padding (``(out − 1)·stride ≥ size + pad_begin``)."""
    out = -(-(size + pad_begin + pad_end - span) // stride) + 1
    if (out - 1) * stride >= size + pad_begin:
        out -= 1
    return max(0, (out - 1) * stride + span - (size + pad_begin + pad_end))


def _pool_pads(x: np.ndarray, a: dict[str, Any], span: tuple[int, int]) -> tuple[int, ...]:
    t, l, b, r = a["pads"]
    if a.get("ceil_mode", 0):
        b += ceil_extra(x.shape[2], span[0], a["strides"][0], t, b)
        r += ceil_extra(x.shape[3], span[1], a["strides"][1], l, r)
    return (t, l, b, r)


def _maxpool(ins: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
    x = ins[0]
    k = tuple(a["kernel_shape"])
    d = tuple(a.get("dilations", (1, 1)))
    span = ((k[0] - 1) * d[0] + 1, (k[1] - 1) * d[1] + 1)
    xp = _pad_hw(x, _pool_pads(x, a, span), -np.inf)
    return np.ascontiguousarray(windows(xp, k, a["strides"], d).max(axis=(4, 5)), dtype=x.dtype)


def _avgpool(ins: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
    x = ins[0]
    k = tuple(a["kernel_shape"])
    pads = _pool_pads(x, a, k)
    total = windows(_pad_hw(x, pads, 0.0), k, a["strides"], (1, 1)).sum(axis=(4, 5))
    ones = np.ones((1, 1, *x.shape[2:]), dtype=x.dtype)
    if a.get("count_include_pad", 0):  # explicit pads count, ceil_mode's extra pads do not
        ones = _pad_hw(ones, a["pads"], 1.0)
        pads = (0, 0, pads[2] - a["pads"][2], pads[3] - a["pads"][3])
    count = windows(_pad_hw(ones, pads, 0.0), k, a["strides"], (1, 1)).sum(axis=(4, 5))
    return np.ascontiguousarray(total / count, dtype=x.dtype)


def _gemm(ins: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
    """y = alpha · A' · B' + beta · C with A' = Aᵀ if transA, B' = Bᵀ if transB."""
    x = ins[0].T if a["transA"] else ins[0]
    w = ins[1].T if a["transB"] else ins[1]
    y = a["alpha"] * (x @ w)
    if len(ins) > 2:
        y = y + a["beta"] * ins[2]
    return np.asarray(y, dtype=ins[0].dtype)


def _batchnorm(ins: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
    """y = γ · (x − μ) / √(σ² + ε) + β, per channel (axis 1)."""
    x, g, beta, mean, var = ins
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = g / np.sqrt(var + np.float32(a["epsilon"]))
    return (x - mean.reshape(shape)) * scale.reshape(shape) + beta.reshape(shape)


def _softmax(ins: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
    x = ins[0]
    e = np.exp(x - x.max(axis=a["axis"], keepdims=True))
    return e / e.sum(axis=a["axis"], keepdims=True)


def _lrn(ins: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
    """y = x / (bias + alpha/size · Σ_{c' in window(c)} x[c']²)^beta (ONNX window)."""
    x = ins[0]
    size = a["size"]
    lo = (size - 1) // 2  # window is [c − floor((size−1)/2), c + ceil((size−1)/2)]
    hi = size - 1 - lo
    sq = np.pad(x * x, ((0, 0), (lo, hi)) + ((0, 0),) * (x.ndim - 2))
    csum = np.cumsum(sq, axis=1, dtype=np.float64)
    csum = np.concatenate([np.zeros_like(csum[:, :1]), csum], axis=1)
    win = csum[:, size:] - csum[:, :-size]
    return (x / (a["bias"] + a["alpha"] / size * win) ** a["beta"]).astype(x.dtype)


def _pad(ins: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
    x = ins[0]
    pads = a["pads"]
    rank = x.ndim
    width = [(pads[i], pads[i + rank]) for i in range(rank)]
    mode = a.get("mode", "constant")
    if mode == "constant":
        return np.pad(x, width, constant_values=a.get("value", 0.0))
    return np.pad(x, width, mode="reflect" if mode == "reflect" else "edge")


def _slice(ins: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
    index = [slice(None)] * ins[0].ndim
    for s, e, ax, st in zip(a["starts"], a["ends"], a["axes"], a["steps"], strict=False):
        # canonical (clamped) ends are >= 0 except -1 with a negative step, which means "through
        # index 0"; a Python slice would read -1 as the last element
        index[ax] = slice(s, None if e < 0 else e, st)
    return ins[0][tuple(index)]


def _flatten(ins: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
    x = ins[0]
    lead = int(np.prod(x.shape[: a["axis"]], dtype=np.int64))
    rest = int(np.prod(x.shape[a["axis"]:], dtype=np.int64))
    return x.reshape(lead, rest)  # not (lead, -1): that fails for empty tensors


KERNELS: dict[str, Kernel] = {
    "Conv": _conv,
    "Gemm": _gemm,
    "MatMul": lambda ins, a: np.matmul(ins[0], ins[1]),
    "BatchNormalization": _batchnorm,
    "Relu": lambda ins, a: np.maximum(ins[0], 0).astype(ins[0].dtype),
    "Clip": lambda ins, a: np.clip(ins[0], a["min"], a["max"]).astype(ins[0].dtype),
    "LeakyRelu": lambda ins, a: np.where(ins[0] >= 0, ins[0], ins[0] * np.float32(a["alpha"])),
    "Sigmoid": lambda ins, a: (1.0 / (1.0 + np.exp(-ins[0]))).astype(ins[0].dtype),
    "MaxPool": _maxpool,
    "AveragePool": _avgpool,
    "GlobalAveragePool": lambda ins, a: ins[0].mean(axis=(2, 3), keepdims=True, dtype=ins[0].dtype),
    "Add": lambda ins, a: ins[0] + ins[1],
    "Mul": lambda ins, a: ins[0] * ins[1],
    "Sum": lambda ins, a: np.sum(np.stack(np.broadcast_arrays(*ins)), axis=0, dtype=ins[0].dtype),
    "Concat": lambda ins, a: np.concatenate(ins, axis=a["axis"]),
    "Flatten": _flatten,
    "Reshape": lambda ins, a: ins[0].reshape(a["shape"]),
    "Transpose": lambda ins, a: np.ascontiguousarray(ins[0].transpose(a["perm"])),
    "Softmax": _softmax,
    "LRN": _lrn,
    "Pad": _pad,
    "Slice": _slice,
}
