"""``model.cim.onnx``: the compiled model as standard ONNX that onnxruntime runs with the exact
CIM numerics, so ``onnxruntime(model.cim.onnx) ==`` emulator ``==`` numpy reference, bit for bit.

* quantized CIM layers are lowered by ``cim_onnx_layer`` (codes, grouped conv over all
  segments, ADC, adder tree, shift or scale, bias);
* digital ops keep their ONNX form; those the reference computes in float64
  (``OpDef.double`` in ``cimc.ops``) are wrapped in ``Cast`` to double and back, and
  GlobalAveragePool becomes ``ReduceSum``/``Div`` in double (onnxruntime has no double pool);
* every LRN is written as its kernel's float64 steps (``cimc.lowering.lrn``): onnxruntime's
  own LRN refuses an even size and, in float32, differs from the kernel in the last bit;
* the batch dimension is free (``N``): Reshapes keep it as ``-1`` (``cimc.quant.batching``); an
  input that carries no batch (``batch_inputs``: a broadcast operand) keeps its static shape.

``float_model`` writes the float graph the same way without any lowering but the even-size LRN's
(the float baseline for accuracy and benchmarks; an odd-size LRN keeps onnxruntime's own).
``expose`` adds a compiled model's per-layer tensors (``L/input_codes``, ``L/adc_codes``,
``L/sums`` and the output) as graph outputs. Both checked with ``onnx.checker`` (full check), so they open in Netron.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cimc import __version__
from cimc.build.file_parts import FileParts
from cimc.build.proto_splice import splice
from cimc.errors import PassError
from cimc.frontend.onnx_export import EXPORT_IR_VERSION, EXPORT_OPSET, ExportBuilder
from cimc.frontend.skeleton import copy_fields
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.lowering.integer import input_codes
from cimc.lowering.layer import LayerEmitter
from cimc.lowering.lrn import emit_lrn, needs_lowering
from cimc.ops import op_table
from cimc.quant.batching import batch_generic, batch_inputs, static_batch
from cimc.quant.cim_layer import cim_spec
from cimc.quant.reference import is_quantized_cim

BATCH = "N"
LAYER_TENSORS = ("input_codes", "adc_codes", "sums")


def cim_model(graph: Graph, integer: bool = True) -> onnx.ModelProto:
    """The compiled model (module doc), checked; CIM layers must carry ``QuantParams``.
    ``integer=False`` writes every layer in the float form (``cimc.lowering.layer``)."""
    return _checked(_cim_proto(graph, integer=integer)[0])


def cim_model_bytes(graph: Graph) -> bytes:
    """``serialize(cim_model(graph))``: the bytes of ``cim_model_parts``."""
    return cim_model_parts(graph).to_bytes()


def cim_model_parts(graph: Graph) -> FileParts:
    """``serialize(cim_model(graph))`` as pieces whose large weights are ``graph``'s arrays
    (``cimc.build.proto_splice``): no proto and no ``bytes`` holds a second copy of them."""
    return checked_parts(*_cim_proto(graph, hold=True))


def _cim_proto(graph: Graph, hold: bool = False, integer: bool = True) -> tuple[onnx.ModelProto, dict[int, np.ndarray]]:
    generic = batch_generic(graph)
    builder = ExportBuilder(generic)
    layers = []
    for node in generic.topo_order():
        if is_quantized_cim(node):
            emitter = LayerEmitter(builder, generic, node, cim_spec(generic, node), integer)
            emitter.emit()
            layers.append(emitter.document())
        elif op_table()[node.op].double:
            _emit_double(builder, node, generic)
        elif node.op == "LRN":
            emit_lrn(builder, node, generic)
        else:
            builder.add(node)
    props = {"cimc.cim_layers": json.dumps(layers, sort_keys=True),
             "cimc.numerics": "docs/build-format.md, The numerical contract; digital reductions in float64"}
    return _finish(generic, builder, f"{graph.name} (compiled for CIM)", props, hold)


def float_model(graph: Graph) -> onnx.ModelProto:
    """The float graph as batch-free ONNX (no lowering, no casts), checked."""
    return _checked(_float_proto(graph)[0])


def float_model_bytes(graph: Graph) -> bytes:
    """``serialize(float_model(graph))``, its large weights copied once (``checked_parts``)."""
    return checked_parts(*_float_proto(graph, hold=True)).to_bytes()


def _float_proto(graph: Graph, hold: bool = False) -> tuple[onnx.ModelProto, dict[int, np.ndarray]]:
    generic = batch_generic(graph)
    builder = ExportBuilder(generic)
    for node in generic.topo_order():
        if needs_lowering(node):
            emit_lrn(builder, node, generic)
        else:
            builder.add(node)
    return _finish(generic, builder, graph.name, {}, hold)


def _emit_double(b: ExportBuilder, node: Node, graph: Graph) -> None:
    """``node`` computed in float64: inputs cast up, output cast down once."""
    inputs = []
    for i, t in enumerate(node.inputs):
        inputs.append(_cast(b, t, f"{node.name}/f64_in{i}", TensorProto.DOUBLE) if t else "")
    wide = b.fresh(f"{node.name}/f64_out")
    if node.op == "GlobalAveragePool":
        h, w = graph.shape(node.inputs[0])[2:4]
        axes = _const(b, f"{node.name}/axes", np.array([2, 3], np.int64))
        total = b.fresh(f"{node.name}/f64_sum")
        b.nodes.append(helper.make_node("ReduceSum", [inputs[0], axes], [total], name=total, keepdims=1))
        count = _const(b, f"{node.name}/count", np.array(h * w, np.float64))
        b.nodes.append(helper.make_node("Div", [total, count], [wide], name=wide))
    else:
        b.add(Node(node.name, node.op, tuple(inputs), (wide,), dict(node.attrs)), wide=True)
    _cast(b, wide, node.outputs[0], TensorProto.FLOAT, exact=True)


def _cast(b: ExportBuilder, tensor: str, out: str, to: int, exact: bool = False) -> str:
    name = out if exact else b.fresh(out)
    b.nodes.append(helper.make_node("Cast", [tensor], [name], name=b.fresh(f"{name}:Cast"), to=to))
    return name



def _const(b: ExportBuilder, base: str, value: np.ndarray) -> str:
    name = b.fresh(base)
    b.extra.append(numpy_helper.from_array(value, name))
    return name


def _value_info(graph: Graph, name: str, batch: int | None) -> onnx.ValueInfoProto:
    """``name``'s static shape with a dim 0 equal to ``batch`` written as ``N`` (none: all static)."""
    shape: list[int | str] = list(graph.shape(name))
    if shape and batch is not None and shape[0] == batch:
        shape[0] = BATCH
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _finish(graph: Graph, b: ExportBuilder, name: str, props: dict[str, str],
            hold: bool = False) -> tuple[onnx.ModelProto, dict[int, np.ndarray]]:
    """The model proto, not yet checked, and the arrays it holds back. Initializers are
    converted one at a time straight into the model (``make_graph``/``make_model`` would copy
    them twice more). With ``hold``, each initializer of at least ``LEAN_CHECK_BYTES`` of plain
    numeric data is a skeleton (name, dims, type, empty ``raw_data``) and its array is returned
    under its index in ``model.graph.initializer``, for ``proto_splice``; else nothing is held."""
    batch, batched = static_batch(graph), batch_inputs(graph)  # an input that broadcasts stays static
    read = {t for n in b.nodes for t in n.input}
    inputs = [_value_info(graph, t, batch if t in batched else None) for t in graph.inputs]
    onnx_graph = helper.make_graph(b.nodes, name, inputs, [_value_info(graph, t, batch) for t in graph.outputs])
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", EXPORT_OPSET)],
                              ir_version=EXPORT_IR_VERSION, producer_name="cimc", producer_version=__version__)
    held: dict[int, np.ndarray] = {}
    for key in sorted(k for k in graph.initializers if k in read):
        array = np.asarray(graph.initializers[key])
        if hold and _splicable(array):
            held[len(model.graph.initializer)] = array
            _skeleton(model.graph.initializer.add(), key, array.shape, helper.np_dtype_to_tensor_dtype(array.dtype))
        else:
            model.graph.initializer.add().CopyFrom(numpy_helper.from_array(array, key))
    for tensor in b.extra:
        if hold and tensor.HasField("raw_data") and len(tensor.raw_data) >= LEAN_CHECK_BYTES:
            held[len(model.graph.initializer)] = np.frombuffer(tensor.raw_data, np.uint8)
            skeleton = model.graph.initializer.add()
            copy_fields(tensor, skeleton, skip="raw_data")
            skeleton.raw_data = b""  # present and empty: proto_splice fills it
        else:
            model.graph.initializer.append(tensor)
    helper.set_model_props(model, dict(sorted(props.items())))
    return model, held


