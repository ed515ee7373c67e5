"""The Graph API keeps edges, producers and consumers in sync."""

from __future__ import annotations

import numpy as np
import pytest

from cimc.errors import InvalidModelError
from cimc.ir import Graph, Node, TensorInfo, format_graph, verify
from tests.ir_builders import conv_bn_relu


def test_parallel_edges_for_add_x_x() -> None:
    g = Graph()
    g.tensors["x"] = TensorInfo("x", (1, 2))
    g.inputs.append("x")
    g.add_node(Node("r", "Relu", ("x",), ("a",)))
    g.add_node(Node("add", "Add", ("a", "a"), ("y",)))
    g.tensors.update({"a": TensorInfo("a", (1, 2)), "y": TensorInfo("y", (1, 2))})
    g.outputs.append("y")
    assert g.edge_count() == 2
    assert [n.name for n in g.consumers("a")] == ["add"]
    verify(g)


def test_nodes_added_out_of_order_are_wired() -> None:
    g = Graph()
    g.tensors.update({t: TensorInfo(t, (3,)) for t in "xab"})
    g.inputs.append("x")
    g.add_node(Node("second", "Relu", ("a",), ("b",)))
    g.add_node(Node("first", "Relu", ("x",), ("a",)))
    g.outputs.append("b")
    assert [n.name for n in g.topo_order()] == ["first", "second"]


def test_two_producers_rejected() -> None:
    g = Graph()
    g.add_node(Node("a", "Relu", ("x",), ("y",)))
    with pytest.raises(InvalidModelError, match="two producers"):
        g.add_node(Node("b", "Relu", ("x",), ("y",)))


def test_cycle_is_reported_with_its_nodes() -> None:
    g = Graph()
    g.tensors.update({t: TensorInfo(t, (3,)) for t in "ab"})
    g.add_node(Node("n1", "Relu", ("b",), ("a",)))
    g.add_node(Node("n2", "Relu", ("a",), ("b",)))
    with pytest.raises(InvalidModelError, match=r"cycle: n[12] -> n[12] -> n[12]"):
        g.topo_order()


def test_replace_all_uses_and_remove() -> None:
    g = conv_bn_relu()
    relu = g.node("relu")
    g.replace_all_uses("bn.y", "conv.y")
    assert relu.inputs == ("conv.y",)
    assert [n.name for n in g.consumers("conv.y")] == ["bn", "relu"]
    g.remove_node("bn")
    assert [n.name for n in g.consumers("conv.y")] == ["relu"]


def test_initializers_are_read_only_and_copy_is_independent() -> None:
    g = conv_bn_relu()
    with pytest.raises(ValueError):
        g.initializers["conv.w"][0, 0, 0, 0] = 1.0
    h = g.copy()
    h.remove_node("relu")
    assert g.has_node("relu") and not h.has_node("relu")
    assert np.shares_memory(g.initializers["conv.w"], h.initializers["conv.w"])


def test_verify_lists_all_problems() -> None:
    g = conv_bn_relu()
    g.outputs.append("nowhere")
    del g.tensors["bn.y"]
    with pytest.raises(InvalidModelError) as info:
        verify(g)
    problems = info.value.details["problems"]
    assert any("nowhere" in p for p in problems) and any("bn.y" in p for p in problems)


def test_printer_is_stable() -> None:
    text = format_graph(conv_bn_relu())
    assert text == format_graph(conv_bn_relu())
    assert "%conv.y = Conv(%x, %conv.w) {dilations=[1,1], group=1, pads=[1,1,1,1], strides=[1,1]}" in text
