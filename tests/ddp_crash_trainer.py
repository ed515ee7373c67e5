"""A ``--trainer`` for the resume test: cimc's ``fit`` with a zero regularizer that ends every
rank's process at the first step of epoch 2 (after epoch 1's checkpoint), like a killed job.

The trainer sets the regularizer's ``step`` to the global step before each call, so the
crash comes at the same step on every rank; ``loss + 0`` leaves the gradients unchanged.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from cimc.train import fit as cimc_fit
from cimc.train.ddp import world_size


class CrashAtEpoch2:
    """Returns 0; ends the process (exit 17) when called at global step ``at``."""

    def __init__(self, at: int) -> None:
        self.at, self.step = at, 0

    def __call__(self, model: torch.nn.Module) -> torch.Tensor:
        if self.step >= self.at:
            os._exit(17)
        return torch.zeros(())


def fit(model: torch.nn.Module, data: Any, phase: str, **kwargs: Any) -> dict[str, float]:
    crash = CrashAtEpoch2(data.steps_per_epoch(world_size()))
    return cimc_fit(model, data, phase, regularizer=crash, **kwargs)
