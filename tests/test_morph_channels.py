"""morph-channels: removing zero-γ channels and Net2Net widening leave the outputs unchanged
(onnxruntime, optimizations off); random new channels; identity plans; bad plans."""

from __future__ import annotations

import numpy as np
import pytest

from cimc.errors import UsageError
from cimc.ir import verify
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.morph.channel_groups import analyze
from cimc.morph.channels_pass import MorphChannels
from cimc.morph.plan import ChannelPlan, class_scores, identity_plan, prune_plan, ratio_widths, widths_to_plan
from cimc.passes.manager import PassContext, run_passes
from tests.morph_builders import mixed_graph, ort_outputs, random_input, zero_classes, zoo

pytestmark = pytest.mark.torch  # the zoo or the training hook


def ctx() -> PassContext:
    return PassContext(macro=MacroSpec())


def dead_classes(graph: Graph, fraction: float, seed: int = 0) -> tuple[Graph, np.ndarray]:
    """Zero γ and β of a random ``fraction`` of the changeable classes (keeping one per group)."""
    groups = analyze(graph)
    rng = np.random.default_rng(seed)
    dead = (rng.random(groups.num_classes) < fraction) & groups.changeable[groups.class_group]
    first = np.unique(groups.class_group, return_index=True)[1]
    dead[first] = False
    return zero_classes(graph, groups, dead), dead


@pytest.mark.parametrize("name", ["mixed", "resnet18", "digits_cnn"])
def test_removing_zero_gamma_channels_keeps_outputs(name: str) -> None:
    graph, dead = dead_classes(mixed_graph() if name == "mixed" else zoo(name), 0.4)
    groups = analyze(graph)
    plan = prune_plan(groups, class_scores(graph, groups), threshold=0.0)
    np.testing.assert_array_equal(plan.keep, ~dead)
    morphed = run_passes(graph, [MorphChannels(plan=plan)], ctx())
    assert analyze(morphed).num_classes == groups.num_classes - int(dead.sum())
    x = random_input(graph)
    np.testing.assert_allclose(ort_outputs(morphed, x), ort_outputs(graph, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["mixed", "resnet18"])
def test_copy_widening_without_noise_keeps_outputs(name: str) -> None:
    graph = mixed_graph() if name == "mixed" else zoo(name)
    groups = analyze(graph)
    base = identity_plan(groups, class_scores(graph, groups))
    plan = widths_to_plan(groups, base, ratio_widths(groups.group_size, 7, 4, groups.changeable))
    assert plan.new[groups.changeable].min() > 0
    morphed = run_passes(graph, [MorphChannels(plan=plan, init="copy", noise=0.0)], ctx())
    assert analyze(morphed).group_size.tolist() == plan.widths(groups).tolist()
    x = random_input(graph, 1)
    np.testing.assert_allclose(ort_outputs(morphed, x), ort_outputs(graph, x), rtol=1e-4, atol=1e-4)


def test_random_new_channels_start_small_and_change_outputs_little() -> None:
    graph = mixed_graph()
    groups = analyze(graph)
    plan = widths_to_plan(groups, identity_plan(groups, class_scores(graph, groups)),
                          ratio_widths(groups.group_size, 3, 2, groups.changeable))
    morphed = run_passes(graph, [MorphChannels(plan=plan, scale=0.01, seed=3)], ctx())
    old_gamma = graph.initializers["c3.bn.g"]
    gamma = morphed.initializers[morphed.node("c3.bn").inputs[1]]
    assert gamma.shape == (26,)  # 12 + 9 + 5 channels: (8, 6, 3) × 1.5 rounded half up
    new = ~np.isin(gamma, old_gamma)
    assert int(new.sum()) == 9 and np.flatnonzero(new).tolist() == [8, 9, 10, 11, 18, 19, 20, 24, 25]
    assert np.abs(gamma[new]).max() < 0.05 * np.abs(old_gamma).max()
    x = random_input(graph, 2)
    before, after = ort_outputs(graph, x), ort_outputs(morphed, x)
    assert 0 < np.abs(after - before).max() < 0.05 * np.abs(before).max()


def test_shapes_attrs_and_no_mutation() -> None:
    graph = mixed_graph()
    groups = analyze(graph)
    widths = np.array([4, 5, 2, 4, 5])  # shrink two groups, grow the pad group
    plan = widths_to_plan(groups, identity_plan(groups, class_scores(graph, groups)), widths)
    out = MorphChannels(plan=plan).run(graph, ctx())
    verify(out.graph)
    g = out.graph
    assert out.modified
    assert g.shape("cat.y") == (2, 7, 6, 6) and g.shape("pad.y") == (2, 11, 6, 6)
    assert g.node("pad").attrs["pads"][5] == 4 and g.node("dw").attrs["group"] == 5
    assert g.shape(g.node("fc").inputs[1]) == (5, 99) and g.shape("flat.y") == (2, 99)
    assert g.initializers[g.node("mul").inputs[1]].shape == (1, 11, 1, 1)
    assert graph.shape("cat.y") == (2, 14, 6, 6), "the input graph must not be mutated"


def test_reshape_target_follows_the_channels() -> None:
    graph = zoo("resnet18")
    groups = analyze(graph)
    widths = ratio_widths(groups.group_size, 1, 2, groups.changeable)
    out = MorphChannels(plan=widths_to_plan(groups, identity_plan(groups), widths)).run(graph, ctx()).graph
    view = next(n for n in out.nodes if n.op == "Reshape")
    assert tuple(view.attrs["shape"]) == (1, 256)  # (64 + 64 + 128 + 256) / 2 channels reach the classifier


def test_identity_plan_is_not_a_modification() -> None:
    graph = mixed_graph()
    result = MorphChannels(plan=identity_plan(analyze(graph))).run(graph, ctx())
    assert not result.modified
    assert result.graph.shape("cat.y") == graph.shape("cat.y")


def test_plan_for_another_graph_is_refused() -> None:
    plan = identity_plan(analyze(mixed_graph()))
    with pytest.raises(UsageError, match="another graph"):
        run_passes(zoo("digits_cnn"), [MorphChannels(plan=plan)], ctx())


@pytest.mark.parametrize("bad", ["no-plan", "empty-group", "fixed", "init"])
def test_invalid_requests_are_usage_errors(bad: str) -> None:
    graph = mixed_graph()
    groups = analyze(graph)
    plan = identity_plan(groups)
    if bad == "empty-group":
        plan = ChannelPlan(plan.keep & (groups.class_group != 2), plan.new, plan.score)
    if bad == "fixed":
        plan = ChannelPlan(plan.keep, plan.new + (groups.group_fixed & (np.arange(groups.num_groups) == 0)), plan.score)
    morph = {"no-plan": MorphChannels(), "init": MorphChannels(plan=plan, init="zeros")}.get(bad,
                                                                                            MorphChannels(plan=plan))
    with pytest.raises(UsageError):
        run_passes(graph, [morph], ctx())
