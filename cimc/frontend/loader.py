"""Loading an ONNX file safely: size limit, parsing, external-data confinement, model checks.

``load_model`` never reads more than ``max_bytes`` from the model file (the size is checked
with ``os.stat`` before any byte is read) and refuses external data that could escape the
model's folder (absolute paths, ``..``, symlinks pointing outside, hard links) before any
external byte is read. ``check_model`` wraps ``onnx.checker`` and rejects models this
compiler cannot read (IR version too new, no default-domain opset).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from cimc.errors import InvalidModelError, ResourceLimitError, SecurityError, UnsupportedError, UsageError

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 2**31
_DEFAULT_DOMAINS = ("", "ai.onnx")


def load_model(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES,
               allow_external_outside: bool = False) -> onnx.ModelProto:
    """Read and parse the ONNX file ``path``, with its external data loaded in memory."""
    file = Path(path)
    size = _stat_size(file)
    if size > max_bytes:
        raise ResourceLimitError(
            f"model file '{file.name}' is {size} bytes, more than the limit of {max_bytes} bytes "
            "(raise it with --max-model-bytes)", details={"size": size, "max_bytes": max_bytes})
    data = _read_bytes(file, max_bytes)
    model = parse_model(data)
    base_dir = os.path.dirname(os.path.abspath(file))
    external = list(_external_tensors(model))
    if external:
        _load_external(model, external, base_dir, max_bytes - len(data), allow_external_outside)
    return model


def _stat_size(file: Path) -> int:
    try:
        st = os.stat(file)
    except FileNotFoundError as exc:
        raise UsageError(f"model file '{file}' does not exist") from exc
    except OSError as exc:
        raise UsageError(f"cannot read model file '{file}': {exc.strerror}") from exc
    if not os.path.isfile(file):
        raise UsageError(f"model path '{file}' is not a regular file")
    return int(st.st_size)


def _read_bytes(file: Path, max_bytes: int) -> bytes:
    try:
        with open(file, "rb") as fh:
            data = fh.read(max_bytes + 1)  # the file may have grown since the stat
    except OSError as exc:
        raise UsageError(f"cannot read model file '{file}': {exc.strerror}") from exc
    if len(data) > max_bytes:
        raise ResourceLimitError(f"model file '{file.name}' is more than {max_bytes} bytes",
                                 hint="raise the limit with --max-model-bytes")
    return data


def parse_model(data: bytes) -> onnx.ModelProto:
    """Parse serialized ONNX bytes; malformed or truncated input raises ``InvalidModelError``."""
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise InvalidModelError(f"not a valid ONNX model (protobuf parse failed: {exc})") from exc
    if not model.HasField("graph"):
        raise InvalidModelError("not a valid ONNX model (it has no graph)")
    return model


# -- external data -------------------------------------------------------------------------
def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto) -> Iterator[onnx.TensorProto]:
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("sparse_tensor"):
            yield attr.sparse_tensor.values
            yield attr.sparse_tensor.indices
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g)
        for sub in attr.graphs:
            yield from _graph_tensors(sub)


def _external_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    tensors = list(_graph_tensors(model.graph))
    for func in model.functions:
        for node in func.node:
            tensors += _node_tensors(node)
    yield from (t for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL)


def _entries(tensor: onnx.TensorProto) -> tuple[str, int, int | None]:
    """``(location, offset, length)`` of an external tensor."""
    info = {e.key: e.value for e in tensor.external_data}
    location = info.get("location", "")
    if not location:
        raise InvalidModelError(f"tensor '{tensor.name}' uses external data but names no location")
    try:
        offset = int(info.get("offset", "0"))
        length = int(info["length"]) if "length" in info else None
    except ValueError as exc:
        raise InvalidModelError(f"tensor '{tensor.name}' has a malformed external data offset/length") from exc
    if offset < 0 or (length is not None and length < 0):
        raise InvalidModelError(f"tensor '{tensor.name}' has a negative external data offset/length")
    return location, offset, length


def resolve_external(location: str, base_dir: str, tensor: str, allow_outside: bool) -> str:
    """The real path of external data ``location``; raises ``SecurityError`` if it escapes."""
    path = os.path.join(base_dir, location)
    real = os.path.realpath(path)
    if allow_outside:
        return real
    if os.path.isabs(location) or os.path.splitdrive(location)[0]:
        raise SecurityError(f"tensor '{tensor}': external data location '{location}' is an absolute path")
    if ".." in Path(location.replace("\\", "/")).parts:
        raise SecurityError(f"tensor '{tensor}': external data location '{location}' contains '..'")
    root = os.path.realpath(base_dir)
    if real == root or os.path.commonpath([root, real]) != root:
        raise SecurityError(f"tensor '{tensor}': external data '{location}' resolves outside the model's folder",
                            hint="use --allow-external-outside if you trust this model")
    return real


def _checked_size(real: str, location: str, tensor: str, allow_outside: bool) -> int:
    try:
        st = os.stat(real)
    except OSError as exc:
        raise InvalidModelError(f"tensor '{tensor}': cannot open external data '{location}'") from exc
    if not os.path.isfile(real):
        raise InvalidModelError(f"tensor '{tensor}': external data '{location}' is not a regular file")
    if st.st_nlink > 1 and not allow_outside:
        raise SecurityError(f"tensor '{tensor}': external data '{location}' is a hard link",
                            hint="use --allow-external-outside if you trust this model")
    return int(st.st_size)


def _external_bytes(tensor: onnx.TensorProto, base_dir: str, allow_outside: bool) -> tuple[str, int]:
    """Validate one external tensor (before anything is read): its real path and byte count."""
    location, offset, length = _entries(tensor)
    real = resolve_external(location, base_dir, tensor.name, allow_outside)
    size = _checked_size(real, location, tensor.name, allow_outside)
    if offset > size or (length is not None and offset + length > size):
        end = offset + (length or 0)
        raise InvalidModelError(f"tensor '{tensor.name}': external data range {offset}..{end} "
                                f"lies past the end of '{location}' ({size} bytes)")
    return real, (length if length is not None else size - offset)


def _load_external(model: onnx.ModelProto, tensors: list[onnx.TensorProto], base_dir: str,
                   budget: int, allow_outside: bool) -> None:
    plan = [(t, *_external_bytes(t, base_dir, allow_outside)) for t in tensors]
    total = sum(n for _, _, n in plan)
    if total > budget:
        raise ResourceLimitError(f"model with its external data is more than the limit ({total} external bytes)",
                                 hint="raise the limit with --max-model-bytes")
    if allow_outside:
        for tensor, real, _ in plan:
            _read_into(tensor, real)
        return
    try:
        onnx.load_external_data_for_model(model, base_dir)
    except (OSError, ValueError, RuntimeError, onnx.checker.ValidationError) as exc:
        raise InvalidModelError(f"cannot load external data: {exc}") from exc


def _read_into(tensor: onnx.TensorProto, real: str) -> None:
    _, offset, length = _entries(tensor)
    with open(real, "rb") as fh:
        fh.seek(offset)
        tensor.raw_data = fh.read() if length is None else fh.read(length)
    tensor.data_location = onnx.TensorProto.DEFAULT
    del tensor.external_data[:]


# -- checks --------------------------------------------------------------------------------
def default_opset(model: onnx.ModelProto) -> int | None:
    """The ``ai.onnx`` opset version the model imports (``None`` if it imports none)."""
    versions = [op.version for op in model.opset_import if op.domain in _DEFAULT_DOMAINS]
    return max(versions) if versions else None


def check_model(model: onnx.ModelProto) -> None:
    """Run ``onnx.checker`` and the compiler's own version checks."""
    if model.ir_version > onnx.IR_VERSION:
        raise UnsupportedError(f"model IR version {model.ir_version} is newer than the supported "
                               f"{onnx.IR_VERSION}", hint="upgrade the onnx package or re-export the model")
    opset = default_opset(model)
    if not model.opset_import:
        raise InvalidModelError("model has no opset_import")
    if opset is None:
        raise UnsupportedError("model imports no ai.onnx opset (only custom domains)")
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise UnsupportedError(f"model uses ai.onnx opset {opset}, newer than the supported {newest}")
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise InvalidModelError(f"ONNX checker rejected the model: {exc}") from exc
