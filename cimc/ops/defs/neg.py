"""Neg: ``y = −x`` (elementwise; channel-preserving, can be negative, homogeneous: ``−(c·x) = c·(−x)``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.ops.base import Attrs, always, never
from cimc.ops.unary import unary_op

if TYPE_CHECKING:
    import torch


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return np.negative(ins[0])


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return -ins[0]


DEFS = (unary_op("Neg", _kernel, _torch, nonnegative=never, homogeneous=always),)
