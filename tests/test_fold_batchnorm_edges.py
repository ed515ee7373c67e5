"""fold-batchnorm's refusals and its epsilon, bias and clean-up, each found untested by the
mutation run (docs/mutation.md): a fold the maths does not allow must be refused, and an
allowed one must be exact even where the tolerance of the other tests would hide a slip."""

from __future__ import annotations

import numpy as np
import pytest

from cimc.ir import Node, TensorInfo, verify
from cimc.ir.graph import Graph
from cimc.ir.interpreter import run
from cimc.macro import MacroSpec
from cimc.passes import registry
from cimc.passes.fold_batchnorm import FoldBatchNorm
from cimc.passes.manager import PassContext
from tests.ir_builders import add_bn, add_unary, conv_bn_relu, graph_with_input


def _fold(g: Graph) -> tuple[Graph, bool]:
    result = FoldBatchNorm().run(g, PassContext(macro=MacroSpec()))
    return result.graph, result.modified


def _out(g: Graph, x: np.ndarray) -> np.ndarray:
    return run(g, {"x": x})[g.outputs[0]]


def _gemm_bn(bias_shape: tuple[int, ...]) -> Graph:
    rng = np.random.default_rng(3)
    g = graph_with_input((3, 5))
    g.set_initializer("w", rng.standard_normal((5, 4)).astype(np.float32))
    g.set_initializer("c", rng.standard_normal(bias_shape).astype(np.float32))
    g.tensors["gy"] = TensorInfo("gy", (3, 4))
    g.add_node(Node("gemm", "Gemm", ("x", "w", "c"), ("gy",), {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}))
    g.outputs.append(add_bn(g, "gy", rng, "bn"))
    return g


def test_gemm_with_a_per_row_bias_is_not_folded() -> None:
    """A ``(rows, Cout)`` bias differs per row: no per-channel bias can replace it."""
    _, modified = _fold(_gemm_bn((3, 4)))
    assert not modified


def test_gemm_with_a_one_row_bias_folds_exactly() -> None:
    g = _gemm_bn((1, 4))
    folded, modified = _fold(g)
    x = np.random.default_rng(4).standard_normal((3, 5)).astype(np.float32)
    assert modified and [n.op for n in folded.topo_order()] == ["Gemm"]
    np.testing.assert_allclose(_out(folded, x), _out(g, x), rtol=1e-5, atol=1e-5)


def test_bn_after_a_two_dimensional_non_gemm_op_stays() -> None:
    """Only a Conv or a Gemm takes a BN's scale into its weights (a 2-D Relu has none)."""
    rng = np.random.default_rng(0)
    g = graph_with_input((3, 4))
    y = add_unary(g, "Relu", "x", "r")
    g.outputs.append(add_bn(g, y, rng, "bn"))
    assert not _fold(g)[1]


@pytest.mark.parametrize("which", [1, 3])
def test_bn_with_a_computed_parameter_stays(which: int) -> None:
    """A BN whose γ (input 1) or mean (input 3) the graph computes has no constant to fold."""
    g = conv_bn_relu()
    bn = g.node("bn")
    g.tensors["p"] = TensorInfo("p", (16,))
    g.inputs.append("p")
    g.set_inputs(bn, (*bn.inputs[:which], "p", *bn.inputs[which + 1:]))
    assert not _fold(g)[1]


def test_conv_with_a_computed_weight_is_not_folded() -> None:
    g = conv_bn_relu()
    conv = g.node("conv")
    g.tensors["wx"] = TensorInfo("wx", g.initializers["conv.w"].shape)
    g.inputs.append("wx")
    g.set_inputs(conv, (conv.inputs[0], "wx"))
    assert not _fold(g)[1]


def test_fold_uses_the_bns_epsilon() -> None:
    """ε = 0.5 against variances in [0.5, 2): s = γ/√(σ² + ε) must use +ε (−ε or no ε would be
    far outside float32 rounding)."""
    g = conv_bn_relu(bias=True)
    g.node("bn").attrs["epsilon"] = 0.5
    x = np.random.default_rng(1).standard_normal((2, 8, 6, 6)).astype(np.float32)
    folded, _ = _fold(g)
    np.testing.assert_allclose(_out(folded, x), _out(g, x), rtol=1e-5, atol=1e-5)


def test_folded_graph_keeps_no_stale_weights_or_tensors() -> None:
    """The conv's old weight, the BN's four parameters and the conv's old output are gone."""
    folded, _ = _fold(conv_bn_relu())
    verify(folded)
    assert not {"conv.w", "bn.g", "bn.b", "bn.m", "bn.v"} & set(folded.initializers)
    assert "conv.y" not in folded.tensors


def test_an_empty_bias_name_folds_like_no_bias() -> None:
    """ONNX marks an absent optional input with an empty name: ``Gemm(x, w, "")`` and
    ``Conv(x, w, "")`` fold as if they had no bias."""
    g = _gemm_bn((4,))
    gemm = g.node("gemm")
    g.set_inputs(gemm, ("x", "w", ""))
    conv = conv_bn_relu()
    node = conv.node("conv")
    conv.set_inputs(node, (*node.inputs[:2], ""))
    for graph, x in ((g, np.ones((3, 5), np.float32)), (conv, np.ones((2, 8, 6, 6), np.float32))):
        folded, modified = _fold(graph)
        assert modified
        np.testing.assert_allclose(_out(folded, x), _out(graph, x), rtol=1e-5, atol=1e-5)


def test_the_pass_registers_under_its_name() -> None:
    assert "fold-batchnorm" in registry.names() and registry.get("fold-batchnorm") is FoldBatchNorm
