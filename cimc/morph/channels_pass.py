"""morph-channels: rewrite every channel count of a graph to a channel plan (paper Eq. 1–5).

The plan (``cimc.morph.plan``) keeps a subset of each changeable channel group's classes
(the most important by BN ``|γ|``) and appends new channels; ``cimc.morph.layout`` turns it
into one ``ChannelMap`` per tensor; each op's ``rewrite`` rule (``OpDef.rewrite`` in
``cimc.ops``) then slices its constants and fixes its attributes. With ``old``/``new`` the kept
and new channels:

* Conv ``W[o, c, i, j]``: ``W'[o', c'] = W[old(o'), old(c')]``; new filters and new input
  columns initialised by ``cimc.morph.initialise``; bias by the output map. A depthwise
  conv's filters follow its output map and ``group`` becomes the new width.
* Gemm/MatMul: the weight's input axis follows the input map, a flattened ``C·m`` axis in
  blocks of ``m`` (``W'[:, c'·m + p] = W[:, old(c')·m + p]``), its output axis and bias
  the output map.
* BatchNormalization: ``γ, β, μ, σ²`` by the channel map; per-channel constants of Add /
  Mul / Sum likewise; a channel Pad's zero counts and Reshape's target width are recomputed.

Removing classes whose every γ and β is 0 leaves the outputs unchanged (their activations
are 0 everywhere); ``init="copy"`` with ``noise=0`` widens without changing them either.
The plan must come from ``cimc.morph.analyze`` of the same graph; ``planner`` computes it
inside the pass (for instance from the bitline budget, ``cimc.morph.structure``). The pass
needs the BNs, so it runs before fold-batchnorm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cimc.errors import UsageError
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.morph.channel_groups import ChannelGroups, analyze
from cimc.morph.initialise import NewChannels
from cimc.morph.layout import ChannelMap, channel_maps
from cimc.morph.plan import ChannelPlan
from cimc.ops import find
from cimc.passes.manager import GraphPass, PassContext, PassResult
from cimc.passes.registry import register

Planner = Callable[[Graph, ChannelGroups, PassContext], ChannelPlan]
INIT_MODES = ("random", "copy")


@register
@dataclass(frozen=True)
class MorphChannels(GraphPass):
    name = "morph-channels"
    plan: ChannelPlan | None = None
    planner: Planner | None = None
    init: str = "random"
    scale: float = 0.1
    noise: float = 0.01
    seed: int = 0

    @classmethod
    def from_options(cls, options: Any) -> GraphPass:
        """The structure-only morph of ``cimc compile --morph`` (``cimc.morph.planning.compile_morph``)."""
        from cimc.morph.planning import StructurePlanner, compile_morph

        o = compile_morph(options)
        return cls(planner=StructurePlanner(o), init=o.init, scale=o.scale, noise=o.noise, seed=o.seed)

    def requires(self, graph: Graph, ctx: PassContext) -> None:
        if (self.plan is None) == (self.planner is None):
            raise UsageError("morph-channels needs exactly one of a plan or a planner")
        if self.init not in INIT_MODES:
            raise UsageError(f"unknown init '{self.init}'; choose one of {', '.join(INIT_MODES)}")

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        groups = analyze(graph)
        plan = self.plan if self.plan is not None else self.planner(graph, groups, ctx)  # type: ignore[misc]
        check_plan(groups, plan)
        ctx.morph_plan = plan.summary(groups)
        if plan.is_identity():
            return PassResult(graph.copy(), False)
        return PassResult(rewrite(graph, groups, plan, NewChannels(self.init, self.scale, self.noise, self.seed)), True)


def check_plan(groups: ChannelGroups, plan: ChannelPlan) -> None:
    if plan.keep.shape != (groups.num_classes,) or plan.new.shape != (groups.num_groups,):
        raise UsageError("the channel plan was made for another graph "
                         f"({plan.keep.shape[0]} classes, {plan.new.shape[0]} groups; "
                         f"this graph has {groups.num_classes} and {groups.num_groups})")
    widths = plan.widths(groups)
    kept = widths - plan.new
    bad = [groups.group_names[g] for g in np.flatnonzero((widths < 1) | ((plan.new > 0) & (kept < 1)))]
    bad += [groups.group_names[g] for g in np.flatnonzero(groups.group_fixed & (widths != groups.group_size))]
    if bad:
        raise UsageError(f"invalid channel plan for group(s) {', '.join(bad[:5])}",
                         hint="every group keeps at least one channel; fixed groups keep all of theirs")


def rewrite(graph: Graph, groups: ChannelGroups, plan: ChannelPlan, init: NewChannels) -> Graph:
    """A copy of ``graph`` with every tensor's channels rewritten to ``plan``."""
    out = graph.copy()
    maps = channel_maps(groups, plan)
    for node in out.topo_order():
        op = find(node.op)
        if op is not None:
            op.rewrite(RewriteContext(out, groups, maps, init), node)
    for name, cmap in maps.items():
        shape = list(out.tensors[name].shape)
        shape[1] = len(cmap) * groups.tensors[name].mult
        out.tensors[name] = out.tensors[name].with_shape(tuple(shape))
    out.remove_unused_initializers()
    return out


@dataclass
class RewriteContext:
    """What an op's morph rewrite (``OpDef.rewrite``) works with: the graph being rewritten, its
    channel groups, the channel map of every tensor and how new channels are initialised."""

    graph: Graph
    groups: ChannelGroups
    maps: dict[str, ChannelMap]
    init: NewChannels

    def map(self, tensor: str) -> ChannelMap | None:
        cmap = self.maps.get(tensor)
        return None if cmap is None or cmap.is_identity() else cmap

    def mult(self, tensor: str) -> int:
        return self.groups.tensors[tensor].mult

    def replace(self, node: Node, index: int, value: np.ndarray) -> None:
        """Point input ``index`` of ``node`` at a new initializer holding ``value``."""
        old = node.inputs[index]
        name = self.graph.unique_name(f"{old}_morph")
        self.graph.set_initializer(name, value.astype(self.graph.initializers[old].dtype))
        self.graph.set_inputs(node, (name if i == index else t for i, t in enumerate(node.inputs)))

    def param(self, node: Node, index: int) -> np.ndarray | None:
        if len(node.inputs) <= index or not node.inputs[index]:
            return None
        return self.graph.initializers[node.inputs[index]]

    def bias(self, node: Node, index: int, ymap: ChannelMap | None, axis: int) -> None:
        """Slice the constant input ``index`` along ``axis`` by ``ymap`` (new channels: 0)."""
        bias = self.param(node, index)
        if bias is not None and ymap is not None:
            self.replace(node, index, self.init.constant(bias, axis, ymap, 0.0))
