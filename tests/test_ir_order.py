"""``cimc.ir.order``: Kahn's order with the smallest ready index first, and the cycle walk."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.ir.order import cycle, topological


def test_the_smallest_ready_index_goes_first() -> None:
    # 0 and 2 are ready at the start; 1 waits for 2; 3 for 0
    assert topological([set(), {2}, set(), {0}]) == [0, 2, 1, 3]


def test_an_ordered_list_keeps_its_order() -> None:
    assert topological([set(), {0}, {0, 1}, {2}]) == [0, 1, 2, 3]


def test_a_node_reading_its_own_output_is_a_cycle_of_one() -> None:
    deps = [set(), {1}]
    order = topological(deps)
    assert order == [0]
    assert cycle(deps, set(order)) == [1, 1]


def test_the_cycle_is_walked_in_dependency_order_and_closed() -> None:
    deps = [{2}, {0}, {1}, {0}]  # 0 <- 2 <- 1 <- 0, and 3 waits on the cycle
    order = topological(deps)
    assert order == []
    assert cycle(deps, set(order)) == [1, 2, 0, 1]  # 2 reads 1, 0 reads 2, 1 reads 0


def test_no_cycle_when_every_item_is_ordered() -> None:
    deps = [set(), {0}]
    assert cycle(deps, set(topological(deps))) == []


@given(st.lists(st.sets(st.integers(0, 7), max_size=3), min_size=1, max_size=8))
def test_every_order_respects_the_dependencies_and_cycles_close(raw: list[set[int]]) -> None:
    deps = [{d for d in ds if d < len(raw)} for ds in raw]
    order = topological(deps)
    position = {i: k for k, i in enumerate(order)}
    assert len(position) == len(order)
    for i in order:
        assert all(d in position and position[d] < position[i] for d in deps[i])
    loop = cycle(deps, set(order))
    if len(order) == len(deps):
        assert loop == []
    else:
        assert loop[0] == loop[-1] and len(loop) >= 2
        assert all(loop[k] in deps[loop[k + 1]] for k in range(len(loop) - 1))


def test_a_graph_reorders_by_the_producers_after_a_rewire() -> None:
    g = Graph()
    g.add_node(Node("a", "Relu", ("x",), ("y",)))
    g.add_node(Node("b", "Relu", ("x",), ("z",)))
    g.set_inputs(g.node("a"), ("z",))  # a now reads b's output: b must run first
    assert [n.name for n in g.topo_order()] == ["b", "a"]
    assert g.edge_count() == 1 and g.is_acyclic()
