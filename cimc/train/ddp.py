"""Distributed data parallel: the default trainer runs unchanged under ``torchrun``.

``dist_context()`` joins the process group that ``torchrun`` describes in the environment
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR/PORT``), or one a caller already
initialised, with NCCL on GPUs and gloo on CPUs; alone it is rank 0 of 1. ``wrap`` puts the
module in ``DistributedDataParallel``, which broadcasts rank 0's parameters and buffers
(step sizes included) at construction and all-reduces gradients, so every rank keeps
identical weights and step sizes. Structural changes — phase switches, calibration,
morphing — happen on the bare module outside DDP, before ``wrap``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_context() -> DistContext:
    """This process's rank, world size and device (initialising the group from torchrun's env)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if not dist.is_available() or (world <= 1 and not dist.is_initialized()):
        return DistContext(device=_device(0))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return DistContext(dist.get_rank(), dist.get_world_size(), _device(local))


def world_size() -> int:
    """The number of ranks training together — the process group's, else torchrun's
    ``WORLD_SIZE``, else 1 — without joining a group (each rank steps through ``1/world`` of
    an epoch: ``TrainData.steps_per_epoch(world)``)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return max(int(os.environ.get("WORLD_SIZE", "1")), 1)


def _device(local_rank: int) -> torch.device:
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def wrap(model: nn.Module, ctx: DistContext) -> nn.Module:
    """``model`` on its device, in DDP when there is more than one rank."""
    model.to(ctx.device)
    if ctx.world == 1:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def mean_over_ranks(value: float, ctx: DistContext) -> float:
    """The average of ``value`` over all ranks (the value itself when alone)."""
    if ctx.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return float(t.item()) / ctx.world
