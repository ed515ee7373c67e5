"""Structure-only morph: prune by BN ``|γ|``, expand to the bitline budget, rewrite — no training.

``plan_morph`` chains ``prune_plan`` (threshold and/or keep ratio per group) and, with a
budget, ``search_ratio``; ``morph_structure`` then runs the ``morph-channels`` pass and
checks the result with the compile path's cost model (select-cim → tile-wordlines →
place-bitlines → ``model_cost``): the bitlines the search predicted must be the bitlines
``model_cost`` counts, and they must fit the budget. The morphed weights are a starting
point, not a trained model: they need fine-tuning (``cimc morph`` does both).
The prune rules and the planning are ``cimc.morph.planning``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cimc.cost.model import ModelCost, model_cost
from cimc.errors import PassError
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.morph.channel_groups import ChannelGroups
from cimc.morph.channels_pass import MorphChannels
from cimc.morph.plan import ChannelPlan
from cimc.morph.planning import MorphOptions, MorphReport, plan_morph
from cimc.passes.manager import PassContext, run_passes
from cimc.passes.pipelines import MAPPING, instantiate


@dataclass(frozen=True)
class MorphResult:
    graph: Graph
    plan: ChannelPlan
    report: MorphReport
    cost: ModelCost


def placed_cost(graph: Graph, macro: MacroSpec, options: MorphOptions, budget: int | None = None) -> ModelCost:
    """``model_cost`` of ``graph`` after the ``MAPPING`` pipeline (select-cim → tile-wordlines →
    place-bitlines) with the options' map-fc, tiling and placement."""
    return model_cost(run_passes(graph, instantiate(MAPPING, options), PassContext(macro=macro)), macro, budget)


def morph_structure(graph: Graph, macro: MacroSpec, budget: int | None, options: MorphOptions,
                    score: np.ndarray | None = None) -> MorphResult:
    """Prune, expand and rewrite ``graph``; check the result with ``model_cost``."""
    ctx = PassContext(macro=macro, bitline_budget=budget)
    captured: dict[str, Any] = {}

    def planner(g: Graph, groups: ChannelGroups, c: PassContext) -> ChannelPlan:
        captured["plan"], captured["report"] = plan_morph(g, groups, c.macro, c.bitline_budget, options, score)
        return captured["plan"]

    morph = MorphChannels(planner=planner, init=options.init, scale=options.scale, noise=options.noise,
                          seed=options.seed)
    out = run_passes(graph, [morph], ctx)
    cost = placed_cost(out, macro, options, budget)
    check_cost(captured["report"], cost, macro)
    return MorphResult(out, captured["plan"], captured["report"], cost)


def check_cost(report: MorphReport, cost: ModelCost, macro: MacroSpec) -> None:
    """The search's prediction must be ``model_cost``'s count, within the budget."""
    after = report.after
    if (after.bitlines, after.macros, after.params) != (cost.bitlines, cost.macros, cost.params):
        raise PassError(f"morph predicted {after.bitlines} bitlines / {after.macros} macros / {after.params} "
                        f"params but the cost model counts {cost.bitlines} / {cost.macros} / {cost.params}")
    if report.budget is not None and report.ratio is not None and not after.fits(report.budget, macro):
        raise PassError(f"morph result needs {cost.bitlines} bitlines, over the budget of {report.budget}")
