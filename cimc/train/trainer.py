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

Under DDP the ranks share each global batch (``TrainData.batches``): rank ``r``'s loss is its
rows' mean cross-entropy times ``world·rows/batch``, so DDP's average of the gradients is the
gradient of the global batch's mean, and BatchNorm uses the global batch's statistics
(``cimc.train.sync_bn``): a run on ``W`` processes takes the single-process steps (up to
float rounding). Steps are *global* steps — the job's optimizer steps, the same count on
every rank and for any world size — and the learning rate and a regularizer's schedule
follow them: a regularizer with an integer ``step`` attribute (``MorphRegularizer``) has it
set to the phase's global step before each call, also after a resume. Rank 0 alone shows
progress and writes the checkpoint (atomically; the other ranks wait for it); the train
loss and test accuracy are sums over ranks (the test split sharded, each sample once), the
same figure on every rank. A checkpoint holds world-size-independent state (weights, Adam
moments, completed epochs), so a run may resume under another number of processes.
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
from cimc.train.ddp import DistContext, barrier, dist_context, sum_over_ranks, wrap
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
    steps = data.steps_per_epoch(ctx.world)
    loss = math.nan
    with EpochBar(f"phase {phase}", epochs, steps, progress and ctx.is_main) as bar:
        bar.skip(start)
        for epoch in range(start, epochs):
            state = {"epoch": epoch, "seed": seed, "base_lr": base_lr, "total": epochs * steps}
            loss = _epoch(net, model, data, optimizer, regularizer, ctx, state, bar)
            if checkpoint is not None:
                _save(checkpoint, model, optimizer, ctx, {"phase": phase, "epoch": epoch + 1, "epochs": epochs,
                                                          "seed": seed, "world": ctx.world})
    train_loss = sum_over_ranks([loss], ctx)[0] / steps
    return {"train_loss": train_loss, "test_acc": evaluate(model, data, ctx.device, ctx=ctx), "epochs": float(epochs)}


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
    log.info("resumed phase %s from %s after epoch %d (written by %s process(es))", phase, checkpoint,
             meta["epoch"], meta.get("world", 1))
    return int(meta["epoch"])


def _save(checkpoint: Path, model: nn.Module, optimizer: torch.optim.Optimizer, ctx: DistContext,
          meta: dict[str, Any]) -> None:
    """Rank 0 writes the checkpoint (atomically); every rank waits until it is in place."""
    if ctx.is_main:
        save_checkpoint(checkpoint, model, optimizer, meta)
    barrier(ctx)


def _epoch(net: nn.Module, model: nn.Module, data: TrainData, optimizer: torch.optim.Optimizer,
           regularizer: Regularizer | None, ctx: DistContext, state: dict[str, Any], bar: EpochBar) -> float:
    """One epoch; returns this rank's part of the sum over steps of the global batches' mean loss."""
    net.train()
    steps = data.steps_per_epoch(ctx.world)
    share = torch.zeros((), dtype=torch.float64)
    batches = data.batches("train", epoch=state["epoch"], seed=state["seed"], rank=ctx.rank, world=ctx.world)
    for i, (x, y) in enumerate(batches):
        step = state["epoch"] * steps + i
        for group in optimizer.param_groups:
            group["lr"] = state["base_lr"] * cosine_factor(step, state["total"])
        if hasattr(regularizer, "step"):
            regularizer.step = step  # type: ignore[union-attr]
        weight = ctx.world * len(y) / data.batch_total(i)
        loss = _step(net, model, x.to(ctx.device), y.to(ctx.device), optimizer, regularizer, weight)
        share += loss * weight / ctx.world
        bar.advance(loss * weight)
    return float(share)


def _step(net: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
          regularizer: Regularizer | None, weight: float = 1.0) -> float:
    """One optimizer step on ``weight ·`` mean cross-entropy ``+ regularizer``; returns the mean
    cross-entropy of ``(x, y)``."""
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(x), y)
    total = loss * weight if weight != 1.0 else loss
    total = total if regularizer is None else total + regularizer(model)
    total.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def evaluate(model: nn.Module, data: TrainData, device: torch.device | None = None, split: str = "test",
             ctx: DistContext | None = None) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on ``split``. With a ``ctx`` of several ranks
    (every rank must call it), each rank scores its rows ``r::world`` of every batch — each
    sample once, no padding — and the correct and seen counts are summed over the ranks, so
    every rank returns the same figure, the one of the whole split."""
    ctx = ctx or DistContext(device=device or torch.device("cpu"))
    was_training = model.training
    model.eval()
    correct, seen = 0, 0
    for x, y in data.batches(split, shuffle=False, rank=ctx.rank, world=ctx.world):
        pred = model(x.to(device) if device is not None else x).argmax(dim=1).cpu()
        correct += int((pred == y).sum())
        seen += int(y.numel())
    model.train(was_training)
    total_correct, total_seen = sum_over_ranks([float(correct), float(seen)], ctx)
    return total_correct / max(total_seen, 1.0)
