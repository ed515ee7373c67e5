"""fold-batchnorm: numerics, idempotence, shared weights, Gemm, and what it must leave alone."""

from __future__ import annotations

import numpy as np
import pytest

from cimc.ir import Node, TensorInfo, verify
from cimc.ir.interpreter import run
from cimc.macro import MacroSpec
from cimc.passes.fold_batchnorm import FoldBatchNorm
from cimc.passes.manager import PassContext
from tests.ir_builders import add_bn, add_conv, add_unary, conv_bn_relu, graph_with_input


def ctx() -> PassContext:
    return PassContext(macro=MacroSpec())


def outputs(g, x):  # type: ignore[no-untyped-def]
    return run(g, {"x": x})[g.outputs[0]]


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("group", [1, 2, 8])
def test_conv_bn_folds_exactly(bias: bool, group: int) -> None:
    g = conv_bn_relu(bias=bias, group=group)
    x = np.random.default_rng(1).standard_normal((2, 8, 6, 6)).astype(np.float32)
    result = FoldBatchNorm().run(g, ctx())
    verify(result.graph)
    assert result.modified
    assert [n.op for n in result.graph.topo_order()] == ["Conv", "Relu"]
    np.testing.assert_allclose(outputs(result.graph, x), outputs(g, x), rtol=1e-5, atol=1e-5)
    assert "bn" in [n.name for n in g.nodes], "the input graph must not be mutated"


def test_second_run_is_a_no_op() -> None:
    once = FoldBatchNorm().run(conv_bn_relu(), ctx()).graph
    again = FoldBatchNorm().run(once, ctx())
    assert not again.modified
    assert [n.op for n in again.graph.topo_order()] == ["Conv", "Relu"]


def test_shared_weight_is_not_changed_under_the_other_conv() -> None:
    rng = np.random.default_rng(0)
    g = graph_with_input((1, 4, 5, 5))
    y1 = add_conv(g, "x", 4, 3, pad=1, rng=rng, name="c1")
    y1 = add_bn(g, y1, rng, "bn")
    g.tensors["c2.y"] = TensorInfo("c2.y", (1, 4, 5, 5))
    g.add_node(Node("c2", "Conv", ("x", "c1.w"), ("c2.y",), dict(g.node("c1").attrs)))
    g.tensors["sum"] = TensorInfo("sum", (1, 4, 5, 5))
    g.add_node(Node("add", "Add", (y1, "c2.y"), ("sum",)))
    g.outputs.append("sum")
    x = rng.standard_normal((1, 4, 5, 5)).astype(np.float32)
    folded = FoldBatchNorm().run(g, ctx()).graph
    assert folded.node("c2").inputs[1] == "c1.w"
    assert folded.node("c1").inputs[1] != "c1.w"
    np.testing.assert_allclose(outputs(folded, x), outputs(g, x), rtol=1e-5, atol=1e-5)


def test_conv_with_two_readers_is_not_folded() -> None:
    g = conv_bn_relu()
    g.outputs.append("conv.y")
    result = FoldBatchNorm().run(g, ctx())
    assert not result.modified


def test_bn_without_conv_stays() -> None:
    rng = np.random.default_rng(0)
    g = graph_with_input((1, 3, 4, 4))
    y = add_unary(g, "Relu", "x", "r")
    g.outputs.append(add_bn(g, y, rng, "bn"))
    assert not FoldBatchNorm().run(g, ctx()).modified


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("with_bias", [False, True])
def test_gemm_bn_folds(trans_b: int, with_bias: bool) -> None:
    rng = np.random.default_rng(2)
    g = graph_with_input((3, 5))
    w = rng.standard_normal((4, 5) if trans_b else (5, 4)).astype(np.float32)
    g.set_initializer("w", w)
    ins = ["x", "w"]
    if with_bias:
        g.set_initializer("c", rng.standard_normal(4).astype(np.float32))
        ins.append("c")
    g.tensors["gy"] = TensorInfo("gy", (3, 4))
    g.add_node(Node("gemm", "Gemm", tuple(ins), ("gy",), {"alpha": 0.5, "beta": 2.0, "transA": 0, "transB": trans_b}))
    g.outputs.append(add_bn(g, "gy", rng, "bn"))
    x = rng.standard_normal((3, 5)).astype(np.float32)
    folded = FoldBatchNorm().run(g, ctx()).graph
    assert [n.op for n in folded.topo_order()] == ["Gemm"]
    np.testing.assert_allclose(outputs(folded, x), outputs(g, x), rtol=1e-5, atol=1e-5)
