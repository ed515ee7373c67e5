"""``weights.safetensors`` and ``digital.safetensors`` written straight from numpy, byte for byte
what the library writes.

A safetensors file is ``u64 n`` (little endian), an ``n``-byte JSON header padded with spaces
to a multiple of 8, then the tensors' bytes back to back. The header holds ``__metadata__``
first, then per tensor ``{"dtype", "shape", "data_offsets": [begin, end]}``, tensors ordered
by name (one dtype per file — F32 weights or integer cell codes — so the library's
dtype-then-name order is the name order), in compact JSON. ``macro_weights_bytes`` lays the
header and the ``(macros, WL, BL)`` cells (possibly a transposed view) into one numpy buffer
and returns its bytes: two passes over the weights instead of the library's three (a
contiguous copy per macro, a Rust buffer, the bytes). ``safetensors_parts`` gives a file of
named arrays as pieces (``cimc.build.file_parts``): the header, then the arrays themselves, so
that the digital weights (a VGG's classifier: 495 MB) are written without a copy.
The output is byte-for-byte what ``safetensors.numpy.save`` gives (tested).
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from cimc.build.file_parts import FileParts

_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.int8): "I8", np.dtype(np.int16): "I16",
           np.dtype(np.int32): "I32"}


def macro_name(index: int) -> str:
    return f"macro_{index:04d}"


def _header(names: list[str], dtype: str, shape: tuple[int, ...], nbytes: int, metadata: dict[str, str]) -> bytes:
    """The padded JSON header, tensors in name order, each ``nbytes`` long."""
    return _header_of([(name, dtype, shape, nbytes) for name in sorted(names)], metadata)


def _header_of(entries: list[tuple[str, str, tuple[int, ...], int]], metadata: dict[str, str]) -> bytes:
    """The padded JSON header of ``(name, dtype, shape, nbytes)`` tensors laid out in this order."""
    doc: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, dtype, shape, nbytes in entries:
        doc[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    return text + b" " * (-len(text) % 8)


def safetensors_parts(arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> FileParts:
    """``safetensors.numpy.save(arrays, metadata)`` byte for byte, as pieces: the header, then each
    array itself (``FileParts``: a C-contiguous array is not copied) in name order.

    Every array must have the same dtype (the library orders several by dtype first) of
    ``_DTYPES``, and ``metadata`` hold one key at most (the library orders several by hash);
    names must be distinct and non-empty."""
    if len(metadata) > 1:
        raise ValueError("safetensors orders several metadata keys by hash; pass one key")
    dtypes = {np.dtype(a.dtype).newbyteorder("=") for a in arrays.values()}
    if len(dtypes) > 1 or not dtypes <= set(_DTYPES) or "" in arrays or "__metadata__" in arrays:
        raise ValueError("safetensors_parts writes non-empty names and one dtype of "
                         f"{sorted(_DTYPES.values())}, got {sorted(map(str, dtypes))}")
    names = sorted(arrays)
    entries = [(n, _DTYPES[np.dtype(arrays[n].dtype).newbyteorder("=")], tuple(int(d) for d in arrays[n].shape),
                int(arrays[n].nbytes)) for n in names]
    header = _header_of(entries, metadata)
    return FileParts.of([struct.pack("<Q", len(header)) + header, *(arrays[n] for n in names)])


def macro_weights_bytes(arrays: np.ndarray, metadata: dict[str, str]) -> bytes:
    """A safetensors file holding ``arrays[m]`` as ``macro_{m:04d}`` for every macro ``m``.

    ``metadata`` may hold one key at most: the library orders several keys by hash."""
    if len(metadata) > 1:
        raise ValueError("safetensors orders several metadata keys by hash; pass one key")
    macros, shape = arrays.shape[0], tuple(int(d) for d in arrays.shape[1:])
    dtype = np.dtype(arrays.dtype)
    names = [macro_name(m) for m in range(macros)]
    per_tensor = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    header = _header(names, _DTYPES[dtype], shape, per_tensor, metadata)
    start = 8 + len(header)
    buf = np.empty(start + macros * per_tensor, dtype=np.uint8)
    buf[:8] = np.frombuffer(struct.pack("<Q", len(header)), dtype=np.uint8)
    buf[8:start] = np.frombuffer(header, dtype=np.uint8)
    order = np.array(sorted(range(macros), key=names.__getitem__), dtype=np.int64)
    body = buf[start:].view(dtype).reshape(macros, *shape)
    if macros and not np.array_equal(order, np.arange(macros)):
        body[...] = arrays[order]
    else:
        np.copyto(body, arrays)
    return buf.tobytes()
