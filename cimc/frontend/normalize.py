"""ONNX-level preparation before import: opset upgrade, input-shape overrides, shape inference.

* Models older than opset 13 are converted to opset 13 by ``onnx.version_converter``. Its
  Upsample (opset 7/9) and Resize-10 become Resize-13 with the opset-11 defaults, which are not
  their semantics: the converted nodes get ``coordinate_transformation_mode = asymmetric`` and
  ``nearest_mode = floor`` back (onnxruntime's rule for them, for scales ≥ 1; a nearest
  Resize-10 that shrinks, which rounds up there, is unsupported).
* ``input_shapes`` fixes the symbolic dims of graph inputs; a symbolic dim left without an
  override is an error that tells the user which ``--input-shape`` to pass, with the dims the
  model fixes filled in and the others named (``cimc.frontend.shape_hints``).
* Shapes are inferred with strict mode and data propagation, so Shape→Gather→Concat chains
  feeding a Reshape give it a static output shape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import onnx
from onnx import shape_inference, version_converter

from cimc.errors import InvalidModelError, UnsupportedError, UsageError
from cimc.frontend.lean_infer import infer_shapes_lean
from cimc.frontend.loader import default_opset
from cimc.frontend.proto_graph import name_nodes, set_repeated
from cimc.frontend.shape_hints import suggest
from cimc.safe_text import one_line

log = logging.getLogger(__name__)

MIN_OPSET = 13
InputShapes = Mapping[str, tuple[int, ...]]


def normalize(model: onnx.ModelProto, input_shapes: InputShapes | None = None, *,
              in_place: bool = False) -> onnx.ModelProto:
    """Return a copy of ``model`` at opset ≥ 13 with static input shapes and inferred shapes
    (``in_place``: the caller owns ``model``, which may be updated and returned instead)."""
    model = upgrade_opset(model, in_place=in_place)
    name_nodes(model.graph)  # the version converter adds unnamed nodes
    drop_initializer_inputs(model.graph)
    apply_input_shapes(model.graph, dict(input_shapes or {}))
    return infer_shapes(model, in_place=True)  # model is this function's own (or its owner's)


def upgrade_opset(model: onnx.ModelProto, *, in_place: bool = False) -> onnx.ModelProto:
    """Convert a model older than opset 13 to opset 13 (a copy either way, unless ``in_place``
    and there is nothing to convert: then ``model`` itself)."""
    opset = default_opset(model)
    if opset is None or opset >= MIN_OPSET:
        if in_place:
            return model
        out = onnx.ModelProto()
        out.CopyFrom(model)
        return out
    log.info("converting model from opset %d to opset %d", opset, MIN_OPSET)
    legacy = _legacy_resizes(model)
    try:
        out = version_converter.convert_version(model, MIN_OPSET)
    except Exception as exc:  # the converter raises bare RuntimeError/ValueError/C++ errors
        raise UnsupportedError(f"cannot convert the model from opset {opset} to opset {MIN_OPSET}: "
                               f"{one_line(str(exc))}",
                               hint="re-export the model with opset 13 or newer") from exc
    out.ir_version = max(out.ir_version, 7)  # IR 7 goes with opset 13; IR < 4 hides initializers
    for node in out.graph.node:
        if node.op_type == "Resize" and node.output[0] in legacy:
            modes = {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
            kept = [a for a in node.attribute if a.name not in modes]
            set_repeated(node.attribute, [*kept, *(onnx.helper.make_attribute(k, v) for k, v in modes.items())])
    return out


def _legacy_resizes(model: onnx.ModelProto) -> set[str]:
    """Outputs of the Upsample and (opset < 11) Resize nodes: asymmetric coordinates, truncated."""
    from onnx import numpy_helper

    if (default_opset(model) or 13) >= 11:
        return set()
    consts = {t.name: t for t in model.graph.initializer}
    consts.update({n.output[0]: n.attribute[0].t for n in model.graph.node
                   if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    out = set()
    for node in model.graph.node:
        if node.op_type not in ("Upsample", "Resize"):
            continue
        scales = [a.floats for a in node.attribute if a.name == "scales"]
        if not scales and len(node.input) > 1 and node.input[1] in consts:
            scales = [numpy_helper.to_array(consts[node.input[1]]).reshape(-1).tolist()]
        modes = [a.s for a in node.attribute if a.name == "mode"]
        if (not modes or modes[0] == b"nearest") and (not scales or min(scales[0], default=1.0) < 1):
            raise UnsupportedError(f"node '{node.name}' ({node.op_type}, opset < 11): nearest resizing with scales "
                                   "below 1 or computed scales is not supported",
                                   hint="re-export the model with opset 13 or newer")
        out.add(node.output[0])
    return out


def drop_initializer_inputs(graph: onnx.GraphProto) -> None:
    """Old-style graph inputs that are also initializers become plain initializers."""
    inits = {t.name for t in graph.initializer}
    keep = [vi for vi in graph.input if vi.name not in inits]
    if len(keep) != len(graph.input):
        set_repeated(graph.input, keep)


def _is_static(vi: onnx.ValueInfoProto) -> bool:
    tt = vi.type.tensor_type
    return tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim)


def _set_shape(vi: onnx.ValueInfoProto, shape: tuple[int, ...]) -> None:
    dims = vi.type.tensor_type.shape.dim
    if vi.type.tensor_type.HasField("shape") and len(dims) != len(shape):
        raise UsageError(f"--input-shape for '{vi.name}' has rank {len(shape)}, the model's input has rank {len(dims)}")
    if any(d < 0 for d in shape):
        raise UsageError(f"--input-shape for '{vi.name}' has a negative dim: {shape}")
    for i, (dim, want) in enumerate(zip(dims, shape, strict=False)):
        if dim.HasField("dim_value") and dim.dim_value != want:
            raise UsageError(f"--input-shape for '{vi.name}' gives {shape}, but dim {i} "
                             f"of the model's input is fixed to {dim.dim_value}")
    vi.type.tensor_type.ClearField("shape")
    vi.type.tensor_type.shape.SetInParent()
    for d in shape:
        vi.type.tensor_type.shape.dim.add().dim_value = int(d)


def apply_input_shapes(graph: onnx.GraphProto, input_shapes: dict[str, tuple[int, ...]]) -> None:
    """Fix graph input shapes (in place); raise if a dim stays symbolic."""
    names = [vi.name for vi in graph.input]
    unknown = sorted(set(input_shapes) - set(names))
    if unknown:
        raise UsageError(f"--input-shape names unknown input(s) {', '.join(unknown)}; "
                         f"the model's inputs are: {', '.join(names)}")
    for vi in graph.input:
        if vi.name in input_shapes:
            _set_shape(vi, tuple(int(d) for d in input_shapes[vi.name]))
    symbolic = [vi for vi in graph.input if not _is_static(vi)]
    if symbolic:
        listed = ", ".join(f"'{vi.name}'" for vi in symbolic)
        raise InvalidModelError(f"graph input(s) {listed} have symbolic or unknown dims",
                                hint="pass " + "; ".join(suggest(graph, vi) for vi in symbolic))
    _drop_symbolic_annotations(graph)


def _drop_symbolic_annotations(graph: onnx.GraphProto) -> None:
    """Forget non-static value_info and output shapes: inference recomputes them."""
    keep = [vi for vi in graph.value_info if _is_static(vi)]
    if len(keep) != len(graph.value_info):
        set_repeated(graph.value_info, keep)
    for vi in graph.output:
        if vi.type.HasField("tensor_type") and not _is_static(vi):
            vi.type.tensor_type.ClearField("shape")


def infer_shapes(model: onnx.ModelProto, *, in_place: bool = False) -> onnx.ModelProto:
    """Strict shape inference with data propagation; failures raise ``InvalidModelError``.
    ``in_place``: the caller owns ``model``, which may be updated and returned (no copy)."""
    try:
        return infer_shapes_lean(model, strict_mode=True, data_prop=True, in_place=in_place)
    except (shape_inference.InferenceError, onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        raise InvalidModelError(f"shape inference failed: {one_line(str(exc))}") from exc
