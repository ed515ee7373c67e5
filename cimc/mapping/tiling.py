"""How a CIM layer's unrolled rows split into wordline segments of at most WL rows.

A layer's group has ``rows = C·k`` rows (``C`` input channels, ``k = kh·kw`` kernel
positions, row ``r = c·k + p``). ``segment_bounds`` returns the boundaries:

* ``channel`` (default, the paper and ColumnQuant): ``n = floor(WL / k)`` whole channels
  per segment, bounds ``0, n·k, 2n·k, …, C·k`` — 28 channels for 3×3 on 256 wordlines. If
  ``k > WL`` a kernel does not fit in the array and each channel is split into
  ``ceil(k / WL)`` pieces of at most WL rows.
* ``dense``: bounds ``0, WL, 2·WL, …, C·k`` regardless of channel boundaries.

The tile-wordlines pass, the cost model, ``cimc validate`` and the QAT hook all use these.
"""

from __future__ import annotations

import numpy as np

from cimc.errors import UsageError
from cimc.ir.annotations import CimLayer, WordlineTiling
from cimc.options import OPTIONS

MODES = OPTIONS["tiling"].choices


def segment_bounds(channels: int, kernel_size: int, wordlines: int, mode: str = "channel") -> np.ndarray:
    """Segment boundaries (int64, strictly increasing, from 0 to ``channels·kernel_size``)."""
    rows = channels * kernel_size
    if mode == "dense":
        return np.unique(np.append(np.arange(0, rows, wordlines), rows))
    if mode != "channel":
        raise UsageError(f"unknown tiling mode '{mode}'; choose one of {', '.join(MODES)}")
    if kernel_size <= wordlines:
        per_segment = wordlines // kernel_size
        return np.append(np.arange(0, channels, per_segment) * kernel_size, rows)
    pieces = np.append(np.arange(0, kernel_size, wordlines), kernel_size)[:-1]
    starts = (np.arange(channels)[:, None] * kernel_size + pieces[None, :]).reshape(-1)
    return np.append(starts, rows)


def tiling_for(layer: CimLayer, wordlines: int, mode: str) -> WordlineTiling:
    k = layer.kernel[0] * layer.kernel[1]
    bounds = segment_bounds(layer.rows // k, k, wordlines, mode)
    return WordlineTiling(mode, wordlines, tuple(int(b) for b in bounds))
