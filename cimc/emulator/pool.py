"""MaxPool as the emulator runs it: the bits of the reference's kernel (``cimc.ops.defs.maxpool``:
``y[n,c,h,w] = max_{i,j} x_pad[n, c, h·s_h + i·d_h, w·s_w + j·d_w]``, padding −∞) without its
temporaries. The input is padded into a reused pixel-major ``(H + pads, W + pads, N, C)``
buffer of the emulator's ``Workspace`` (the layout of a CIM layer's output, so the copy runs
over whole rows of channels) and the taps are reduced into one output array with
``np.maximum(…, out=…)``; a maximum is exact, so neither the order of the taps nor the memory
order changes a value. (ResNet-50, batch 8: the reference's kernel took 30–60 ms a run,
``benchmarks/results/emulator.md``.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cimc.emulator.workspace import Workspace
from cimc.ops.windows import pool_pads, pool_shape, window_tap


def max_pool(x: np.ndarray, attrs: dict[str, Any], work: Workspace) -> np.ndarray:
    """MaxPool of float32 ``x`` ``(N, C, H, W)``: an ``(N, C, Ho, Wo)`` view of a new
    pixel-major ``(Ho, Wo, N, C)`` array (module doc)."""
    n, c, h, w = x.shape
    t, left, b, r = pool_pads((h, w), attrs)
    padded = work.array("pool", (h + t + b, w + left + r, n, c))
    padded.fill(-np.inf)
    padded[t:t + h, left:left + w] = x.transpose(2, 3, 0, 1)
    view = padded.transpose(2, 3, 0, 1)
    _, _, ho, wo = pool_shape([x.shape], attrs)
    dilations = tuple(attrs.get("dilations", (1, 1)))
    out = np.empty((ho, wo, n, c), dtype=np.float32).transpose(2, 3, 0, 1)
    taps = [window_tap(view, tap, attrs["strides"], dilations, (ho, wo)) for tap in np.ndindex(*attrs["kernel_shape"])]
    np.copyto(out, taps[0])
    for tap in taps[1:]:
        np.maximum(out, tap, out=out)
    return out
