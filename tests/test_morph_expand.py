"""Expansion search on the zoo's VGG9: bisection equals the paper's 0.001-step scan; exact
breakpoints; infeasible budgets; the MLP without a fed group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from cimc.cli.main import main
from cimc.errors import MappingError, UsageError
from cimc.frontend.onnx_export import save_onnx
from cimc.ir import Node, TensorInfo
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.morph.bitlines import BitlineModel
from cimc.morph.channel_groups import analyze
from cimc.morph.expand import scan_ratio, search_ratio
from cimc.morph.plan import class_scores, prune_plan, ratio_widths
from tests.ir_builders import graph_with_input
from tests.morph_builders import zoo

pytestmark = pytest.mark.torch  # the zoo or the training hook

PAPER = MacroSpec()


#: The zoo's VGG9, exported while this file is collected: forked test processes (the mutation
#: runner's) inherit it instead of each exporting it again inside a timed test.
VGG9 = zoo("vgg9")


def _vgg9_case(keep: float) -> tuple[BitlineModel, np.ndarray, np.ndarray]:
    graph = VGG9.copy()
    groups = analyze(graph)
    widths = prune_plan(groups, class_scores(graph, groups), keep=keep).widths(groups)
    return BitlineModel(graph, groups, PAPER), widths, groups.changeable


@settings(max_examples=10, deadline=None, phases=(Phase.explicit, Phase.generate))
@given(budget=st.integers(300, 12_000), keep=st.sampled_from([0.1, 0.3, 0.5, 1.0]))
def test_bisection_equals_the_paper_scan(budget: int, keep: float) -> None:
    """No shrinking: a wrong search fails at its first example (shrinking re-ran the scans for
    longer than the mutation runner's timeout)."""
    model, widths, changeable = _vgg9_case(keep)
    fast = search_ratio(model, widths, changeable, budget)
    slow = scan_ratio(model, widths, changeable, budget)
    assert (fast.num, fast.den) == (slow.num, slow.den)
    assert fast.widths.tolist() == slow.widths.tolist()
    assert fast.evaluations < 40 < slow.evaluations or abs(slow.ratio - 1) < 0.04


@pytest.mark.parametrize("budget", [512, 1000, 4096, 8192])
def test_exact_breakpoints_fill_at_least_as_much_and_are_maximal(budget: int) -> None:
    model, widths, changeable = _vgg9_case(0.5)
    grid = search_ratio(model, widths, changeable, budget)
    exact = search_ratio(model, widths, changeable, budget, step=None)
    assert exact.cost.fits(budget, PAPER) and grid.cost.fits(budget, PAPER)
    assert exact.cost.bitlines >= grid.cost.bitlines and (exact.widths >= grid.widths).all()
    # the widths just past the exact answer's next breakpoint no longer fit
    n = widths[changeable]
    nxt = min(((2 * np.floor(n * exact.ratio + 0.5) + 1) / (2 * n)).tolist())
    bigger = ratio_widths(widths, round(nxt * 2**40), 2**40, changeable)
    assert (bigger >= exact.widths).all() and (bigger > exact.widths).any()
    assert not model.evaluate(bigger).fits(budget, PAPER)


def test_ratio_widths_round_halves_up_and_keep_fixed_groups() -> None:
    widths = np.array([3, 10, 7, 1])
    changeable = np.array([False, True, True, True])
    assert ratio_widths(widths, 1, 4, changeable).tolist() == [3, 3, 2, 1]  # 2.5 → 3, 1.75 → 2, 0.25 → min 1
    assert ratio_widths(widths, 3, 2, changeable).tolist() == [3, 15, 11, 2]  # 10.5 → 11, 1.5 → 2


def test_infeasible_budget_names_the_smallest_feasible_one() -> None:
    model, widths, changeable = _vgg9_case(0.5)
    with pytest.raises(MappingError, match="no channel ratio fits 8") as info:
        search_ratio(model, widths, changeable, 8)
    assert "smallest feasible --bl is 256" in str(info.value)


@pytest.mark.parametrize("step", [0.0, -1e-3, 3.0, float("nan")])
def test_a_step_outside_0_to_1_is_a_usage_error(step: float) -> None:
    """The grid is ``R = i/round(1/step)``: a step of 0 divided by zero, one over 2 gave a
    zero denominator (both bare ZeroDivisionErrors)."""
    model, widths, changeable = _vgg9_case(0.5)
    with pytest.raises(UsageError, match="step"):
        search_ratio(model, widths, changeable, 4096, step=step)


def mlp() -> Graph:
    """x(16) → Gemm(→32) → ReLU → Gemm(→5): its one changeable group feeds only Gemm layers."""
    rng = np.random.default_rng(0)
    g = graph_with_input((1, 16))
    for name, x, y, cout, cin in (("fc1", "x", "h", 32, 16), ("fc2", "r", "y", 5, 32)):
        g.set_initializer(f"{name}.w", rng.standard_normal((cout, cin)).astype(np.float32))
        g.tensors[y] = TensorInfo(y, (1, cout))
        g.add_node(Node(name, "Gemm", (x, f"{name}.w"), (y,), {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1}))
        if name == "fc1":
            g.tensors["r"] = TensorInfo("r", (1, 32))
            g.add_node(Node("relu", "Relu", ("h",), ("r",)))
    g.outputs.append("y")
    return g


@pytest.mark.parametrize("step", [1e-3, None])
def test_expansion_without_a_cim_layer_on_a_changeable_group_is_a_mapping_error(step: float | None) -> None:
    """Without --map-fc no changeable group of an MLP feeds a CIM layer: no ratio ever exceeds the
    budget, and the search must say so (it doubled R until an OverflowError, exit 9)."""
    g = mlp()
    groups = analyze(g)
    assert groups.changeable.any()
    model = BitlineModel(g, groups, PAPER, map_fc=False)
    assert not model.feeds_cim(groups.group_size.shape[0]).any()
    with pytest.raises(MappingError, match="no changeable channel group feeds a CIM layer") as info:
        search_ratio(model, groups.group_size, groups.changeable, 1024, step=step)
    assert "--map-fc" in str(info.value)
    mapped = BitlineModel(g, groups, PAPER, map_fc=True)
    found = search_ratio(mapped, groups.group_size, groups.changeable, 1024, step=step)
    assert found.ratio > 1 and found.cost.fits(1024, PAPER)
    assert not mapped.evaluate(found.widths * 2).fits(1024, PAPER)


def test_compile_morph_of_an_mlp_without_map_fc_exits_with_a_mapping_error(tmp_path: Path) -> None:
    save_onnx(mlp(), tmp_path / "mlp.onnx")
    args = ["compile", str(tmp_path / "mlp.onnx"), "--bl", "1024", "--morph", "--no-shift"]
    result = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "a")])
    assert result.exit_code == MappingError.exit_code, result.output
    assert "no changeable channel group feeds a CIM layer" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, [*args, "--map-fc", "-o", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
