"""A skeleton of an ONNX model: a copy in which chosen initializers are replaced (by
data-free stand-ins), every other field copied as it is. The lean checker and the lean shape
inference hand skeletons to onnx's C++ code instead of the weights (see their modules)."""

from __future__ import annotations

from collections.abc import Callable

import onnx
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message


def _repeated(fd: FieldDescriptor) -> bool:
    """Whether a field is repeated (protobuf ≥ 5 has ``is_repeated``, older ones ``label``)."""
    if hasattr(fd, "is_repeated"):
        return bool(fd.is_repeated)
    return bool(fd.label == FieldDescriptor.LABEL_REPEATED)


def copy_fields(src: Message, dst: Message, skip: str) -> None:
    """Copy every set field of ``src`` into ``dst`` except the one named ``skip``."""
    for fd, value in src.ListFields():
        if fd.name == skip:
            continue
        if _repeated(fd):
            getattr(dst, fd.name).extend(value)
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(dst, fd.name).CopyFrom(value)
        else:
            setattr(dst, fd.name, value)


def skeleton(model: onnx.ModelProto, tensor: Callable[[onnx.TensorProto], onnx.TensorProto]) -> onnx.ModelProto:
    """A copy of ``model`` whose initializers are ``tensor(t)`` for each initializer ``t``, in order."""
    out = onnx.ModelProto()
    copy_fields(model, out, skip="graph")
    copy_fields(model.graph, out.graph, skip="initializer")
    out.graph.initializer.extend(tensor(t) for t in model.graph.initializer)
    return out
