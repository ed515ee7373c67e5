"""A bounded ONNX constant folder.

Constant, ConstantOfShape, Shape/Size of statically shaped tensors, and every whitelisted
node whose inputs are all constant are evaluated (``onnx.reference.ReferenceEvaluator`` on
the single node) and replaced by initializers. Torch's Shape→Gather→Concat→Reshape chains
fold away this way.

Folding is bounded by the import's tensor budget (``--max-tensor-bytes``, ``budget`` here):
before a node is evaluated, the element count of its outputs is computed with Python ints
(from inferred shapes, or from the constant operands for ConstantOfShape/Expand/Range/Tile)
and times the widest element size it may have (``Cast``'s target, ``Constant`` and
``ConstantOfShape``'s value, else the widest operand) gives its bytes; a node above
``budget`` bytes, or a fold that would take the total past ``4 · budget``, raises
``ResourceLimitError``. A weight the model builds from its shape (the legacy ONNX zoo's
``ConstantOfShape`` weights: VGG19's 25088×4096 float32 FC, 411 MB) is folded when it fits.

A CastLike reads only the element type of its second operand: with a constant first operand
and a statically typed second one (a graph input, an activation), it folds as a Cast to that
type. Torch's dynamo exporter with ``optimize=False`` writes ``CastLike(0, x)`` → ``Expand``
for every bias-free conv's zero bias; these fold away.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from cimc.errors import InvalidModelError, ResourceLimitError
from cimc.frontend.budget import DEFAULT_MAX_TENSOR_BYTES, RAISE_HINT
from cimc.frontend.lean_infer import LEAN_MIN_ELEMENTS
from cimc.frontend.loader import default_opset
from cimc.frontend.proto_graph import DEFAULT_DOMAINS, set_repeated
from cimc.frontend.tensor_checks import itemsize
from cimc.safe_text import one_line

log = logging.getLogger(__name__)

DEFAULT_BUDGET = DEFAULT_MAX_TENSOR_BYTES  # bytes per folded tensor; 4× in all
_ELEMENTWISE = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
    "And", "Or", "Xor", "Not", "Where", "Max", "Min", "Neg", "Abs", "Sqrt", "Reciprocal", "Floor", "Ceil",
    "Sign", "Relu", "Exp", "Log", "Clip"})
_SHRINKING = frozenset({
    "Identity", "Cast", "CastLike", "Reshape", "Squeeze", "Unsqueeze", "Slice", "Flatten", "Transpose",
    "ReduceProd", "ReduceSum", "ReduceMin", "ReduceMax", "ReduceMean", "Split", "NonZero"})
_SPECIAL = frozenset({"Constant", "ConstantOfShape", "Shape", "Size", "Gather", "Concat", "Expand", "Range", "Tile"})
#: Ops the folder evaluates when all their inputs are constant.
FOLDABLE: frozenset[str] = _ELEMENTWISE | _SHRINKING | _SPECIAL


class _Folder:
    """Walks the (topologically sorted) nodes once, folding what it can."""

    def __init__(self, model: onnx.ModelProto, budget: int) -> None:
        self.graph = model.graph
        self.opset = default_opset(model) or 13
        self.budget = budget
        self.total = 0
        self.protos = {t.name: t for t in self.graph.initializer}
        self.values: dict[str, np.ndarray] = {}
        self.shapes = static_shapes(self.graph)
        self.types = elem_types(self.graph)

    def value(self, name: str) -> np.ndarray:
        if name not in self.values:
            self.values[name] = numpy_helper.to_array(self.protos[name])
        return self.values[name]

    def is_const(self, name: str) -> bool:
        return not name or name in self.values or name in self.protos

    def run(self) -> set[int]:
        """Fold every foldable node; returns the indices of the folded nodes."""
        return {i for i, node in enumerate(self.graph.node) if self._try_fold(node)}

    def _try_fold(self, node: onnx.NodeProto) -> bool:
        if node.domain not in DEFAULT_DOMAINS or node.op_type not in FOLDABLE:
            return False
        if any(a.HasField("g") or len(a.graphs) for a in node.attribute):
            return False
        if node.op_type in ("Shape", "Size"):
            return self._fold_shape(node)
        if node.op_type == "CastLike" and len(node.input) == 2 and self.is_const(node.input[0]):
            return self._fold_cast_like(node)
        if not all(self.is_const(t) for t in node.input):
            return False
        args = [self.value(t) if t else None for t in node.input]
        self._charge(node, self._count(node, args), _itemsize(node, args))
        outs = _evaluate(node, args, self.opset)
        for name, arr in zip(node.output, outs, strict=False):
            if name:
                self.values[name] = np.asarray(arr)
        return True

    def _fold_shape(self, node: onnx.NodeProto) -> bool:
        shape = self.shapes.get(node.input[0])
        if shape is None:
            return False
        if node.op_type == "Size":
            self.values[node.output[0]] = np.array(math.prod(shape), dtype=np.int64)
            return True
        attrs = {a.name: a.i for a in node.attribute}
        start, end = attrs.get("start", 0), attrs.get("end", len(shape))
        self.values[node.output[0]] = np.array(shape[start:end], dtype=np.int64)  # slicing clamps like ONNX
        return True

    def _fold_cast_like(self, node: onnx.NodeProto) -> bool:
        """``CastLike(c, t)`` of a constant ``c``: ``c`` cast to ``t``'s element type, when known."""
        target = self.types.get(node.input[1], onnx.TensorProto.UNDEFINED)
        if target == onnx.TensorProto.UNDEFINED:
            return False
        data = self.value(node.input[0])
        self._charge(node, _size(data), itemsize(target))
        cast = helper.make_node("Cast", [node.input[0]], [node.output[0]], name=node.name, to=target)
        self.values[node.output[0]] = _evaluate(cast, [data], self.opset)[0]
        return True

    def _count(self, node: onnx.NodeProto, args: list[np.ndarray | None]) -> int:
        rule = _COUNT_RULES.get(node.op_type)
        if rule is not None:
            return rule(node, args)
        inferred = [self.shapes.get(o) for o in node.output if o]
        if inferred and all(s is not None for s in inferred):
            return sum(math.prod(s) for s in inferred if s is not None)
        return _fallback_count(node, args)

    def _charge(self, node: onnx.NodeProto, count: int, size: int) -> None:
        """Count ``count`` elements of ``size`` bytes against the budget (module doc)."""
        nbytes = count * size
        if nbytes > self.budget or self.total + nbytes > 4 * self.budget:
            raise ResourceLimitError(
                f"constant folding node '{node.name}' ({node.op_type}) would create {count} elements, "
                f"{nbytes} bytes (budget {self.budget} bytes per tensor, {4 * self.budget} in all; "
                f"{self.total} used)", hint=RAISE_HINT,
                details={"node": node.name, "elements": count, "bytes": nbytes, "budget": self.budget})
        self.total += nbytes


