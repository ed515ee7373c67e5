"""The IR graph: nodes over a private networkx ``MultiDiGraph``, with tensors and initializers.

This is the only module that imports networkx. An edge ``u → v`` keyed by ``(tensor, i)``
says node ``v`` reads tensor ``tensor`` (produced by ``u``) as its ``i``-th input, so
``Add(x, x)`` has two parallel edges. Initializers are read-only numpy arrays: passes
replace them (``set_initializer``), never write into them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import networkx as nx
import numpy as np

from cimc.errors import InvalidModelError
from cimc.ir.node import Node
from cimc.ir.tensor import TensorInfo, readonly


class Graph:
    """A dataflow graph of ``Node`` objects with static tensor shapes."""

    def __init__(self, name: str = "graph") -> None:
        self.name = name
        self._g: nx.MultiDiGraph = nx.MultiDiGraph()
        self._nodes: dict[str, Node] = {}
        self._order: dict[str, int] = {}
        self._producer: dict[str, str] = {}
        self._uses: dict[str, dict[str, None]] = {}
        self._counter = 0
        self.tensors: dict[str, TensorInfo] = {}
        self.initializers: dict[str, np.ndarray] = {}
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        #: Model-level key/value strings (ONNX ``metadata_props``), e.g. ``cimc.quant`` from QAT.
        self.metadata: dict[str, str] = {}

    # -- nodes -------------------------------------------------------------------------
    def add_node(self, node: Node) -> Node:
        """Insert ``node``, wiring edges from the producers of its inputs and to consumers of
        its outputs. Raises if the name or one of its outputs is already taken."""
        if node.name in self._nodes:
            raise InvalidModelError(f"duplicate node name '{node.name}'")
        for out in node.outputs:
            if out in self._producer:
                raise InvalidModelError(
                    f"tensor '{out}' has two producers: '{self._producer[out]}' and '{node.name}'")
        self._nodes[node.name] = node
        self._order[node.name] = self._counter
        self._counter += 1
        self._g.add_node(node.name)
        for out in node.outputs:
            if out:
                self._producer[out] = node.name
        self._wire_inputs(node)
        self._wire_outputs(node)
        return node

    def _wire_inputs(self, node: Node) -> None:
        for i, tensor in enumerate(node.inputs):
            if not tensor:
                continue
            self._uses.setdefault(tensor, {})[node.name] = None
            src = self._producer.get(tensor)
            if src is not None:
                self._g.add_edge(src, node.name, key=(tensor, i))

    def _unwire_inputs(self, node: Node) -> None:
        for u, _, key in list(self._g.in_edges(node.name, keys=True)):
            self._g.remove_edge(u, node.name, key=key)
        for tensor in node.inputs:
            self._uses.get(tensor, {}).pop(node.name, None)

    def _wire_outputs(self, node: Node) -> None:
        for out in node.outputs:
            for reader in self._uses.get(out, {}):
                consumer = self._nodes[reader]
                for i, tensor in enumerate(consumer.inputs):
                    if tensor == out:
                        self._g.add_edge(node.name, reader, key=(tensor, i))

    def remove_node(self, name: str) -> Node:
        node = self._nodes[name]
        self._unwire_inputs(node)
        del self._nodes[name]
        del self._order[name]
        self._g.remove_node(name)
        for out in node.outputs:
            if self._producer.get(out) == name:
                del self._producer[out]
        return node

    def node(self, name: str) -> Node:
        return self._nodes[name]

    def has_node(self, name: str) -> bool:
        return name in self._nodes

    @property
    def nodes(self) -> list[Node]:
        """Nodes in insertion order (use ``topo_order`` for execution order)."""
        return list(self._nodes.values())

    def __iter__(self) -> Iterator[Node]:
        return iter(self.topo_order())

    def __len__(self) -> int:
        return len(self._nodes)

    # -- edges and uses ----------------------------------------------------------------
    def producer(self, tensor: str) -> Node | None:
        name = self._producer.get(tensor)
        return self._nodes[name] if name is not None else None

    def consumers(self, tensor: str) -> list[Node]:
        """Nodes reading ``tensor``, each once, in deterministic (insertion) order."""
        return sorted((self._nodes[n] for n in self._uses.get(tensor, {})),
                      key=lambda n: self._order[n.name])

    def set_inputs(self, node: Node, inputs: Iterable[str]) -> None:
        """Rewire ``node`` to read ``inputs`` (replaces its input edges)."""
        self._unwire_inputs(node)
        node.inputs = tuple(inputs)
        self._wire_inputs(node)

    def replace_all_uses(self, old: str, new: str) -> None:
        """Make every reader of tensor ``old`` (and the graph outputs) read ``new`` instead."""
        for node in self.consumers(old):
            self.set_inputs(node, (new if t == old else t for t in node.inputs))
        self.outputs = [new if t == old else t for t in self.outputs]

    def is_used(self, tensor: str) -> bool:
        return tensor in self.outputs or bool(self.consumers(tensor))

    # -- order -------------------------------------------------------------------------
    def topo_order(self) -> list[Node]:
        """Deterministic topological order: among ready nodes, the earliest inserted first."""
        try:
            names = nx.lexicographical_topological_sort(self._g, key=self._order.__getitem__)
            return [self._nodes[n] for n in names]
        except nx.NetworkXUnfeasible as exc:
            raise InvalidModelError(f"graph has a cycle: {' -> '.join(self.find_cycle())}") from exc

    def find_cycle(self) -> list[str]:
        """Node names along one cycle (empty when acyclic)."""
        try:
            edges = nx.find_cycle(self._g)
        except nx.NetworkXNoCycle:
            return []
        return [str(e[0]) for e in edges] + [str(edges[0][0])]

    def is_acyclic(self) -> bool:
        return bool(nx.is_directed_acyclic_graph(self._g))

    def edge_count(self) -> int:
        return int(self._g.number_of_edges())

    # -- tensors -----------------------------------------------------------------------
    def set_initializer(self, name: str, value: np.ndarray) -> None:
        """Add or replace a constant tensor (stored read-only) and its TensorInfo."""
        arr = readonly(np.asarray(value))
        self.initializers[name] = arr
        self.tensors[name] = TensorInfo(name, tuple(int(d) for d in arr.shape), arr.dtype.name)

    def shape(self, tensor: str) -> tuple[int, ...]:
        return self.tensors[tensor].shape

    def unique_name(self, base: str) -> str:
        """A tensor/node name not used yet, derived from ``base``."""
        name, i = base, 0
        while name in self.tensors or name in self._nodes or name in self._producer:
            i += 1
            name = f"{base}_{i}"
        return name

    def remove_unused_initializers(self) -> int:
        used = {t for n in self._nodes.values() for t in n.inputs} | set(self.outputs)
        dead = [k for k in self.initializers if k not in used]
        for k in dead:
            del self.initializers[k]
            self.tensors.pop(k, None)
        return len(dead)

    def copy(self) -> Graph:
        """A structurally independent copy; initializer arrays (read-only) are shared."""
        out = Graph(self.name)
        out.tensors = dict(self.tensors)
        out.initializers = dict(self.initializers)
        out.inputs = list(self.inputs)
        out.outputs = list(self.outputs)
        out.metadata = dict(self.metadata)
        for node in self.nodes:
            out.add_node(node.clone())
        return out
