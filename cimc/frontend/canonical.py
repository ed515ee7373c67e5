"""Conversion of ONNX nodes into the IR's canonical form, by each op's ``canonicalize`` rule
(``cimc.ops``).

A rule takes the ONNX node, an ``OpContext`` (static shapes and constant values of the
folded, shape-inferred model) and the node's attributes as plain Python values, and returns
the IR data inputs and canonical attributes: constant operands become attributes,
``auto_pad`` becomes explicit pads, defaults are filled in, and axes are made non-negative.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from cimc.errors import InvalidModelError, UnsupportedError
from cimc.ops import op_table
from cimc.ops.base import Attrs
from cimc.ops.rewrite_nodes import onnx_node_attrs


@dataclass
class OpContext:
    """What the rules may look up: static shapes and initializers (decoded lazily)."""

    shapes: dict[str, tuple[int, ...]]
    initializers: dict[str, onnx.TensorProto]
    _values: dict[str, np.ndarray] = field(default_factory=dict)
    taken: set[str] = field(default_factory=set)

    def shape(self, name: str) -> tuple[int, ...]:
        if name not in self.shapes:
            raise InvalidModelError(f"no static shape could be inferred for tensor '{name}'",
                                    hint="give every graph input a static shape (--input-shape NAME=N,C,H,W with the "
                                         "model's own image size)")
        return self.shapes[name]

    def const(self, node: onnx.NodeProto, index: int, what: str) -> np.ndarray | None:
        """Constant value of input ``index`` (``None`` if absent); a runtime value is unsupported."""
        if index >= len(node.input) or not node.input[index]:
            return None
        name = node.input[index]
        if name not in self.initializers:
            raise UnsupportedError(f"node '{node.name}' ({node.op_type}): {what} '{name}' must be a constant")
        return self.value(name)

    def value(self, name: str) -> np.ndarray:
        """The value of initializer ``name``, decoded once (or given: a folded weight)."""
        if name not in self._values:
            self._values[name] = numpy_helper.to_array(self.initializers[name])
        return self._values[name]

    def release(self, name: str) -> np.ndarray:
        """The value of initializer ``name`` handed over to the IR, read-only: the arrays the
        context decoded or was given (folded weights) belong to the importer alone, so they are
        frozen in place and forgotten here rather than copied (one copy of the weights, not two)."""
        value = self.value(name)
        value.flags.writeable = False
        del self._values[name]
        return value

    def fresh(self, base: str, shape: tuple[int, ...] | None = None) -> str:
        """A tensor or node name not used in the model yet (``base`` if free); with ``shape``, a
        new tensor of that static shape (for the nodes an op's ``replace`` rule makes)."""
        name, i = base, 0
        while name in self.taken or name in self.shapes or name in self.initializers:
            i += 1
            name = f"{base}_{i}"
        self.taken.add(name)
        if shape is not None:
            self.shapes[name] = shape
        return name


    def add_constant(self, base: str, value: np.ndarray) -> str:
        """A new initializer holding ``value`` (an operand of a node an op's ``replace`` rule makes)."""
        name = self.fresh(base, tuple(np.shape(value)))
        self.initializers[name] = numpy_helper.from_array(np.asarray(value), name)
        self._values[name] = np.asarray(value)
        return name


def onnx_attrs(node: onnx.NodeProto) -> Attrs:
    """The node's attributes as plain Python values (str, int, float, tuples)."""
    return onnx_node_attrs(node)


def replace(node: onnx.NodeProto, ctx: OpContext) -> list[onnx.NodeProto]:
    """The ONNX nodes ``node`` is imported as: its op's ``replace`` rule's nodes (other IR ops
    computing the same), or ``node`` itself."""
    op = op_table().get(node.op_type)
    nodes = op.replace(node, ctx) if op is not None and op.replace is not None else None
    return [node] if nodes is None else nodes


def canonicalize(node: onnx.NodeProto, ctx: OpContext) -> tuple[list[str], Attrs]:
    """IR inputs and canonical attributes of ``node`` (an op of ``cimc.ops.op_table``): its
    ``weight_inputs`` must be constants, then its ``canonicalize`` rule runs."""
    op = op_table()[node.op_type]
    for index in op.weight_inputs:
        if index < len(node.input) and node.input[index] and node.input[index] not in ctx.initializers:
            raise UnsupportedError(f"node '{node.name}' ({node.op_type}): weight input '{node.input[index]}' "
                                   "is computed at run time; only constant weights are supported")
    return op.canonicalize(node, ctx, onnx_attrs(node))
