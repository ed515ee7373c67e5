"""The morphing regularizer: paper Eq. 2 by hand, the bitline variant, tied channels, λ schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cimc.ir import Node, TensorInfo
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.morph.costs import cost_value, layer_terms
from cimc.morph.regularizer import MorphRegularizer, lambda_at
from cimc.train import module_from_graph
from tests.ir_builders import add_bn, add_conv, add_unary, graph_with_input
from tests.morph_builders import mixed_graph

pytestmark = pytest.mark.torch  # the zoo or the training hook

MACRO = MacroSpec()


def chain() -> Graph:
    """x(3) → conv 3→6 → BN → ReLU → conv 6→5 → BN → ReLU → GAP → Flatten → Gemm(5→4)."""
    rng = np.random.default_rng(0)
    g = graph_with_input((1, 3, 5, 5))
    y = add_unary(g, "Relu", add_bn(g, add_conv(g, "x", 6, 3, pad=1, rng=rng, name="c1"), rng, "b1"), "r1")
    y = add_unary(g, "Relu", add_bn(g, add_conv(g, y, 5, 3, pad=1, rng=rng, name="c2"), rng, "b2"), "r2")
    g.tensors["gap"] = TensorInfo("gap", (1, 5, 1, 1))
    g.add_node(Node("gap", "GlobalAveragePool", (y,), ("gap",)))
    g.tensors["flat"] = TensorInfo("flat", (1, 5))
    g.add_node(Node("flat", "Flatten", ("gap",), ("flat",), {"axis": 1}))
    g.set_initializer("w", rng.standard_normal((4, 5)).astype(np.float32))
    g.tensors["out"] = TensorInfo("out", (1, 4))
    g.add_node(Node("fc", "Gemm", ("flat", "w"), ("out",), {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1}))
    g.outputs.append("out")
    return g


GAMMA1 = torch.tensor([0.5, -1.0, 0.0, 2.0, 0.001, 0.3], requires_grad=True)
GAMMA2 = torch.tensor([1.5, 0.0, -0.2, 0.7, 0.4], requires_grad=True)


def test_params_cost_is_paper_eq2_by_hand() -> None:
    reg = MorphRegularizer(chain(), MACRO, 1.0, 10)
    f = reg.cost({"b1": GAMMA1, "b2": GAMMA2})
    s1, s2 = GAMMA1.abs().sum().item(), GAMMA2.abs().sum().item()
    a2, b2 = 4, 4  # alive (|γ| > 0.01) inputs and outputs of conv 2
    # conv1: 9·(A=3·Σ|γ1| + B·0: the input is fixed); conv2: 9·(A2·Σ|γ2| + B2·Σ|γ1|); gemm: 1·(5·0 + 4·Σ|γ2|)
    expected = 9 * 3 * s1 + 9 * (a2 * s2 + b2 * s1) + 4 * s2
    assert f.item() == pytest.approx(expected, rel=1e-5)
    f.backward()
    alive = GAMMA1.abs() > 0.01
    torch.testing.assert_close(GAMMA1.grad[alive], (27 + 9 * b2) * GAMMA1.sign()[alive].detach())


def test_bitline_cost_counts_segments_and_inputs_per_segment() -> None:
    reg = MorphRegularizer(chain(), MACRO, 1.0, 10, variant="bitlines")
    f = reg.cost({"b1": GAMMA1.detach(), "b2": GAMMA2.detach()})
    s1, s2 = GAMMA1.abs().sum().item(), GAMMA2.abs().sum().item()
    # conv1: 1 segment per output; conv2: 4 alive inputs in 1 segment → an input costs B2/4 of it; gemm not CIM
    assert f.item() == pytest.approx(1 * s1 + (1 * s2 + 4 / 4 * s1), rel=1e-5)


@pytest.mark.parametrize("variant", ["params", "bitlines"])
def test_binary_gammas_count_the_alive_network(variant: str) -> None:
    """With γ ∈ {0, 1} on a 28-channel-aligned conv pair, ``F = 2 ×`` the params/bitlines of the
    second conv plus the first conv's output term (its input is the fixed model input)."""
    rng = np.random.default_rng(1)
    g = graph_with_input((1, 3, 4, 4))
    y = add_unary(g, "Relu", add_bn(g, add_conv(g, "x", 60, 3, pad=1, rng=rng, name="c1"), rng, "b1"), "r1")
    y = add_bn(g, add_conv(g, y, 30, 3, pad=1, rng=rng, name="c2"), rng, "b2")
    g.outputs.append(add_conv(g, add_unary(g, "Relu", y, "r2"), 2, 1, rng=rng, name="c3"))
    g1 = torch.tensor([1.0] * 56 + [0.0] * 4)
    g2 = torch.tensor([1.0] * 20 + [0.0] * 10)
    f = MorphRegularizer(g, MACRO, 1.0, 1, variant=variant).cost({"b1": g1, "b2": g2}).item()
    if variant == "params":  # c1: 9·3·56; c2: 2·9·56·20; c3: 1·(20·0 + 2·20)
        assert f == pytest.approx(9 * 3 * 56 + 2 * 9 * 56 * 20 + 2 * 20, rel=1e-5)
    else:  # c1: 1 segment × 56; c2: 2 × (2 segments × 20); c3: 1 segment × 0 + 2·20/20
        assert f == pytest.approx(56 + 2 * 2 * 20 + 2, rel=1e-5)


def test_tied_channels_share_one_group_norm_and_all_their_bns_shrink() -> None:
    graph = mixed_graph()
    reg = MorphRegularizer(graph, MACRO, 1.0, 10)
    module = module_from_graph(graph)
    gammas = module.bn_gammas()
    g = reg.importance(gammas)
    cls = int(reg.groups.classes("r1.y")[2])  # channel 2 of the first conv: c1.bn, dw.bn and c3.bn
    expected = torch.sqrt(gammas["c1.bn"][2] ** 2 + gammas["dw.bn"][2] ** 2 + gammas["c3.bn"][2] ** 2)
    torch.testing.assert_close(g[cls], expected)
    reg.step = 10
    reg(module).backward()
    for bn in ("c1.bn", "dw.bn", "c3.bn"):
        assert module.tensor(graph.node(bn).inputs[1]).grad[2] > 0
    numpy_f = cost_value(layer_terms(graph, reg.groups), g.detach().numpy(),
                         (g.detach().numpy() > 0.01) | ~reg.penalised.numpy(), "params", MACRO)
    assert reg.cost(gammas).item() == pytest.approx(numpy_f, rel=1e-5)


def test_lambda_ramps_over_two_thirds_then_holds() -> None:
    assert [lambda_at(t, 150, 2.0) for t in (0, 50, 100, 149)] == [0.0, 1.0, 2.0, 2.0]
    reg = MorphRegularizer(chain(), MACRO, 3.0, 3)
    gammas = {"b1": GAMMA1.detach(), "b2": GAMMA2.detach()}

    class Model:
        def bn_gammas(self) -> dict[str, torch.Tensor]:
            return gammas

    values = [reg(Model()).item() for _ in range(4)]  # type: ignore[arg-type]
    full = 3.0 * reg.cost(gammas).item()
    assert values == pytest.approx([0.0, full / 2, full, full], rel=1e-6)
