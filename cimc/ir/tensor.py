"""Tensor metadata of the IR: every tensor has a name, a static shape and a dtype."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TensorInfo:
    """A tensor's static description. ``shape`` holds concrete non-negative ints only."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    @property
    def size(self) -> int:
        """Number of elements, computed with Python ints (never overflows)."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    def with_shape(self, shape: tuple[int, ...]) -> TensorInfo:
        return TensorInfo(self.name, tuple(int(d) for d in shape), self.dtype)


def readonly(array: np.ndarray) -> np.ndarray:
    """Return a C-contiguous copy-on-need of ``array`` that cannot be written to."""
    out = np.ascontiguousarray(array)
    if out is array and array.flags.writeable:
        out = array.copy()
    out.flags.writeable = False
    return out
