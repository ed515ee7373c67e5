"""Distributed data parallel: the default trainer runs unchanged under ``torchrun``.

``dist_context()`` joins the process group that ``torchrun`` describes in the environment
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR/PORT``), or one a caller already
initialised, with NCCL on GPUs and gloo on CPUs; alone it is rank 0 of 1. ``wrap`` puts the
module in ``DistributedDataParallel``, which broadcasts rank 0's parameters and buffers
(step sizes included) at construction and all-reduces gradients, so every rank keeps
identical weights and step sizes. Structural changes — phase switches, calibration,
morphing — happen on the bare module outside DDP, before ``wrap``.

Rank 0 alone prints, writes output files and checkpoints (``is_main_process``); figures are
sums over ranks (``sum_over_ranks``), so every rank holds the same number. For tests and
debugging, ``CIMC_DDP_DIGEST=DIR`` makes every rank write ``DIR/rank<r>.json`` with the
sha256 of its final module state and its metrics (``write_digest``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

DIGEST_ENV = "CIMC_DDP_DIGEST"


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
    ``WORLD_SIZE``, else 1 — without joining a group (the ranks share each global batch:
    ``TrainData.steps_per_epoch(world)``)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return max(int(os.environ.get("WORLD_SIZE", "1")), 1)


def rank() -> int:
    """This process's rank — the process group's, else torchrun's ``RANK``, else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Whether this process is rank 0 (the one that prints and writes files)."""
    return rank() == 0


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


def sum_over_ranks(values: list[float], ctx: DistContext) -> list[float]:
    """The element-wise sums of ``values`` over all ranks, the same on every rank (float64;
    the values themselves when alone)."""
    if ctx.world == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return [float(v) for v in t.cpu()]


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (nothing when alone)."""
    if ctx.world > 1:
        dist.barrier()


def state_digest(module: nn.Module) -> str:
    """sha256 over the module's state (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        t = value.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def write_digest(module: nn.Module, metrics: object) -> None:
    """With ``CIMC_DDP_DIGEST=DIR`` set, write ``DIR/rank<r>.json``: this rank's state digest
    and ``metrics`` (JSON-serialisable), to check that ranks agree; otherwise nothing."""
    folder = os.environ.get(DIGEST_ENV)
    if not folder:
        return
    path = os.path.join(folder, f"rank{rank()}.json")
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"rank": rank(), "sha256": state_digest(module), "metrics": metrics}, fh, sort_keys=True)
    os.replace(tmp, path)


def finish() -> None:
    """Leave the process group, if one was joined (after every rank got there)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
