"""A build file given as consecutive pieces — small ``bytes`` and numpy arrays — instead of one
``bytes`` object: the file is the pieces' bytes back to back (each array's C-order, little-endian
bytes), so a writer streams a large weight straight from the array that already holds it, with
no second copy of it in memory (``cimc.build.directory`` writes and hashes the pieces one by one).

An array piece is never copied when it is already C-contiguous and little endian (the IR's
weights are); otherwise it is made so once, when the ``FileParts`` is made.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

Piece = bytes | np.ndarray
"""A piece of a file: bytes, or an array standing for its bytes (a flat ``uint8`` view once in a ``FileParts``)."""


def _flat(array: np.ndarray) -> np.ndarray:
    """``array``'s bytes as a 1-D ``uint8`` view: C order, little endian (copied only if it is not)."""
    dtype = array.dtype
    if dtype.byteorder == ">" or (dtype.byteorder == "=" and sys.byteorder == "big"):
        dtype = dtype.newbyteorder("<")
    return np.ascontiguousarray(array, dtype=dtype).reshape(-1).view(np.uint8)


@dataclass(frozen=True)
class FileParts:
    """A file as ``pieces``, byte strings and ``uint8`` views of arrays (module doc)."""

    pieces: tuple[Piece, ...]

    @classmethod
    def of(cls, pieces: Iterable[Piece]) -> FileParts:
        """The file made of ``pieces`` in order; an array stands for its C-order little-endian bytes."""
        return cls(tuple(p if isinstance(p, bytes) else _flat(p) for p in pieces))

    @property
    def size(self) -> int:
        """The file's length in bytes."""
        return sum(len(p) if isinstance(p, bytes) else int(p.nbytes) for p in self.pieces)

    def buffers(self) -> Iterator[memoryview]:
        """The pieces as flat byte buffers, in order (no copies)."""
        for piece in self.pieces:
            yield memoryview(piece) if isinstance(piece, bytes) else piece.data

    def to_bytes(self) -> bytes:
        """The whole file as one ``bytes`` (a copy: for readers that need it in memory)."""
        return b"".join(self.buffers())

    def write_to(self, fh: BinaryIO) -> None:
        """Write the file to ``fh``, piece after piece."""
        for buffer in self.buffers():
            fh.write(buffer)

    def sha256(self) -> str:
        """The file's sha256, hashed piece after piece."""
        digest = hashlib.sha256()
        for buffer in self.buffers():
            digest.update(buffer)
        return digest.hexdigest()


FileData = bytes | FileParts
"""A build file's contents: its bytes, or its pieces."""


def file_bytes(data: FileData) -> bytes:
    """``data`` as one ``bytes`` object."""
    return data if isinstance(data, bytes) else data.to_bytes()
