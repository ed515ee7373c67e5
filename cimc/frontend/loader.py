"""Loading an ONNX file safely: size limit, parsing, external-data confinement, model checks.

``load_model`` never reads more than ``max_bytes`` from the model file (the size is checked
with ``os.stat`` before any byte is read, and no buffer larger than the file is allocated)
and refuses external data that could escape the model's folder (absolute paths, ``..``,
symlinks pointing outside, hard links) before any external byte is read; the external bytes
it then reads are re-checked on the open descriptor and count toward ``max_bytes``. Every
string of the parsed model must be UTF-8. ``check_model`` wraps ``onnx.checker`` and
rejects models this compiler cannot read (IR version too new, no default-domain opset).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
from google.protobuf.message import DecodeError, Message

from cimc.errors import InvalidModelError, ResourceLimitError, SecurityError, UnsupportedError, UsageError
from cimc.frontend.lean_check import check_model_lean
from cimc.frontend.tensor_checks import model_tensors
from cimc.options import OPTIONS
from cimc.safe_text import one_line
from cimc.untrusted import read_regular, read_span

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES: int = OPTIONS["max_model_bytes"].default
_RAISE_HINT = "raise the limit with --max-model-bytes"
_DEFAULT_DOMAINS = ("", "ai.onnx")
_TRUST_HINT = "pass --allow-external-data-outside if you trust this model"
_NO_FIXED_SIZE = {onnx.TensorProto.STRING, *(getattr(onnx.TensorProto, n) for n in ("INT4", "UINT4", "FLOAT4E2M1")
                                             if hasattr(onnx.TensorProto, n))}


def load_model(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES,
               allow_external_outside: bool = False) -> onnx.ModelProto:
    """Read and parse the ONNX file ``path``, with its external data loaded in memory."""
    file = Path(path)
    _stat_size(file)
    data = _read_bytes(file, max_bytes)
    model = parse_model(data)
    base_dir = os.path.dirname(os.path.abspath(file))
    external = list(_external_tensors(model))
    if external:
        _load_external(model, external, base_dir, max_bytes - len(data), allow_external_outside)
    return model


def _stat_size(file: Path) -> None:
    """A ``UsageError`` naming a model path that does not exist."""
    if not os.path.lexists(file):
        raise UsageError(f"model file '{file}' does not exist")


def _read_bytes(file: Path, max_bytes: int) -> bytes:
    """The model file's bytes (``cimc.untrusted.read_regular``: regular, no link out of its
    folder, its size checked against ``max_bytes`` before a byte is read)."""
    return read_regular(file, limit=max_bytes, what=f"model file '{file.name}'", too_big=ResourceLimitError,
                        hint=_RAISE_HINT)


def parse_model(data: bytes) -> onnx.ModelProto:
    """Parse serialized ONNX bytes; malformed or truncated input raises ``InvalidModelError``."""
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise InvalidModelError(f"not a valid ONNX model (protobuf parse failed: {exc})") from exc
    if not model.HasField("graph"):
        raise InvalidModelError("not a valid ONNX model (it has no graph)")
    check_strings(model)
    return model


def _repeated(field: Any) -> bool:
    is_repeated = getattr(field, "is_repeated", None)  # protobuf >= 6; ``label`` before
    return bool(is_repeated) if is_repeated is not None else field.label == field.LABEL_REPEATED


def check_strings(message: Message) -> None:
    """Every string field holds UTF-8. (For ONNX's proto2 strings, protobuf hands back invalid
    UTF-8 as ``bytes``, or raises ``UnicodeDecodeError``, wherever it is first read.)"""
    try:
        bad = _bad_string(message)
    except UnicodeDecodeError as exc:
        bad = exc.object if isinstance(exc.object, bytes) else b"?"
    if bad is not None:
        raise InvalidModelError(f"not a valid ONNX model (a string field is not UTF-8: {bad[:40]!r})")


def _bad_string(message: Message) -> bytes | None:
    """The first string field of ``message`` (recursively) that is not valid UTF-8."""
    for field, value in message.ListFields():
        if field.type == field.TYPE_MESSAGE:
            for item in value if _repeated(field) else [value]:
                bad = _bad_string(item)
                if bad is not None:
                    return bad
        elif field.type == field.TYPE_STRING:
            bad = next((v for v in (value if _repeated(field) else [value]) if not isinstance(v, str)), None)
            if bad is not None:
                return bytes(bad)
    return None


# -- external data -------------------------------------------------------------------------
def _external_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    yield from (t for t in model_tensors(model) if t.data_location == onnx.TensorProto.EXTERNAL)


def _entries(tensor: onnx.TensorProto) -> tuple[str, int, int | None]:
    """``(location, offset, length)`` of an external tensor."""
    info = {e.key: e.value for e in tensor.external_data}
    location = info.get("location", "")
    if not location:
        raise InvalidModelError(f"tensor '{tensor.name}' uses external data but names no location")
    if "\0" in location:
        raise InvalidModelError(f"tensor '{tensor.name}': external data location '{location}' holds a NUL byte")
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
        raise SecurityError(f"tensor '{tensor}': external data location '{location}' is an absolute path",
                            hint=_TRUST_HINT)
    if ".." in Path(location.replace("\\", "/")).parts:
        raise SecurityError(f"tensor '{tensor}': external data location '{location}' contains '..'",
                            hint=_TRUST_HINT)
    root = os.path.realpath(base_dir)
    if real == root or os.path.commonpath([root, real]) != root:
        raise SecurityError(f"tensor '{tensor}': external data '{location}' resolves outside the model's folder",
                            hint=_TRUST_HINT)
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
                            hint=_TRUST_HINT)
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
    return real, (length if length is not None else min(size - offset, _needed(tensor, size - offset)))


def _needed(tensor: onnx.TensorProto, rest: int) -> int:
    """The bytes ``tensor``'s dims and element type take (Python integers), for external data
    without a ``length``: only those are read, never the rest of a large file. Element types
    without a fixed byte size (strings, 4-bit types) take ``rest``."""
    if tensor.data_type in _NO_FIXED_SIZE:
        return rest
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, TypeError, ValueError):
        return rest
    return math.prod(int(d) for d in tensor.dims) * itemsize


def _load_external(model: onnx.ModelProto, tensors: list[onnx.TensorProto], base_dir: str,
                   budget: int, allow_outside: bool) -> None:
    plan = [(t, *_external_bytes(t, base_dir, allow_outside)) for t in tensors]
    total = sum(n for _, _, n in plan)
    if total > budget:
        raise ResourceLimitError(f"model with its external data is more than the limit ({total} external bytes)",
                                 hint=_RAISE_HINT, details={"external_bytes": total, "budget": budget})
    for tensor, real, count in plan:
        _read_into(tensor, real, count, allow_outside)


def _read_into(tensor: onnx.TensorProto, real: str, count: int, allow_outside: bool) -> None:
    """Read the ``count`` checked bytes of ``tensor`` from ``real`` into its ``raw_data``
    (``cimc.untrusted.read_span``: the file is re-checked on the open descriptor, so a swap after
    the checks above cannot make this read a device, a FIFO or a shorter file)."""
    location, offset, _ = _entries(tensor)
    root = None if allow_outside else Path(real).parent
    tensor.raw_data = read_span(Path(real), offset, count, error=InvalidModelError, root=root,
                                what=f"tensor '{tensor.name}': external data '{location}'")
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
        check_model_lean(model)  # onnx.checker.check_model, without serialising the weights
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise InvalidModelError(f"ONNX checker rejected the model: {one_line(str(exc))}") from exc
