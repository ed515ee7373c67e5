"""The bitline model of the expansion search equals ``model_cost`` of the rewritten graph."""

from __future__ import annotations

import numpy as np
import pytest

from cimc.macro import PRESETS, MacroSpec
from cimc.morph.bitlines import BitlineModel
from cimc.morph.channel_groups import analyze
from cimc.morph.channels_pass import rewrite
from cimc.morph.initialise import NewChannels
from cimc.morph.plan import class_scores, prune_plan, ratio_widths, widths_to_plan
from cimc.morph.planning import MorphOptions
from cimc.morph.structure import placed_cost
from tests.morph_builders import mixed_graph, zoo

pytestmark = pytest.mark.torch  # the zoo

PAPER = MacroSpec()
SMALL = PRESETS["small-64"]


@pytest.mark.parametrize(("name", "macro", "opts"), [
    ("vgg9", PAPER, MorphOptions()),
    ("resnet18", PAPER, MorphOptions(placement="aligned")),
    ("mixed", SMALL, MorphOptions(map_fc=True)),
    ("mixed", SMALL, MorphOptions(tiling="dense", placement="aligned", map_fc=True)),
])
def test_bitline_model_equals_model_cost_of_the_rewritten_graph(name: str, macro: MacroSpec,
                                                                 opts: MorphOptions) -> None:
    graph = mixed_graph() if name == "mixed" else zoo(name)
    groups = analyze(graph)
    model = BitlineModel(graph, groups, macro, tiling=opts.tiling, placement=opts.placement, map_fc=opts.map_fc)
    rng = np.random.default_rng(0)
    for _ in range(3):
        ratio = rng.uniform(0.05, 2.5)
        widths = ratio_widths(groups.group_size, round(1000 * ratio), 1000, groups.changeable)
        plan = widths_to_plan(groups, prune_plan(groups, class_scores(graph, groups), keep=0.5), widths)
        predicted = model.evaluate(plan.widths(groups))
        cost = placed_cost(rewrite(graph, groups, plan, NewChannels()), macro, opts)
        assert (predicted.bitlines, predicted.macros, predicted.params) == (cost.bitlines, cost.macros, cost.params)
        assert list(predicted.layer_bitlines) == [layer.bitlines for layer in cost.layers]
        assert predicted.usage == pytest.approx(cost.macro_usage)
