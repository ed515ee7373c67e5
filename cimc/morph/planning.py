"""Planning a structure-only morph: which channels to keep and how far to expand them.

``plan_morph`` chains ``prune_plan`` (threshold and/or keep ratio per group) and, with a
budget, ``search_ratio``; ``StructurePlanner`` is the morph-channels pass's planner that runs it.

Prune rules (``MorphOptions``): a threshold on ``|γ|`` and/or a keep ratio per group; or
``MorphOptions.usage_search()``, the rule of ``cimc compile --morph`` and of the README table:
for each of 101 values of λ in ``[0, 2]``, shrink the importances by one proximal step of the
bitline regularizer (``cimc.morph.shrink``), prune classes whose shrunk importance is ``≤ 0``,
round widths down to whole segments (28 channels for 3×3 on 256 wordlines), expand to the
budget at the exact breakpoints, and keep the candidate with the highest macro usage — the
paper's own selection among its grid-searched compressed models (Table II).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from cimc.errors import MappingError, UsageError
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.morph.bitlines import BitlineModel, MorphCost
from cimc.morph.channel_groups import ChannelGroups
from cimc.morph.costs import layer_terms
from cimc.morph.expand import Expansion, search_ratio
from cimc.morph.plan import ChannelPlan, class_scores, prune_plan, widths_to_plan
from cimc.morph.shrink import Candidate, align_widths, bitline_costs, search_lambda, segment_channels, shrunk_scores
from cimc.options import OPTIONS
from cimc.passes.manager import PassContext

log = logging.getLogger(__name__)
FINE_TUNE_WARNING = ("structure-only morph: channels were pruned by |γ| and new ones initialised without "
                     "training, so the weights need fine-tuning (cimc morph MODEL --bl N --data NAME)")


@dataclass(frozen=True)
class MorphOptions:
    """How to prune, expand and initialise (see the module docstring).

    Prune: classes whose importance, shrunk by ``cost_weight`` (λ of ``cimc.morph.shrink``),
    exceeds ``threshold``, within the top ``keep`` fraction of their group; ``align`` rounds
    widths down to whole segments. ``search > 0`` tries that many λ in ``[0, search_max]``
    and keeps the best macro usage. Expand: ``step`` grid (``None``: exact breakpoints).
    ``tiling``/``placement``/``map_fc`` are the compile options that shape the bitline count;
    ``init``/``scale``/``noise``/``seed`` initialise new channels (``cimc.morph.initialise``).
    """

    threshold: float | None = None
    keep: float | None = None
    cost_weight: float = 0.0
    align: bool = False
    search: int = 0
    search_max: float = 2.0
    expand: bool = True
    step: float | None = 1e-3
    min_width: int = 1
    tiling: str = OPTIONS["tiling"].default
    placement: str = OPTIONS["placement"].default
    map_fc: bool = OPTIONS["map_fc"].default
    init: str = "random"
    scale: float = 0.1
    noise: float = 0.01
    seed: int = 0

    @classmethod
    def usage_search(cls, **overrides: Any) -> MorphOptions:
        """The structure-only rule of the README table: λ grid search with aligned widths."""
        return cls(**{"threshold": 0.0, "align": True, "search": 101, "step": None, **overrides})


@dataclass(frozen=True)
class MorphReport:
    """Cost before, after pruning and after expansion; the ratio ``R``, λ and the groups."""

    budget: int | None
    before: MorphCost
    pruned: MorphCost
    after: MorphCost
    ratio: float | None
    cost_weight: float
    evaluations: int
    groups: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Planning:
    """What every candidate of one morph shares: the cost model, the costs, the scores."""

    def __init__(self, graph: Graph, groups: ChannelGroups, macro: MacroSpec, options: MorphOptions,
                 score: np.ndarray | None) -> None:
        self.groups, self.options = groups, options
        self.model = BitlineModel(graph, groups, macro, tiling=options.tiling, placement=options.placement,
                                  map_fc=options.map_fc)
        terms = layer_terms(graph, groups, options.map_fc)
        self.costs = bitline_costs(groups, terms, macro, options.tiling)
        self.unit = segment_channels(groups, terms, macro, options.tiling)
        self.score = class_scores(graph, groups) if score is None else score
        self.evaluations = 0

    def pruned(self, lam: float) -> ChannelPlan:
        o = self.options
        shrunk = shrunk_scores(self.groups, self.score, self.costs, lam)
        plan = prune_plan(self.groups, shrunk, threshold=o.threshold, keep=o.keep, min_width=o.min_width)
        plan = ChannelPlan(plan.keep, plan.new, self.score)
        if o.align:
            plan = widths_to_plan(self.groups, plan, align_widths(self.groups, plan.widths(self.groups), self.unit))
        return plan

    def expand(self, plan: ChannelPlan, budget: int) -> Expansion:
        o = self.options
        found = search_ratio(self.model, plan.widths(self.groups), self.groups.changeable, budget, step=o.step,
                             min_width=o.min_width)
        self.evaluations += found.evaluations
        return found

    def candidate(self, lam: float, budget: int) -> Candidate | None:
        try:
            found = self.expand(self.pruned(lam), budget)
        except MappingError:
            return None
        return Candidate(lam, found.widths, found.cost)


def plan_morph(graph: Graph, groups: ChannelGroups, macro: MacroSpec, budget: int | None,
               options: MorphOptions, score: np.ndarray | None = None) -> tuple[ChannelPlan, MorphReport]:
    """Prune by ``score`` (BN ``|γ|`` by default), then expand to ``budget`` if given."""
    if not groups.bns and score is None:
        log.warning("graph '%s' has no BatchNormalization: channels cannot be ranked by γ (run the morph "
                    "before fold-batchnorm, on a model exported with its BNs)", graph.name)
    p = _Planning(graph, groups, macro, options, score)
    lam = options.cost_weight
    if options.search and budget is not None:
        best = search_lambda(lambda x: p.candidate(x, budget), np.linspace(0.0, options.search_max, options.search))
        lam = best.lam if best is not None else lam
    pruned = p.pruned(lam)
    plan, ratio = pruned, None
    if options.expand and budget is not None:
        found = p.expand(pruned, budget)
        plan, ratio = widths_to_plan(groups, pruned, found.widths), found.ratio
    report = MorphReport(budget, p.model.evaluate(groups.group_size), p.model.evaluate(pruned.widths(groups)),
                         p.model.evaluate(plan.widths(groups)), ratio, lam, p.evaluations, plan.summary(groups))
    log.info("morph: %d → %d (pruned) → %d bitlines, R = %s, λ = %g", report.before.bitlines,
             report.pruned.bitlines, report.after.bitlines, ratio, lam)
    return plan, report


@dataclass(frozen=True)
class StructurePlanner:
    """A ``MorphChannels`` planner: ``plan_morph`` with the pass context's macro and budget;
    the report goes to ``ctx.morph_report``."""

    options: MorphOptions = MorphOptions()

    def __call__(self, graph: Graph, groups: ChannelGroups, ctx: PassContext) -> ChannelPlan:
        plan, report = plan_morph(graph, groups, ctx.macro, ctx.bitline_budget, self.options)
        ctx.morph_report = report
        return plan


class _CompileOptions(Protocol):
    morph: MorphOptions | None
    tiling: str
    placement: str
    map_fc: bool


def compile_morph(options: _CompileOptions) -> MorphOptions:
    """The structure-only morph of ``cimc compile --morph`` (the ``MORPH`` pipeline), counting
    bitlines with the compile's tiling, placement and map-fc; warns that weights need fine-tuning."""
    if options.morph is None:
        raise UsageError("the morph-channels pass needs a structure-only morph", hint="add --morph (and --bl N)")
    log.warning(FINE_TUNE_WARNING)
    return replace(options.morph, tiling=options.tiling, placement=options.placement, map_fc=options.map_fc)


def morph_record(options: MorphOptions) -> dict[str, Any]:
    """The options of a structure-only morph, for the build manifest."""
    return {k: v for k, v in asdict(options).items() if k not in ("tiling", "placement", "map_fc")}
