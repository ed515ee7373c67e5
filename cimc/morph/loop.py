"""The CIM-aware morphing loop (paper Section II.C, Fig. 5): shrink → prune → expand → fine-tune.

Each round:

1. **shrink**: train with ``L_CE + λ(t)·F`` (``MorphRegularizer``; λ ramps over the first 2/3 of
   the shrink epochs' global steps, then holds; under ``torchrun`` the ranks share each global
   batch, so the count of steps, ``TrainData.steps_per_epoch(world)``, is every rank's);
2. **prune**: drop every channel class whose importance ``|γ|`` (group norm over tied BNs) is
   ``≤ threshold``;
3. **expand**: the largest single ratio ``R`` whose bitlines — the compile path's count — fit
   the budget (``search_ratio``), new channels initialised small (``cimc.morph.initialise``);
4. **fine-tune**: train without the regularizer.

The paper runs three rounds. Training goes through the trainer hook (``fit`` protocol of
``cimc.train.trainer``: ours or the user's), so the loop's cost is the trainer's. With
``lam=None`` λ is set per round so that ``λ·F`` equals ``strength`` at the start of the
round (``F`` is in parameters or bitlines, whose scale differs by orders of magnitude
between models; the paper's VGG9 value, 5e-8 per parameter, is a fixed λ).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.morph.planning import MorphOptions
from cimc.morph.regularizer import MorphRegularizer
from cimc.morph.structure import morph_structure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopOptions:
    """Rounds, epochs and learning rates (paper: 3 rounds, Adam 0.05 shrink / 0.01 fine-tune)."""

    rounds: int = 3
    shrink_epochs: int = 10
    finetune_epochs: int = 10
    lr_shrink: float = 5e-2
    lr_finetune: float = 1e-2
    lam: float | None = None
    strength: float = 1.0
    cost: str = "params"
    threshold: float = 1e-2
    morph: MorphOptions = field(default_factory=MorphOptions)
    seed: int = 0
    progress: bool = True


@dataclass(frozen=True)
class RoundLog:
    """One round's figures: after pruning, after expansion and fine-tuning."""

    round: int
    lam: float
    shrink_acc: float
    pruned_params: int
    pruned_bitlines: int
    ratio: float | None
    params: int
    bitlines: int
    macros: int
    usage: float
    accuracy: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LoopResult:
    graph: Graph
    initial: dict[str, float]
    rounds: list[RoundLog]


Trainer = Callable[..., dict[str, float]]
Callback = Callable[[RoundLog], None]


def morph_loop(graph: Graph, data: Any, macro: MacroSpec, budget: int, options: LoopOptions | None = None, *,
               trainer: Trainer | None = None, on_round: Callback | None = None) -> LoopResult:
    """Run ``options.rounds`` rounds on ``graph`` with ``data`` (a ``cimc.train.TrainData``)."""
    from cimc.train import evaluate, fit, module_from_graph

    options = options or LoopOptions()
    train = trainer or fit
    base = _cost(graph, macro, budget, options)
    initial = {"accuracy": evaluate(module_from_graph(graph), data), "params": float(base.params),
               "bitlines": float(base.bitlines), "usage": base.macro_usage}
    rounds: list[RoundLog] = []
    for index in range(1, options.rounds + 1):
        graph, entry = _round(graph, data, macro, budget, options, train, index, module_from_graph)
        rounds.append(entry)
        log.info("round %d: %s", index, entry)
        if on_round is not None:
            on_round(entry)
    return LoopResult(graph, initial, rounds)


def _cost(graph: Graph, macro: MacroSpec, budget: int, options: LoopOptions) -> Any:
    from cimc.morph.structure import placed_cost

    return placed_cost(graph, macro, options.morph, budget)


def _initial_cost(reg: MorphRegularizer, module: Any) -> float:
    import torch

    with torch.no_grad():
        return max(float(reg.cost(module.bn_gammas())), 1e-30)


def _round(graph: Graph, data: Any, macro: MacroSpec, budget: int, options: LoopOptions, train: Trainer,
           index: int, build: Callable[[Graph], Any]) -> tuple[Graph, RoundLog]:
    start = time.perf_counter()
    module = build(graph)
    from cimc.train.ddp import world_size

    steps = options.shrink_epochs * data.steps_per_epoch(world_size())  # global steps: λ's ramp counts them
    reg = MorphRegularizer(graph, macro, 1.0, steps, variant=options.cost, threshold=options.threshold,
                           tiling=options.morph.tiling, map_fc=options.morph.map_fc)
    reg.lam = options.lam if options.lam is not None else options.strength / _initial_cost(reg, module)
    seed = options.seed + 100 * index
    shrunk = train(module, data, "shrink", epochs=options.shrink_epochs, lr=options.lr_shrink, regularizer=reg,
                   progress=options.progress, seed=seed)
    morph = replace(options.morph, threshold=options.threshold, keep=None, seed=seed)
    result = morph_structure(module.to_graph(), macro, budget, morph)
    module = build(result.graph)
    tuned = train(module, data, "finetune", epochs=options.finetune_epochs, lr=options.lr_finetune,
                  progress=options.progress, seed=seed + 1)
    cost = result.cost
    entry = RoundLog(index, reg.lam, float(shrunk.get("test_acc", float("nan"))), result.report.pruned.params,
                     result.report.pruned.bitlines, result.report.ratio, cost.params, cost.bitlines, cost.macros,
                     cost.macro_usage, float(tuned.get("test_acc", float("nan"))), time.perf_counter() - start)
    return module.to_graph(), entry
