"""IR nodes: an op with ordered input/output tensor names, attributes and annotations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cimc.ir.annotations import Annotations


@dataclass(eq=False)
class Node:
    """One operation. ``inputs``/``outputs`` are tuples of tensor names ('' = absent optional
    input); change them only through ``Graph`` methods so edges stay in sync."""

    name: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    ann: Annotations = field(default_factory=Annotations)

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def clone(self) -> Node:
        """A copy whose attrs and annotation maps can be changed independently."""
        ann = Annotations(self.ann)
        return Node(self.name, self.op, self.inputs, self.outputs, dict(self.attrs), ann)
