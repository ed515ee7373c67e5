"""``onnx.checker.check_model`` without serialising the weights.

The checker serialises the whole model to hand it to C++ — a full copy of every weight, to
check (of the weights) only that each tensor has one value field and that ``raw_data`` holds
at least ``elements × itemsize`` bytes. ``check_model_lean`` checks that size in Python
(``len(raw_data)``, one read), and gives the checker a skeleton in which those large float
tensors carry no data and a first dimension of 0 — a valid empty tensor of the same type and
rank. (The checker, without ``full_check``, looks at an initializer's data fields and type,
not at its shape; tested on the frontend's corpus of broken models.)

A skeleton verdict is trusted only when it is a pass. When the skeleton fails, or when the
model is too large for the checker (2 GiB) or has a tensor whose data is too short, the full
checker runs on the real model, so every failure reads exactly as ``onnx.checker``'s own.
"""

from __future__ import annotations

import math

import onnx

from cimc.frontend.lean_infer import LEAN_MIN_ELEMENTS
from cimc.frontend.skeleton import copy_fields, skeleton

_ITEMSIZE = {onnx.TensorProto.FLOAT: 4, onnx.TensorProto.DOUBLE: 8, onnx.TensorProto.FLOAT16: 2,
             onnx.TensorProto.BFLOAT16: 2}
_CHECKER_LIMIT = 2**31  # onnx.checker refuses serialised models from 2 GiB on


def _strippable(tensor: onnx.TensorProto) -> bool:
    return (tensor.data_type in _ITEMSIZE and tensor.data_location == onnx.TensorProto.DEFAULT
            and tensor.HasField("raw_data") and len(tensor.dims) > 0 and min(tensor.dims) > 0
            and math.prod(tensor.dims) >= LEAN_MIN_ELEMENTS)


def _stub(tensor: onnx.TensorProto) -> onnx.TensorProto:
    """The tensor without data, its first dimension 0 (an empty tensor the checker accepts)."""
    out = onnx.TensorProto()
    copy_fields(tensor, out, skip="raw_data")
    out.dims[0] = 0
    return out


def checker_skeleton(model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool]:
    """The skeleton, and whether it may stand in for the model (every stripped tensor's
    ``raw_data`` long enough, the model under the checker's size limit)."""
    stripped = [t for t in model.graph.initializer if _strippable(t)]
    sound = all(len(t.raw_data) >= math.prod(t.dims) * _ITEMSIZE[t.data_type] for t in stripped)
    out = skeleton(model, lambda t: _stub(t) if _strippable(t) else t)
    return out, sound and sum(len(t.raw_data) for t in stripped) + out.ByteSize() < _CHECKER_LIMIT


def check_model_lean(model: onnx.ModelProto) -> None:
    """``onnx.checker.check_model(model)``, the same verdict and errors (module doc)."""
    if not any(_strippable(t) for t in model.graph.initializer):
        onnx.checker.check_model(model)
        return
    skeleton, sound = checker_skeleton(model)
    if sound:
        try:
            onnx.checker.check_model(skeleton)
            return
        except (onnx.checker.ValidationError, ValueError):
            pass  # the full checker below says why, in its own words
    onnx.checker.check_model(model)
