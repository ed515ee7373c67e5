"""A memory budget on the static shapes of a model, checked at import before anything is allocated.

A model may declare (or ``--input-shape`` may ask for) shapes whose tensors could never be
held in memory: ``1×3×100000×100000`` is 3·10^10 floats, and ``2^62 × 2^62`` overflows any
64-bit size. Neither the interpreter nor the compiler should find out by allocating. For
every graph input, output and inferred intermediate tensor with static shape ``d`` and
element size ``s`` bytes, the size ``s · Π d`` is computed with Python ints (exact, no
overflow) and must stay within ``max_tensor_bytes``; all of them together within
``4 · max_tensor_bytes``. Otherwise ``ResourceLimitError`` names the first tensor over
the budget (inputs first) and the option that raises it (``--max-tensor-bytes``, declared
with its default in ``cimc.options``; constant folding is held to the same budget).
``check_nonempty`` (run by the compiler, not the importer) refuses IR tensors with a zero dim.
"""

from __future__ import annotations

import math

import onnx

from cimc.errors import InvalidModelError, ResourceLimitError, UnsupportedError
from cimc.frontend.tensor_checks import itemsize
from cimc.ir.graph import Graph
from cimc.options import OPTIONS

DEFAULT_MAX_TENSOR_BYTES: int = OPTIONS["max_tensor_bytes"].default
RAISE_HINT = "raise the budget with --max-tensor-bytes"
_SHAPE_HINT = f"use a smaller --input-shape (batch size or image size), or {RAISE_HINT}"


def static_sizes(graph: onnx.GraphProto) -> dict[str, tuple[tuple[int, ...], int]]:
    """``name → (shape, bytes)`` for the tensors whose shape is fully static."""
    sizes: dict[str, tuple[tuple[int, ...], int]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
            continue
        if not all(d.HasField("dim_value") for d in tt.shape.dim):
            continue
        shape = tuple(int(d.dim_value) for d in tt.shape.dim)
        if any(d < 0 for d in shape):
            raise InvalidModelError(f"tensor '{vi.name}' has a negative dim: {shape}")
        sizes[vi.name] = (shape, math.prod(shape) * itemsize(tt.elem_type))
    return sizes


def check_memory(graph: onnx.GraphProto, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> None:
    """Raise ``ResourceLimitError`` if a static tensor, or all of them, exceed the budget."""
    sizes = static_sizes(graph)
    if not sizes:
        return
    over = [(name, shape, size) for name, (shape, size) in sizes.items() if size > max_tensor_bytes]
    if over:  # the first in graph order: a huge declared input is named, not what it implies
        name, shape, size = over[0]
        raise ResourceLimitError(
            f"tensor '{name}'{_origin(graph, name)} of shape {shape} would take {size} bytes "
            f"({math.prod(shape)} elements), more than the budget of {max_tensor_bytes} bytes per tensor",
            hint=_SHAPE_HINT if _is_input(graph, name) else RAISE_HINT,
            details={"tensor": name, "shape": list(shape), "bytes": size, "budget": max_tensor_bytes})
    total = sum(s for _, s in sizes.values())
    if total > 4 * max_tensor_bytes:
        raise ResourceLimitError(
            f"the model's tensors would take {total} bytes together, more than the budget of "
            f"{4 * max_tensor_bytes} bytes (4 × --max-tensor-bytes)", hint=_SHAPE_HINT,
            details={"bytes": total, "budget": 4 * max_tensor_bytes})


def check_nonempty(graph: Graph) -> None:
    """Raise ``UnsupportedError`` for an IR tensor with a zero dim. The importer and the
    interpreter accept empty tensors (ONNX does); the compiler does not: an empty input or
    a window larger than its padded input cannot be mapped or calibrated."""
    for name in [*graph.inputs, *(o for n in graph.topo_order() for o in n.outputs)]:
        shape = graph.tensors[name].shape if name in graph.tensors else ()
        if 0 in shape:
            producer = graph.producer(name)
            origin = "graph input" if producer is None else f"output of node '{producer.name}', {producer.op}"
            raise UnsupportedError(f"tensor '{name}' ({origin}) is empty: shape {shape}",
                                   hint="cimc compiles only inputs and activations with at least one element")


def _is_input(graph: onnx.GraphProto, name: str) -> bool:
    return any(vi.name == name for vi in graph.input)


def _origin(graph: onnx.GraphProto, name: str) -> str:
    """`` (graph input)`` or `` (output of node 'n', Op)`` for a message."""
    if _is_input(graph, name):
        return " (graph input)"
    node = next((n for n in graph.node if name in n.output), None)
    return "" if node is None else f" (output of node '{node.name}', {node.op_type})"
