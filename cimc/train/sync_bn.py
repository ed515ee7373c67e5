"""Training-mode BatchNorm with the statistics of the global batch, over all DDP ranks.

Under DDP each rank holds rows ``r::world`` of the global batch (``cimc.train.datasets``).
For the step to be the single-process one, BatchNorm must normalise with the statistics of
the whole global batch, not of the rank's rows (as ``torch.nn.SyncBatchNorm`` does on
GPUs; this works on CPUs too). Per channel ``c``, with ``n`` the global count of values::

    μ_c = Σ_ranks Σ x / n,   σ²_c = Σ_ranks Σ (x − μ_c)² / n,   y = γ·(x − μ_c)/√(σ²_c + ε) + β

and the running statistics move by ``momentum`` towards ``μ`` and the unbiased
``σ²·n/(n−1)``, as ``F.batch_norm`` does. The sums are all-reduced with autograd (the
gradient of a sum over ranks is the sum over ranks of the gradients), so DDP's average of
the ranks' gradients is the gradient of the global batch's loss.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


class _SumOverRanks(torch.autograd.Function):
    """``y = Σ_ranks x`` on every rank; backward: ``∂L/∂x = Σ_ranks ∂L/∂y``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        out = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out


def ranks_joined() -> bool:
    """Whether this process is in a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def sum_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``x`` over all ranks, differentiable."""
    out: torch.Tensor = _SumOverRanks.apply(x)
    return out


def synced_batch_norm(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor,
                      gamma: torch.Tensor, beta: torch.Tensor, momentum: float, eps: float) -> torch.Tensor:
    """Training-mode BatchNorm of ``x`` (N, C, …) with the global batch's statistics (module
    docstring); updates the running statistics in place."""
    dims = [0, *range(2, x.ndim)]
    shape = (1, -1, *([1] * (x.ndim - 2)))
    local = torch.tensor([x.numel() / max(x.shape[1], 1)], dtype=x.dtype, device=x.device)
    sums = sum_over_ranks(torch.cat([x.sum(dim=dims), local]))
    count = sums[-1].detach()
    mean = sums[:-1] / count
    centred = x - mean.reshape(shape)
    var = sum_over_ranks((centred * centred).sum(dim=dims)) / count
    with torch.no_grad():
        running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
        running_var.mul_(1 - momentum).add_(momentum * var.detach() * count / (count - 1).clamp_min(1))
    return centred * torch.rsqrt(var + eps).reshape(shape) * gamma.reshape(shape) + beta.reshape(shape)