def static_shapes(graph: onnx.GraphProto) -> dict[str, tuple[int, ...]]:
    """Static shapes known for the graph's tensors (inputs, value_info, outputs, initializers)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        tt = vi.type.tensor_type
        static = tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim)
        if vi.type.HasField("tensor_type") and static:
            shapes[vi.name] = tuple(int(d.dim_value) for d in tt.shape.dim)
    for t in graph.initializer:
        shapes[t.name] = tuple(int(d) for d in t.dims)
    return shapes


def elem_types(graph: onnx.GraphProto) -> dict[str, int]:
    """Element types known for the graph's tensors (inputs, value_info, outputs, initializers)."""
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*graph.input, *graph.value_info, *graph.output]
             if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type}
    types.update({t.name: t.data_type for t in graph.initializer})
    return types


def _ints(arr: np.ndarray | None, node: onnx.NodeProto) -> list[int]:
    if arr is None:
        raise InvalidModelError(f"node '{node.name}' ({node.op_type}) lacks a required input")
    return [int(v) for v in np.asarray(arr).reshape(-1)]


def _size(arr: np.ndarray | None) -> int:
    return 0 if arr is None else math.prod(int(d) for d in arr.shape)


def _count_constant(node: onnx.NodeProto, args: list[np.ndarray | None]) -> int:
    for attr in node.attribute:
        if attr.name == "value":
            return math.prod(int(d) for d in attr.t.dims)
        if attr.name == "sparse_value":
            return math.prod(int(d) for d in attr.sparse_tensor.dims)
        if attr.name in ("value_floats", "value_ints", "value_strings"):
            return max(len(attr.floats), len(attr.ints), len(attr.strings))
    return 1


