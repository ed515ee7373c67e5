"""Weight-pool QAT (``cimc qat --weight-pool``; docs/weight-pool.md, 'QAT with pools').

The pool ``p (P, L)`` of ``±1`` is built once, before phase 1, by the compile path's binary
k-means (``cimc.quant.weight_pool.pool_layers``) on the BN-folded weights, which also gives each
layer's initial scale ``α`` (its ``S_W``); it then stays fixed. In every forward pass, with the
latent (BN-folded) weights ``W`` cut into vectors ``(s, o)`` as the compile path cuts them and
``u = W/α``:

    idx[s, o] = argmax_k ⟨u[s, o], p_k⟩                 (re-assigned every step; first maximum)
    e[s, o]   = sign(u[s, o] − A·p_idx)  (+1 on 0; E = 1 only, real rows only)
    q         = A·p_idx + e                              (A = 2^E; the fraction ρ of positions whose
                                                          e removes the least squared error in
                                                          weight units ``α²·Σ((u−Ap)² − (u−Ap−e)²)``
                                                          get e = 0, whole vectors)

and the layer computes with the codes ``q`` and ``S_W = α`` exactly as any layer does with its
LSQ codes (phase 1 ``conv(a_q, q)·α·S_A``, phase 2 through the ADC per vector position). The
index choice is not differentiable; the straight-through estimator treats ``q`` as ``u``:

    ∂q/∂u = 1 where |u| ≤ A + E (the largest code), 0 outside

so the latent weights train (and move between pool vectors and error signs), and ``α`` gets LSQ's
gradient ``q − u`` (inside) through ``u = W/α`` and the product with ``α``. ``α`` is learned in phase
1 and frozen in phase 2, like every ``S_W``. The error terms are learned through ``W``: they are
the signs of the latent residual. Export writes ``fl32(α·q)`` and the pool (``cimc.quant.pool_metadata``),
from which the compile path re-derives these very indices and error terms.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from cimc.quant.weight_pool import PoolConfig, pool_layers


class SharedPool(nn.Module):
    """The model's one pool (buffer ``pool (P, L)`` float32 ``±1``, ``built``) and its settings."""

    pool: torch.Tensor
    built: torch.Tensor

    def __init__(self, config: PoolConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("pool", torch.ones(config.pool_size, config.vector_length, dtype=torch.float32))
        self.register_buffer("built", torch.zeros((), dtype=torch.bool))

    def build(self, matrices: list[np.ndarray]) -> list[np.ndarray]:
        """Binary k-means over the ``(Cout, rows)`` matrices; returns each layer's initial ``α``."""
        pool, layers = pool_layers(matrices, self.config)
        with torch.no_grad():
            self.pool.copy_(torch.from_numpy(pool.astype(np.float32)))
            self.built.fill_(True)
        return [x.scale for x in layers]

    def codes(self, u: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """The codes ``q (Cout, rows)`` of the scaled weights ``u (Cout, rows)`` (module doc) with
        the straight-through gradient to ``u``; ``alpha`` ``(1,)`` or ``(Cout,)`` weighs the pruning."""
        if not bool(self.built):
            raise RuntimeError("the weight pool is not built yet: prepare phase 1 or 2 first")
        q = pool_codes(u.detach(), self.pool, self.config, alpha.detach())
        out: torch.Tensor = _Substitute.apply(u, q, float(self.config.multiplier + self.config.error_bits))
        return out

    def extra_repr(self) -> str:
        c = self.config
        return f"size={c.pool_size}, length={c.vector_length}, error_bits={c.error_bits}, prune={c.error_prune}"


class _Substitute(torch.autograd.Function):
    """Forward: the codes ``q`` exactly. Backward: ``grad·[|u| ≤ qmax]`` to ``u`` (STE)."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, q: torch.Tensor, qmax: float) -> torch.Tensor:
        ctx.save_for_backward(u.abs() <= qmax)
        return q.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None


def vectors(m: torch.Tensor, length: int) -> torch.Tensor:
    """``(S, Cout, L)`` vectors of a ``(Cout, rows)`` matrix, the last one zero-padded
    (``cimc.quant.weight_pool.vectors``)."""
    cout, rows = m.shape
    segments = -(-rows // length)
    padded = torch.nn.functional.pad(m, (0, segments * length - rows))
    return padded.reshape(cout, segments, length).transpose(0, 1)


@torch.no_grad()
def pool_codes(u: torch.Tensor, pool: torch.Tensor, config: PoolConfig, alpha: torch.Tensor) -> torch.Tensor:
    """``q = A·p_idx + e`` ``(Cout, rows)`` float32 of ``u (Cout, rows)`` (module doc)."""
    cout, rows = u.shape
    v = vectors(u, config.vector_length)  # (S, Cout, L)
    index = torch.argmax(v @ pool.t(), dim=2)  # (S, Cout): first maximum, like numpy
    q = config.multiplier * pool[index]
    if config.error_bits:
        real = vectors(torch.ones(1, rows, dtype=u.dtype, device=u.device), config.vector_length)  # (S, 1, L)
        e = torch.where(v - q >= 0, 1.0, -1.0) * real
        if config.error_prune > 0:
            e = _prune(v, q, e, alpha, config.error_prune)
        q = q + e
    return q.transpose(0, 1).reshape(cout, -1)[:, :rows].contiguous()


def _prune(v: torch.Tensor, base: torch.Tensor, e: torch.Tensor, alpha: torch.Tensor, prune: float) -> torch.Tensor:
    """``e`` with the ``⌊ρ·S·Cout⌋`` positions of least gain ``α²·Σ_t ((v−b)² − (v−b−e)²)`` zeroed
    (stable order over ``(s, o)``, as ``cimc.quant.weight_pool``)."""
    gain = ((v - base) ** 2 - (v - base - e) ** 2).sum(dim=2) * alpha.reshape(1, -1) ** 2  # (S, Cout)
    drop = int(np.floor(prune * gain.numel()))
    if not drop:
        return e
    order = torch.argsort(gain.reshape(-1), stable=True)[:drop]
    keep = torch.ones(gain.numel(), dtype=e.dtype, device=e.device)
    keep[order] = 0
    return e * keep.reshape(*gain.shape, 1)
