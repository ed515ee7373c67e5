"""Channel morphing on the zoo's ResNet18 (paper Eq. 3–5 and the morph-channels rewrite).

* ``morph/resnet18-expand-search``: the expansion search — the largest ratio ``R`` on the
  0.001 grid whose exact bitline count fits 4,096 bitlines, from a model pruned to half
  its channels — by bisection (``search_ratio``) against the paper's linear 0.001-step scan
  (``scan_ratio``), which returns the same ``R`` (tested), each with a fresh (unmemoised)
  bitline model. Target ≤ 0.1×.
* ``morph/resnet18-morph``: the whole structure-only morph — channel analysis, |γ| prune,
  expansion search and the rewrite of every weight, BN and shape (``morph_structure``
  without its final cost check) — against the compile path's structural passes on the
  unmorphed model (fold-batchnorm → select-cim → tile-wordlines → place-bitlines →
  ``model_cost``). The absolute time is the figure of the issue: well under a second.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.harness import Benchmark
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.morph.bitlines import BitlineModel
from cimc.morph.channel_groups import ChannelGroups

BUDGET = 4096
MACRO = MacroSpec()


@dataclass
class State:
    graph: Graph
    groups: ChannelGroups
    widths: np.ndarray
    changeable: np.ndarray

    def model(self) -> BitlineModel:
        """A fresh cost model: its memo must not carry over between timed calls."""
        return BitlineModel(self.graph, self.groups, MACRO)


def _setup() -> State:
    import cimc.models as models
    from cimc.frontend import import_onnx
    from cimc.morph.channel_groups import analyze
    from cimc.morph.plan import class_scores, prune_plan

    with tempfile.TemporaryDirectory(prefix="cimc-bench-morph-") as tmp:
        path = Path(tmp) / "resnet18.onnx"
        models.export_onnx("resnet18", path)
        graph = import_onnx(path)
    groups = analyze(graph)
    widths = prune_plan(groups, class_scores(graph, groups), keep=0.5).widths(groups)
    return State(graph, groups, widths, groups.changeable)


def _search(state: State) -> object:
    from cimc.morph.expand import search_ratio

    return search_ratio(state.model(), state.widths, state.changeable, BUDGET)


def _scan(state: State) -> object:
    from cimc.morph.expand import scan_ratio

    return scan_ratio(state.model(), state.widths, state.changeable, BUDGET)


def _morph(state: State) -> object:
    from cimc.morph.channel_groups import analyze
    from cimc.morph.channels_pass import MorphChannels
    from cimc.morph.planning import MorphOptions, plan_morph
    from cimc.passes.manager import PassContext

    groups = analyze(state.graph)
    plan, _ = plan_morph(state.graph, groups, MACRO, BUDGET, MorphOptions(keep=0.5))
    return MorphChannels(plan=plan).run(state.graph, PassContext(macro=MACRO)).graph


def _structural_compile(state: State) -> object:
    from cimc.cost.model import model_cost
    from cimc.passes.fold_batchnorm import FoldBatchNorm
    from cimc.passes.manager import PassContext, run_passes
    from cimc.passes.place_bitlines import PlaceBitlines
    from cimc.passes.select_cim import SelectCim
    from cimc.passes.tile_wordlines import TileWordlines

    passes = [FoldBatchNorm(), SelectCim(), TileWordlines(), PlaceBitlines()]
    return model_cost(run_passes(state.graph, passes, PassContext(macro=MACRO)), MACRO)


def benchmarks(quick: bool) -> list[Benchmark]:
    return [
        Benchmark("morph/resnet18-expand-search", _setup, _search, _scan, "paper's 0.001-step scan",
                  target_ratio=0.1),
        Benchmark("morph/resnet18-morph", _setup, _morph, _structural_compile,
                  "fold-bn + select + tile + place + cost (unmorphed)"),
    ]
