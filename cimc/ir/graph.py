"""The IR graph: nodes in insertion order, with tensors and initializers.

Edges are not stored: node ``v`` depends on node ``u`` when it reads a tensor ``u`` produces
(``_producer``: tensor → its node; ``_uses``: tensor → the nodes reading it), so an edge per
input slot ``(tensor, i)`` (``Add(x, x)`` has two) is always what the nodes' inputs say, and
``topo_order`` orders by ``cimc.ir.order``. Initializers are read-only numpy arrays: passes
replace them (``set_initializer``), never write into them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from cimc.errors import InvalidModelError
from cimc.ir.node import Node
from cimc.ir.order import cycle, topological
from cimc.ir.tensor import TensorInfo, readonly


class Graph:
    """A dataflow graph of ``Node`` objects with static tensor shapes."""

    def __init__(self, name: str = "graph") -> None:
        self.name = name
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
        for out in node.outputs:
            if out:
                self._producer[out] = node.name
        self._wire_inputs(node)
        return node

    def _wire_inputs(self, node: Node) -> None:
        for tensor in node.inputs:
            if tensor:
                self._uses.setdefault(tensor, {})[node.name] = None

    def _unwire_inputs(self, node: Node) -> None:
        for tensor in node.inputs:
            self._uses.get(tensor, {}).pop(node.name, None)

    def remove_node(self, name: str) -> Node:
        node = self._nodes[name]
        self._unwire_inputs(node)
        del self._nodes[name]
        del self._order[name]
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
        nodes, deps = self._dependencies()
        order = topological(deps)
        if len(order) != len(nodes):
            raise InvalidModelError(f"graph has a cycle: {' -> '.join(self.find_cycle())}")
        return [nodes[i] for i in order]

    def _dependencies(self) -> tuple[list[Node], list[set[int]]]:
        """The nodes in insertion order, and per node the indices of the nodes producing its inputs."""
        nodes = self.nodes
        index = {n.name: i for i, n in enumerate(nodes)}
        deps = [{index[self._producer[t]] for t in n.inputs if t in self._producer} for n in nodes]
        return nodes, deps

    def find_cycle(self) -> list[str]:
        """Node names along one cycle, the first repeated at the end (empty when acyclic)."""
        nodes, deps = self._dependencies()
        return [nodes[i].name for i in cycle(deps, set(topological(deps)))]

    def is_acyclic(self) -> bool:
        _, deps = self._dependencies()
        return len(topological(deps)) == len(deps)

    def edge_count(self) -> int:
        """Input slots reading a tensor some node produces (``Add(x, x)`` counts two)."""
        return sum(t in self._producer for n in self._nodes.values() for t in n.inputs)

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