def _count_constant_of_shape(node: onnx.NodeProto, args: list[np.ndarray | None]) -> int:
    dims = _ints(args[0], node) if args else []
    if any(d < 0 for d in dims):
        raise InvalidModelError(f"node '{node.name}' (ConstantOfShape) has a negative dim: {dims}")
    return math.prod(dims)


def _count_expand(node: onnx.NodeProto, args: list[np.ndarray | None]) -> int:
    data = args[0]
    target = _ints(args[1], node)
    try:
        shape = np.broadcast_shapes(tuple(int(d) for d in data.shape) if data is not None else (), tuple(target))
    except ValueError as exc:
        raise InvalidModelError(f"node '{node.name}' (Expand) cannot broadcast to {target}") from exc
    return math.prod(int(d) for d in shape)


def _count_range(node: onnx.NodeProto, args: list[np.ndarray | None]) -> int:
    start, limit, delta = (float(np.asarray(a).reshape(-1)[0]) if a is not None else 0.0 for a in args[:3])
    if delta == 0 or not all(math.isfinite(v) for v in (start, limit, delta)):
        raise InvalidModelError(f"node '{node.name}' (Range) has a zero or non-finite delta/bounds")
    return max(math.ceil((limit - start) / delta), 0)


def _count_tile(node: onnx.NodeProto, args: list[np.ndarray | None]) -> int:
    reps = _ints(args[1], node)
    if any(r < 0 for r in reps):
        raise InvalidModelError(f"node '{node.name}' (Tile) has negative repeats {reps}")
    return _size(args[0]) * math.prod(reps)


