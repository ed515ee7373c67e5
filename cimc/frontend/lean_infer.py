"""ONNX shape inference without shipping the weights through it.

``onnx.shape_inference.infer_shapes`` serialises the whole model, parses it in C++, infers,
serialises the result and parses it back in Python: four passes over every weight byte, for
a result that never depends on the weights. ``infer_shapes_lean`` runs the same inference on
a *skeleton* — a copy of the model whose large floating-point initializers have no data
(``raw_data`` cleared, dims and type kept) — and then puts the original initializers back
into the inferred model, by position. Shape inference reads initializer *values* only for
shape-like operands (Reshape shapes, Slice starts, Resize scales, Range bounds: integers,
scalars or one entry per axis) and data propagation only for int64 tensors, so a float
tensor of more than ``LEAN_MIN_ELEMENTS`` elements is never read: the result equals
``infer_shapes(model, ...)`` exactly, at the cost of one copy of the weights instead of four
(none with ``in_place``, when the caller owns the model: inference only adds ``value_info``
and output types, so those are moved into the model).
"""

from __future__ import annotations

import math

import onnx
from onnx import shape_inference

from cimc.frontend.skeleton import copy_fields, skeleton

#: Initializers with at least this many elements travel without their data.
LEAN_MIN_ELEMENTS = 1024
_FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                          onnx.TensorProto.BFLOAT16})


def _strippable(tensor: onnx.TensorProto) -> bool:
    return (tensor.data_type in _FLOAT_TYPES and tensor.data_location == onnx.TensorProto.DEFAULT
            and tensor.HasField("raw_data") and math.prod(tensor.dims) >= LEAN_MIN_ELEMENTS)


def inference_stand_in(tensor: onnx.TensorProto) -> onnx.TensorProto:
    """``tensor`` without its data when it is a large float tensor (module doc), else itself."""
    if not _strippable(tensor):
        return tensor
    out = onnx.TensorProto()
    copy_fields(tensor, out, skip="raw_data")
    return out


def infer_shapes_lean(model: onnx.ModelProto, *, strict_mode: bool = False, data_prop: bool = False,
                      in_place: bool = False) -> onnx.ModelProto:
    """``onnx.shape_inference.infer_shapes(model, ...)``, without the weights in the round trip.

    With ``in_place`` the inferred ``value_info`` and output types are written into ``model``
    itself, which is returned — no copy of the weights at all — provided inference changed
    nothing else (checked on the skeletons); otherwise a new model is returned as without it."""
    inits = model.graph.initializer
    if not any(_strippable(t) for t in inits):
        return shape_inference.infer_shapes(model, strict_mode=strict_mode, data_prop=data_prop)
    before = skeleton(model, inference_stand_in)
    inferred = shape_inference.infer_shapes(before, strict_mode=strict_mode, data_prop=data_prop)
    if in_place and _without_shapes(inferred) == _without_shapes(before):
        _take_shapes(model, inferred)
        return model
    out_inits = inferred.graph.initializer
    if len(out_inits) != len(inits) or any(a.name != b.name for a, b in zip(out_inits, inits, strict=True)):
        return shape_inference.infer_shapes(model, strict_mode=strict_mode, data_prop=data_prop)
    for dst, src in zip(out_inits, inits, strict=True):
        if _strippable(src):
            dst.CopyFrom(src)
    return inferred


def _without_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of a (small) skeleton without what inference writes: value_info, output types."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.ClearField("value_info")
    for vi in out.graph.output:
        vi.ClearField("type")
    return out


def _take_shapes(model: onnx.ModelProto, inferred: onnx.ModelProto) -> None:
    graph = model.graph
    del graph.value_info[:]
    graph.value_info.extend(inferred.graph.value_info)
    for dst, src in zip(graph.output, inferred.graph.output, strict=True):
        dst.CopyFrom(src)
