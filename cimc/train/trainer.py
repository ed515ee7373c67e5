"""The trainer hook: the ``fit`` protocol and cimc's default trainer.

Protocol (any callable with this signature can replace ours, e.g. ``--trainer pkg.mod:fit``)::

    fit(model: torch.nn.Module, data: TrainData, phase: str, *, epochs: int, lr: float,
        regularizer: Callable[[torch.nn.Module], torch.Tensor] | None = None,
        progress: bool = True, checkpoint: Path | None = None, seed: int = 0) -> dict[str, float]

``model`` is an ``IRModule`` already switched to its phase (step sizes calibrated and
frozen or trainable as the phase requires: train what ``requires_grad``); it is trained in
place. ``phase`` is ``"float"``, ``"1"``, ``"2"``, ``"shrink"`` or ``"finetune"`` (for
logs and default learning rates). ``regularizer(model)`` is added to the loss (MorphNet's
term in the shrink phase). The result holds at least ``train_loss`` (mean of the last
epoch) and ``test_acc`` (fraction correct on ``data.test``).

The default ``fit``: cross-entropy + regularizer, Adam at ``lr`` (paper, Sec. III.A:
float seed 1e-2, shrink 5e-2, fine-tune 1e-2, phase 1 1e-3, phase 2 1e-2 — ``DEFAULT_LR``),
the learning rate following a cosine from ``lr`` to 0 over all steps of the given epochs
(so the paper's 100–300-epoch schedules scale down to short runs), a rich progress bar,
deterministic seeds, a safetensors checkpoint after every epoch (resumed from when the
file exists for the same phase), and DDP under ``torchrun`` (``cimc.train.ddp``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from cimc.train.checkpoint import load_checkpoint, read_meta, save_checkpoint
from cimc.train.datasets import TrainData
from cimc.train.ddp import DistContext, dist_context, mean_over_ranks, wrap
from cimc.train.progress import EpochBar

log = logging.getLogger(__name__)

DEFAULT_LR: dict[str, float] = {"float": 1e-2, "shrink": 5e-2, "finetune": 1e-2, "1": 1e-3, "2": 1e-2}
Regularizer = Callable[[nn.Module], torch.Tensor]


class Trainer(Protocol):
    """The ``fit`` protocol (see the module docstring)."""

    def __call__(self, model: nn.Module, data: TrainData, phase: str, *, epochs: int, lr: float,
                 regularizer: Regularizer | None = None, progress: bool = True,
                 checkpoint: Path | None = None, seed: int = 0) -> dict[str, float]: ...


def cosine_factor(step: int, total: int) -> float:
    """``½(1 + cos(π·step/total))``: 1 at the first step, → 0 at the last."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def fit(model: nn.Module, data: TrainData, phase: str, *, epochs: int, lr: float | None = None,
        regularizer: Regularizer | None = None, progress: bool = True, checkpoint: Path | None = None,
        seed: int = 0) -> dict[str, float]:
    """cimc's default trainer (see the module docstring)."""
    ctx = dist_context()
    torch.manual_seed(seed)
    base_lr = DEFAULT_LR.get(phase, 1e-3) if lr is None else lr
    net = wrap(model, ctx)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=base_lr)
    start = _resume(checkpoint, model, optimizer, phase)
    total = epochs * data.steps_per_epoch(ctx.world)
    loss = math.nan
    with EpochBar(f"phase {phase}", epochs, data.steps_per_epoch(ctx.world), progress and ctx.is_main) as bar:
        bar.skip(start)
        for epoch in range(start, epochs):
            state = {"epoch": epoch, "seed": seed, "base_lr": base_lr, "total": total}
            loss = _epoch(net, model, data, optimizer, regularizer, ctx, state, bar)
            if checkpoint is not None and ctx.is_main:
                save_checkpoint(checkpoint, model, optimizer, {"phase": phase, "epoch": epoch + 1,
                                                               "epochs": epochs, "seed": seed})
    return {"train_loss": mean_over_ranks(loss, ctx), "test_acc": evaluate(model, data, ctx.device),
            "epochs": float(epochs)}


def train_steps(model: nn.Module, data: TrainData, steps: int, *, lr: float, seed: int = 0) -> float:
    """``steps`` Adam steps on ``model`` (single process, no checkpoint, no progress bar), the
    learning rate on a cosine from ``lr`` to 0, batches epoch after epoch as ``fit`` draws
    them; returns the mean loss of the last ``steps_per_epoch`` steps (for short fine-tunes).
    ``TrainData`` is never empty, so every epoch brings a step."""
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if steps <= 0 or not params:
        return math.nan
    optimizer = torch.optim.Adam(params, lr=lr)
    device = params[0].device
    model.train()
    losses: list[float] = []
    epoch = 0
    while len(losses) < steps:
        for x, y in data.batches("train", epoch=epoch, seed=seed):
            for group in optimizer.param_groups:
                group["lr"] = lr * cosine_factor(len(losses), steps)
            losses.append(_step(model, model, x.to(device), y.to(device), optimizer, None))
            if len(losses) == steps:
                break
        epoch += 1
    tail = losses[-data.steps_per_epoch():]
    return sum(tail) / len(tail)


def _resume(checkpoint: Path | None, model: nn.Module, optimizer: torch.optim.Optimizer, phase: str) -> int:
    if checkpoint is None or not checkpoint.is_file() or read_meta(checkpoint).get("phase") != phase:
        return 0
    meta = load_checkpoint(checkpoint, model, optimizer, phase)
    log.info("resumed phase %s from %s after epoch %d", phase, checkpoint, meta["epoch"])
    return int(meta["epoch"])


def _epoch(net: nn.Module, model: nn.Module, data: TrainData, optimizer: torch.optim.Optimizer,
           regularizer: Regularizer | None, ctx: DistContext, state: dict[str, Any], bar: EpochBar) -> float:
    net.train()
    steps = data.steps_per_epoch(ctx.world)
    losses = torch.zeros((), dtype=torch.float64)
    count = 0
    batches = data.batches("train", epoch=state["epoch"], seed=state["seed"], rank=ctx.rank, world=ctx.world)
    for i, (x, y) in enumerate(batches):
        factor = cosine_factor(state["epoch"] * steps + i, state["total"])
        for group in optimizer.param_groups:
            group["lr"] = state["base_lr"] * factor
        loss = _step(net, model, x.to(ctx.device), y.to(ctx.device), optimizer, regularizer)
        losses += loss
        count += 1
        bar.advance(loss)
    return float(losses) / max(count, 1)


def _step(net: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
          regularizer: Regularizer | None) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(x), y)
    total = loss if regularizer is None else loss + regularizer(model)
    total.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def evaluate(model: nn.Module, data: TrainData, device: torch.device | None = None, split: str = "test") -> float:
    """Top-1 accuracy of ``model`` (eval mode) on ``split``, on every rank the full split."""
    was_training = model.training
    model.eval()
    correct, seen = 0, 0
    for x, y in data.batches(split, shuffle=False):
        pred = model(x.to(device) if device is not None else x).argmax(dim=1).cpu()
        correct += int((pred == y).sum())
        seen += int(y.numel())
    model.train(was_training)
    return correct / max(seen, 1)
