"""ONNX → IR import: load, check, normalise, fold constants, convert to canonical IR, verify.

``import_onnx`` is the frontend's entry point. The conversion keeps ONNX tensor and node
names (unnamed nodes get ``<op>_<index>``), removes Identity/Dropout by rewiring their
readers, turns constant operands into attributes (``cimc.frontend.canonical``), and gives
every tensor a static float32 ``TensorInfo``. All unsupported op types are reported in one
``UnsupportedError``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import numpy as np
import onnx

from cimc.errors import InvalidModelError, UnsupportedError
from cimc.frontend.budget import DEFAULT_MAX_TENSOR_BYTES, check_memory
from cimc.frontend.canonical import OpContext, canonicalize, replace
from cimc.frontend.fold_constants import FOLDABLE, fold_constants, static_shapes
from cimc.frontend.loader import DEFAULT_MAX_BYTES, check_model, check_strings, load_model
from cimc.frontend.module_paths import module_path
from cimc.frontend.normalize import infer_shapes, normalize
from cimc.frontend.proto_graph import check_definitions, fill_output_shapes, name_nodes, sort_nodes
from cimc.frontend.quantizers import QDQ_KEY, import_quantizers
from cimc.frontend.tensor_checks import check_tensors, check_values
from cimc.frontend.unsupported import check_supported, report, supported
from cimc.ir import Graph, Node, TensorInfo, verify
from cimc.ir.annotations import ModulePath
from cimc.ops import IDENTITY_OPS

log = logging.getLogger(__name__)


def import_onnx(path_or_model: str | os.PathLike[str] | onnx.ModelProto, *,
                input_shapes: Mapping[str, tuple[int, ...]] | None = None,
                max_bytes: int = DEFAULT_MAX_BYTES, allow_external_outside: bool = False,
                max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> Graph:
    """Import an ONNX model (a path or a ``ModelProto``) into a verified canonical IR graph.

    The file, with its external data, must fit ``max_bytes`` (``--max-model-bytes``). Every
    static tensor must fit ``max_tensor_bytes`` (``--max-tensor-bytes``; checked on shapes,
    before folding or any other allocation), and so must every tensor constant folding
    creates (``4 · max_tensor_bytes`` in all, each budget)."""
    model = _obtain(path_or_model, max_bytes, allow_external_outside)
    quant = prepare(model, max_tensor_bytes)
    model = normalize(model, input_shapes, in_place=True)  # the model is ours (loaded or copied)
    check_memory(model.graph, max_tensor_bytes)
    folded: dict[str, np.ndarray] = {}  # large folded weights, handed to the IR as arrays
    model = infer_shapes(fold_constants(model, budget=max_tensor_bytes, in_place=True, arrays=folded), in_place=True)
    check_memory(model.graph, max_tensor_bytes)
    graph = to_ir(model, folded)
    graph.metadata.pop(QDQ_KEY, None)  # only the importer writes it (cimc.frontend.quantizers)
    if quant is not None:
        graph.metadata[QDQ_KEY] = quant
    check_values(graph)
    if not graph.inputs:
        raise InvalidModelError("the model has no runtime input: every graph input is an initializer "
                                "(a constant) or there is none", hint="a model to compile reads at least one input")
    verify(graph)
    return graph


def _obtain(source: str | os.PathLike[str] | onnx.ModelProto, max_bytes: int,
            allow_external_outside: bool) -> onnx.ModelProto:
    if not isinstance(source, onnx.ModelProto):
        return load_model(source, max_bytes=max_bytes, allow_external_outside=allow_external_outside)
    model = onnx.ModelProto()
    model.CopyFrom(source)
    check_strings(model)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise InvalidModelError("the model still references external data; import it from its file path")
    return model


def prepare(model: onnx.ModelProto, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> str | None:
    """Check the tensors' data, name and sort the nodes, import quantizers
    (``cimc.frontend.quantizers``: their steps' document is returned), reject unsupported ops
    early, run the ONNX checker (in place)."""
    check_tensors(model)
    name_nodes(model.graph)
    check_definitions(model.graph)
    sort_nodes(model.graph)
    quant = import_quantizers(model, max_tensor_bytes)
    check_supported(model.graph, FOLDABLE)
    fill_output_shapes(model)
    check_model(model)
    return quant


# -- conversion ----------------------------------------------------------------------------
class _Aliases:
    """Tensor renames that remove Identity/Dropout nodes."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.rename: dict[str, str] = {}
        self.kept: set[str] = set()
        outputs = {vi.name for vi in graph.output}
        produced = {o for n in graph.node if n.op_type not in IDENTITY_OPS for o in n.output if o}
        for node in graph.node:
            if node.op_type in IDENTITY_OPS:
                self._add(node, outputs, produced)

    def _add(self, node: onnx.NodeProto, outputs: set[str], produced: set[str]) -> None:
        x, y = self(node.input[0]), node.output[0]
        if y not in outputs:
            self.rename[y] = x  # readers of y read x
        elif x in produced and x not in outputs:
            self.rename[x] = y  # x's producer writes the graph output y directly
        else:
            self.kept.add(node.name)  # y = x for a graph input/initializer/output: a no-op Reshape

    def __call__(self, name: str) -> str:
        while name in self.rename:
            name = self.rename[name]
        return name


def _used(graph: onnx.GraphProto) -> set[str]:
    return {t for n in graph.node for t in n.input if t} | {vi.name for vi in graph.output}


def _check_outputs(node: onnx.NodeProto, used: set[str], ctx: OpContext) -> None:
    """Extra outputs (BN statistics, MaxPool indices, Dropout mask) must be unused: the IR
    keeps every op's first output only."""
    extra = [t for t in node.output[1:] if t in used]
    if extra:
        raise UnsupportedError(f"node '{node.name}' ({node.op_type}): output '{extra[0]}' is used, "
                               "only the first output is supported")
    if node.op_type == "Dropout":
        training = ctx.const(node, 2, "training_mode")
        if training is not None and bool(training.reshape(-1)[0]):
            raise UnsupportedError(f"node '{node.name}' (Dropout): training_mode=True is not supported")


def _convert_node(node: onnx.NodeProto, ctx: OpContext, alias: _Aliases) -> Node | None:
    if node.op_type in IDENTITY_OPS:
        if node.name not in alias.kept:
            return None
        src, dst = alias(node.input[0]), node.output[0]
        return Node(node.name, "Reshape", (src,), (dst,), {"shape": ctx.shape(dst)})
    inputs, attrs = canonicalize(node, ctx)
    return Node(node.name, node.op_type, tuple(alias(t) for t in inputs), (alias(node.output[0]),), attrs)


def to_ir(model: onnx.ModelProto, arrays: Mapping[str, np.ndarray] | None = None) -> Graph:
    """Convert a normalised, folded, shape-inferred ONNX model into an IR graph; ``arrays``
    holds the values of its data-less initializers (``fold_constants``)."""
    g = model.graph
    report(n for n in g.node if not supported(n))
    ctx = OpContext(static_shapes(g), {t.name: t for t in g.initializer}, dict(arrays or {}))
    ctx.taken.update(n.name for n in g.node)
    ctx.taken.update(t for n in g.node for t in [*n.input, *n.output])
    ctx.taken.update(vi.name for vi in [*g.input, *g.output])
    alias, used = _Aliases(g), _used(g)
    graph = Graph(g.name or "graph")
    graph.metadata = {p.key: p.value for p in model.metadata_props}
    for node in g.node:
        module = module_path(node)
        parts = replace(node, ctx)
        read = used | {t for part in parts for t in part.input}
        for part in parts:
            if part is not node and not any(t in read for t in part.output):
                continue  # a replacement node nobody reads (a Split's unused part)
            _check_outputs(part, used, ctx)
            ir_node = _convert_node(part, ctx, alias)
            if ir_node is not None:
                if module is not None:
                    ir_node.ann.put(ModulePath(module))
                graph.add_node(ir_node)
    graph.inputs = [vi.name for vi in g.input]
    graph.outputs = [vi.name for vi in g.output]
    _add_tensors(graph, g, ctx)
    return graph


def _elem_types(g: onnx.GraphProto) -> dict[str, int]:
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*g.input, *g.value_info, *g.output]}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


def _add_tensors(graph: Graph, g: onnx.GraphProto, ctx: OpContext) -> None:
    """Initializers read by the IR, and a float32 ``TensorInfo`` for every other tensor."""
    types = _elem_types(g)
    read = {t for n in graph.nodes for t in n.inputs if t} | set(graph.outputs)
    values = [t for t in read if t in ctx.initializers]
    activations = [*graph.inputs, *(o for n in graph.nodes for o in n.outputs)]
    bad = sorted({t for t in [*values, *activations] if types.get(t, onnx.TensorProto.FLOAT) != onnx.TensorProto.FLOAT})
    if bad:
        listed = ", ".join(f"'{t}' ({onnx.TensorProto.DataType.Name(types[t]).lower()})" for t in bad[:10])
        raise UnsupportedError(f"only float32 tensors are supported; got {listed}")
    for name in sorted(values):
        graph.set_initializer(name, ctx.release(name))
    for name in activations:
        graph.tensors[name] = TensorInfo(name, ctx.shape(name), "float32")