def _count_gather(node: onnx.NodeProto, args: list[np.ndarray | None]) -> int:
    data, indices = args[0], args[1]
    if data is None or data.ndim == 0:
        return _size(indices)
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0) % data.ndim
    return _size(indices) * (_size(data) // max(int(data.shape[axis]), 1))


def _itemsize(node: onnx.NodeProto, args: list[np.ndarray | None]) -> int:
    """Bytes per element of the node's outputs, at most: ``Cast``'s target, the value of
    ``Constant``/``ConstantOfShape``, 8 for NonZero's indices, else the data operand's (every
    other foldable op keeps the dtype of its input 0, Where and CastLike of their input 1, or
    narrows it to bool)."""
    attrs = {a.name: a for a in node.attribute}
    if node.op_type == "Cast" and "to" in attrs:
        return itemsize(attrs["to"].i)
    if node.op_type in ("Constant", "ConstantOfShape"):
        if "value" in attrs:
            return itemsize(attrs["value"].t.data_type)
        return 8 if node.op_type == "Constant" else 4  # value_ints/_floats; ConstantOfShape: float32 zeros
    data = args[1] if node.op_type in ("Where", "CastLike") and len(args) > 1 else (args[0] if args else None)
    if node.op_type == "NonZero" or data is None or data.dtype.kind not in "biuf":
        return 8
    return int(data.dtype.itemsize)


def _fallback_count(node: onnx.NodeProto, args: list[np.ndarray | None]) -> int:
    """An upper bound on the output size when shape inference gave none."""
    present = [a for a in args if a is not None]
    if node.op_type in _ELEMENTWISE:
        try:
            return math.prod(int(d) for d in np.broadcast_shapes(*(a.shape for a in present)))
        except ValueError as exc:
            raise InvalidModelError(f"node '{node.name}' ({node.op_type}): operands do not broadcast") from exc
    return sum(_size(a) for a in present)


_CountRule = Callable[[onnx.NodeProto, list[np.ndarray | None]], int]
_COUNT_RULES: dict[str, _CountRule] = {
    "Constant": _count_constant,
    "ConstantOfShape": _count_constant_of_shape,
    "Expand": _count_expand,
    "Range": _count_range,
    "Tile": _count_tile,
    "Gather": _count_gather,
}


def _evaluate(node: onnx.NodeProto, args: list[np.ndarray | None], opset: int) -> list[np.ndarray]:
    if node.op_type == "Identity" and args and args[0] is not None:
        return [args[0]]
    from onnx.reference import ReferenceEvaluator  # ~20 ms of imports: only a model with something to fold

    feeds = {name: arr for name, arr in zip(node.input, args, strict=True) if name and arr is not None}
    try:
        outs = ReferenceEvaluator(node, opsets={"": opset}).run(None, feeds)
    except Exception as exc:  # the reference runtime raises arbitrary errors on bad operands
        raise InvalidModelError(f"cannot evaluate constant node '{node.name}' ({node.op_type}): "
                                f"{one_line(str(exc))}") from exc
    return [np.asarray(o) for o in outs]


def fold_constants(model: onnx.ModelProto, *, budget: int = DEFAULT_BUDGET, in_place: bool = False,
                   arrays: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """Return a copy of ``model`` with its constant subgraphs replaced by initializers
    (``in_place``: the caller owns ``model``, which is folded and returned, no copy).

    With ``arrays`` (the importer's), a large folded float tensor (``LEAN_MIN_ELEMENTS``
    elements or more: a weight built from its shape) is not serialised: its initializer keeps
    name, type and dims but no data (what shape inference reads of it, ``lean_infer``), and its
    value goes to ``arrays`` for the IR, saving the round trip through a TensorProto."""
    out = model if in_place else onnx.ModelProto()
    if not in_place:
        out.CopyFrom(model)
    folder = _Folder(out, budget)
    folded = folder.run()
    if folded:
        _rewrite(out.graph, folded, folder, arrays)
        log.debug("constant folding removed %d node(s)", len(folded))
    return out


def _initializer(name: str, value: np.ndarray, arrays: dict[str, np.ndarray] | None) -> onnx.TensorProto:
    """The initializer of a folded value: data-less with its value in ``arrays`` when large and
    float (``fold_constants``), else a TensorProto holding it."""
    if arrays is None or value.dtype.kind != "f" or value.size < LEAN_MIN_ELEMENTS:
        return numpy_helper.from_array(value, name)
    arrays[name] = value
    stand_in = onnx.TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(value.dtype))
    stand_in.dims.extend(int(d) for d in value.shape)
    return stand_in


def _rewrite(graph: onnx.GraphProto, folded: set[int], folder: _Folder,
             arrays: dict[str, np.ndarray] | None = None) -> None:
    """Drop folded nodes, add their used outputs as initializers, drop dead initializers."""
    kept = [n for i, n in enumerate(graph.node) if i not in folded]
    used = {t for n in kept for t in n.input} | {o.name for o in graph.output}
    inits = [folder.protos[t] for t in folder.protos if t in used]
    inits += [_initializer(name, arr, arrays) for name, arr in folder.values.items()
              if name in used and name not in folder.protos]
    const = {t.name for t in inits}
    set_repeated(graph.value_info, [vi for vi in graph.value_info if vi.name not in const])
    set_repeated(graph.initializer, inits)
    set_repeated(graph.node, kept)