#: The dtypes whose ``numpy_helper.from_array`` data is the array's little-endian bytes as they
#: are (no string list, no 2/4/6-bit packing).
_PLAIN = frozenset(np.dtype(t) for t in (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
                                          np.uint8, np.uint16, np.uint32, np.uint64, np.bool_))


def _splicable(array: np.ndarray) -> bool:
    return array.dtype.newbyteorder("=") in _PLAIN and array.nbytes >= LEAN_CHECK_BYTES


def _skeleton(tensor: onnx.TensorProto, name: str, dims: tuple[int, ...], data_type: int) -> None:
    """``tensor`` as ``from_array`` would make it, with ``raw_data`` present and empty."""
    tensor.dims.extend(dims)
    tensor.name = name
    tensor.data_type = data_type
    tensor.raw_data = b""


def _checked(model: onnx.ModelProto) -> onnx.ModelProto:
    checked_bytes(model)
    return model


#: Bytes from which an initializer is handed to the checker as a graph input (``check_lean``).
LEAN_CHECK_BYTES = 1 << 16


def checked_bytes(model: onnx.ModelProto) -> bytes:
    """``model`` serialized, after the ONNX checker (full check, with shape inference) accepted
    it (``check_lean``); a model it refuses is a ``PassError`` (cimc wrote something invalid)."""
    _check(model, None)
    return serialize(model)


