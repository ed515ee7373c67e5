"""Scratch arrays that an emulator reuses from one run to the next.

A large array that numpy allocates fresh is mapped fresh by the kernel: every run of the
emulator would pay its page faults (ResNet-50, batch 8: 0.2–0.5 s of system time per run
before, ``benchmarks/results/emulator.md``). A ``Workspace`` keeps one flat byte buffer per
name, grown to the largest request, and hands out views of it (float32 unless asked
otherwise); a name's previous view is invalid once the name is asked for again. Only
temporaries that die inside one CIM layer (float32 copies of inputs, fed DAC codes, their
padded layout, im2col rows, the pixel-major output that the adder tree sums into) and the
MaxPool's padded input come from it, never a value that outlives the
layer, so an emulator's outputs never alias it. One workspace serves one run at a time.
"""

from __future__ import annotations

import math

import numpy as np


class Workspace:
    """Named buffers, reused (module doc); a new workspace per call gives new arrays."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype: type[np.generic] = np.float32) -> np.ndarray:
        """An uninitialised C-contiguous array of ``shape`` and ``dtype`` in buffer ``name``."""
        size = math.prod(shape) * np.dtype(dtype).itemsize
        buffer = self._buffers.get(name)
        if buffer is None or buffer.size < size:
            buffer = self._buffers[name] = np.empty(-(-size // 8), dtype=np.float64).view(np.uint8)
        return buffer[:size].view(dtype).reshape(shape)

    def like(self, name: str, a: np.ndarray) -> np.ndarray:
        """An array of ``a``'s shape laid out in ``a``'s memory order (its axes by decreasing
        stride), so that an elementwise pass from ``a`` keeps the layout."""
        order = sorted(range(a.ndim), key=lambda d: -a.strides[d])
        return self.array(name, tuple(a.shape[d] for d in order)).transpose(np.argsort(order))
