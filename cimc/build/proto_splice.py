"""An ONNX ``ModelProto`` serialized with its large initializers' bytes taken from numpy arrays:
the file of ``model.SerializeToString(deterministic=True)``, byte for byte, without a proto or a
``bytes`` object holding those weights (``cimc.build.file_parts``).

The caller serializes a *skeleton*: the model whose spliced initializers carry their name,
``dims`` and ``data_type`` and an empty ``raw_data`` (present, length 0). A protobuf message is
its fields' encodings back to back — a tag varint ``number << 3 | wire type``, then for a
length-delimited field (wire type 2) the length varint and the bytes — in an order fixed by the
schema, never by the values. So the full serialization is the skeleton's with, in each spliced
tensor (``ModelProto.graph`` = field 7 → ``GraphProto.initializer`` = field 5 → ``TensorProto.raw_data``
= field 9), the length ``0`` replaced by ``n`` and followed by the ``n`` bytes, and the length
of each enclosing message (that tensor, the graph) grown by as much. ``splice`` walks the
skeleton's wire format only at these three levels; every other byte is copied as it is.

protobuf refuses to parse a message of 2 GiB or more (``onnx.load`` too): a larger model is a
``ResourceLimitError`` before any array is touched.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from cimc.build.file_parts import FileParts, Piece
from cimc.errors import ResourceLimitError

GRAPH = 7  # ModelProto.graph
INITIALIZER = 5  # GraphProto.initializer
RAW_DATA = 9  # TensorProto.raw_data
_LEN = 2  # the length-delimited wire type
#: A file this long or longer is refused: protobuf parses a message of at most ``INT_MAX`` bytes (one byte of margin).
MAX_PROTO_BYTES = (1 << 31) - 1


def varint(value: int) -> bytes:
    """``value`` (≥ 0) as a protobuf base-128 varint, least significant group first."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while pos < end and shift < 64:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise ValueError("truncated or overlong varint in the serialized model")


def _fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """``(number, length start, value start, value end)`` of each field of the message in
    ``buf[start:end]``; the length start is the value start for a field that is not length-delimited."""
    pos = start
    while pos < end:
        key, pos = _read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        mark = pos
        if wire == 0:
            _, pos = _read_varint(buf, pos, end)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == _LEN:
            length, value = _read_varint(buf, pos, end)
            mark, pos = pos, value + length
            yield number, mark, value, pos
            continue
        else:
            raise ValueError(f"unexpected wire type {wire} in the serialized model")
        yield number, mark, mark, pos
    if pos != end:
        raise ValueError("a field runs past the end of its message in the serialized model")


def _only(buf: bytes, start: int, end: int, number: int) -> tuple[int, int, int]:
    """The one length-delimited field ``number`` of the message in ``buf[start:end]``."""
    found = [(mark, value, stop) for n, mark, value, stop in _fields(buf, start, end) if n == number and mark < value]
    if len(found) != 1:
        raise ValueError(f"expected one field {number} in the serialized message, found {len(found)}")
    return found[0]


def _tensor(buf: bytes, value: int, stop: int, array: np.ndarray) -> tuple[list[Piece], int]:
    """A spliced tensor's pieces (after its own length) and its new length."""
    mark, data, data_end = _only(buf, value, stop, RAW_DATA)
    if data != data_end:
        raise ValueError("a spliced initializer's raw_data must be empty in the skeleton")
    size = int(array.nbytes)
    pieces: list[Piece] = [buf[value:mark], varint(size), array, buf[data_end:stop]]
    return pieces, stop - value + len(varint(size)) - 1 + size


def splice(skeleton: bytes, arrays: dict[int, np.ndarray]) -> FileParts:
    """The serialized model: ``skeleton`` (a serialized ``ModelProto``) whose initializer number
    ``i`` (0-based, in graph order) gets ``arrays[i]``'s bytes as its ``raw_data`` (module doc)."""
    return FileParts.of(splice_pieces(skeleton, arrays))


def splice_pieces(skeleton: bytes, arrays: dict[int, np.ndarray]) -> list[Piece]:
    """``splice``'s pieces, arrays as given (only their ``nbytes`` is read); a
    ``ResourceLimitError`` when the file would be ``MAX_PROTO_BYTES`` long or longer."""
    if not arrays:
        return [skeleton]
    mark, value, stop = _only(skeleton, 0, len(skeleton), GRAPH)
    graph: list[Piece] = []
    length, pos, index = stop - value, value, 0
    for number, t_mark, t_value, t_stop in _fields(skeleton, value, stop):
        if number != INITIALIZER or t_mark == t_value:
            continue
        if index in arrays:
            pieces, new = _tensor(skeleton, t_value, t_stop, arrays[index])
            graph += [skeleton[pos:t_mark], varint(new), *pieces]
            length += new - (t_stop - t_value) + len(varint(new)) - (t_value - t_mark)
            pos = t_stop
        index += 1
    missing = sorted(set(arrays) - set(range(index)))
    if missing:
        raise ValueError(f"the skeleton has {index} initializers; no initializer {missing[0]} to splice")
    total = mark + len(varint(length)) + length + len(skeleton) - stop
    if total >= MAX_PROTO_BYTES:
        raise ResourceLimitError(f"model.cim.onnx would be {total:,} bytes, over protobuf's 2 GiB limit: onnx "
                                 "and onnxruntime could not read it", hint="compile a model with fewer digital weights")
    return [skeleton[:mark], varint(length), *graph, skeleton[pos:stop], skeleton[stop:]]