def checked_parts(model: onnx.ModelProto, held: dict[int, np.ndarray]) -> FileParts:
    """The serialized model whose initializer ``i`` has ``held[i]``'s bytes as ``raw_data``
    (``model`` holds a skeleton there: ``_finish``), after the ONNX checker accepted it with the
    held tensors as graph inputs (``check_lean``): ``checked_bytes`` of the full model, byte for byte."""
    large = {model.graph.initializer[i].name for i in held}
    _check(model, large)
    return splice(serialize(model), held)


def _check(model: onnx.ModelProto, large: set[str] | None) -> None:
    try:
        check_lean(model, large)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError) as exc:
        raise PassError(f"model.cim.onnx of '{model.graph.name}' fails the ONNX checker: {exc}") from exc


def check_lean(model: onnx.ModelProto, large: set[str] | None = None) -> None:
    """``onnx.checker.check_model(model, full_check=True)`` on a copy whose initializers named in
    ``large`` (default: those of at least ``LEAN_CHECK_BYTES`` of ``raw_data``) are graph inputs
    of the same name, type and shape: node, graph and shape-inference checks see the same model,
    and the checker's C++ side does not parse a second copy of the weights (a VGG19 build: 1 GB).
    Those tensors' data were written by ``numpy_helper.from_array`` or are the arrays ``_finish``
    held (their size matches their shape by construction)."""
    if large is None:
        large = {t.name for t in model.graph.initializer if len(t.raw_data) >= LEAN_CHECK_BYTES}
    if not large:
        onnx.checker.check_model(model, full_check=True)
        return
    lean = onnx.ModelProto()
    copy_fields(model, lean, skip="graph")
    copy_fields(model.graph, lean.graph, skip="initializer")
    lean.graph.initializer.extend(t for t in model.graph.initializer if t.name not in large)
    listed = {i.name for i in model.graph.input}
    lean.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                            for t in model.graph.initializer if t.name in large and t.name not in listed)
    onnx.checker.check_model(lean, full_check=True)


def expose(model: onnx.ModelProto, layers: Iterable[str], extra: Iterable[str] = ()) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs ``L/input_codes``, ``L/adc_codes`` and
    ``L/sums`` of every named CIM layer, and the ``extra`` tensors (e.g. layer outputs). An
    integer layer's input codes are dequantized from its levels (``integer.input_codes``)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    layers = list(layers)
    produced = {t for n in out.graph.node for t in n.output}
    for layer in layers:
        for node in input_codes(out, layer, produced):
            out.graph.node.append(node)
            produced.update(node.output)
    present = {o.name for o in out.graph.output}
    tensors = [f"{layer}/{field}" for layer in layers for field in LAYER_TENSORS] + list(extra)
    for tensor in tensors:
        if tensor not in produced:
            raise KeyError(f"model has no tensor '{tensor}'")
        if tensor not in present:
            out.graph.output.append(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, None))
            present.add(tensor)
    return out


def serialize(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString(deterministic=True)
