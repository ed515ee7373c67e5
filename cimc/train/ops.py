"""Torch kernels for the IR ops that run in the digital periphery (float, differentiable).

Each kernel mirrors its numpy reference in ``cimc.ir.kernels`` (ONNX semantics): pools take
explicit, possibly asymmetric pads plus the extra end padding of ``ceil_mode``
(``kernels.ceil_extra``); LRN uses ONNX's channel window; Slice handles negative steps.
Conv, Gemm and MatMul that run on CIM macros, and BatchNormalization, are executed by
``cimc.train.module`` itself (they own parameters and quantizers).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cimc.ir.kernels import ceil_extra

TorchKernel = Callable[[list[torch.Tensor], dict[str, Any]], torch.Tensor]


def _pool_pads(x: torch.Tensor, a: dict[str, Any], span: tuple[int, int]) -> tuple[int, int, int, int]:
    t, l, b, r = a["pads"]
    if a.get("ceil_mode", 0):
        b += ceil_extra(x.shape[2], span[0], a["strides"][0], t, b)
        r += ceil_extra(x.shape[3], span[1], a["strides"][1], l, r)
    return t, l, b, r


def _maxpool(ins: list[torch.Tensor], a: dict[str, Any]) -> torch.Tensor:
    x, k = ins[0], tuple(a["kernel_shape"])
    d = tuple(a.get("dilations", (1, 1)))
    span = ((k[0] - 1) * d[0] + 1, (k[1] - 1) * d[1] + 1)
    t, l, b, r = _pool_pads(x, a, span)
    xp = F.pad(x, (l, r, t, b), value=-math.inf) if any((t, l, b, r)) else x
    return F.max_pool2d(xp, k, a["strides"], 0, d)


def _avgpool(ins: list[torch.Tensor], a: dict[str, Any]) -> torch.Tensor:
    x, k = ins[0], tuple(a["kernel_shape"])
    t, l, b, r = _pool_pads(x, a, k)
    total = F.avg_pool2d(F.pad(x, (l, r, t, b)), k, a["strides"], 0, divisor_override=1)
    ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
    extra = (l, r, t, b)
    if a.get("count_include_pad", 0):  # explicit pads count, ceil_mode's extra pads do not
        et, el, eb, er = a["pads"]
        ones = F.pad(ones, (el, er, et, eb), value=1.0)
        extra = (0, r - er, 0, b - eb)
    count = F.avg_pool2d(F.pad(ones, extra), k, a["strides"], 0, divisor_override=1)
    return total / count


def _gemm(ins: list[torch.Tensor], a: dict[str, Any]) -> torch.Tensor:
    """y = alpha · A' · B' + beta · C."""
    x = ins[0].t() if a["transA"] else ins[0]
    w = ins[1].t() if a["transB"] else ins[1]
    y = a["alpha"] * (x @ w)
    return y + a["beta"] * ins[2] if len(ins) > 2 else y


def _lrn(ins: list[torch.Tensor], a: dict[str, Any]) -> torch.Tensor:
    """y = x / (bias + alpha/size · Σ_{window(c)} x²)^beta, ONNX window ``[c − ⌊(s−1)/2⌋, c + ⌈(s−1)/2⌉]``."""
    x, size = ins[0], a["size"]
    lo = (size - 1) // 2
    sq = (x * x).double()
    zeros = [sq.new_zeros((x.shape[0], n, *x.shape[2:])) for n in (lo + 1, size - 1 - lo)]
    csum = torch.cumsum(torch.cat([zeros[0], sq, zeros[1]], dim=1), dim=1)
    win = (csum[:, size:] - csum[:, :-size]).to(x.dtype)
    return x / (a["bias"] + a["alpha"] / size * win) ** a["beta"]


def _pad(ins: list[torch.Tensor], a: dict[str, Any]) -> torch.Tensor:
    """Constant pads with ``F.pad``; reflect/edge by gathering ``np.pad``-ed indices per padded axis."""
    x, pads = ins[0], a["pads"]
    rank = x.ndim
    mode = a.get("mode", "constant")
    if mode == "constant":
        pairs = [p for ax in reversed(range(rank)) for p in (pads[ax], pads[ax + rank])]
        return F.pad(x, pairs, value=a.get("value", 0.0))
    for ax in range(rank):
        if pads[ax] or pads[ax + rank]:
            index = np.pad(np.arange(x.shape[ax]), (pads[ax], pads[ax + rank]), mode=mode)
            x = x.index_select(ax, torch.from_numpy(index).to(x.device))
    return x


def _slice(ins: list[torch.Tensor], a: dict[str, Any]) -> torch.Tensor:
    x = ins[0]
    for s, e, ax, st in zip(a["starts"], a["ends"], a["axes"], a["steps"], strict=False):
        x = x.index_select(ax, torch.arange(s, e, st, device=x.device))
    return x


def _flatten(ins: list[torch.Tensor], a: dict[str, Any]) -> torch.Tensor:
    x = ins[0]
    return x.reshape(math.prod(x.shape[: a["axis"]]), math.prod(x.shape[a["axis"]:]))


KERNELS: dict[str, TorchKernel] = {
    "Gemm": _gemm,
    "MatMul": lambda ins, a: torch.matmul(ins[0], ins[1]),
    "Relu": lambda ins, a: F.relu(ins[0]),
    "Clip": lambda ins, a: torch.clamp(ins[0], a["min"], a["max"]),
    "LeakyRelu": lambda ins, a: F.leaky_relu(ins[0], a["alpha"]),
    "Sigmoid": lambda ins, a: torch.sigmoid(ins[0]),
    "MaxPool": _maxpool,
    "AveragePool": _avgpool,
    "GlobalAveragePool": lambda ins, a: ins[0].mean(dim=(2, 3), keepdim=True),
    "Add": lambda ins, a: ins[0] + ins[1],
    "Mul": lambda ins, a: ins[0] * ins[1],
    "Sum": lambda ins, a: functools.reduce(torch.add, ins),
    "Concat": lambda ins, a: torch.cat(ins, dim=a["axis"]),
    "Flatten": _flatten,
    "Reshape": lambda ins, a: ins[0].reshape(a["shape"]),
    "Transpose": lambda ins, a: ins[0].permute(a["perm"]),
    "Softmax": lambda ins, a: torch.softmax(ins[0], dim=a["axis"]),
    "LRN": _lrn,
    "Pad": _pad,
    "Slice": _slice,
}
