"""Reading the user's data files, which are untrusted.

Every file is read by ``cimc.untrusted.read_regular``: never through a link whose target
leaves the dataset's root, a regular file only (a FIFO or device is refused, never read: it is
opened non-blocking and checked with ``fstat``), its size checked against a bound before it is
read (``MAX_FILE_BYTES`` for arrays, ``MAX_IMAGE_BYTES`` for images). A folder lists at most
``MAX_FILES`` entries. Errors are ``UsageError``s naming the file; escaping links are
``SecurityError``s.

The bound on arrays may be raised for a block of work with ``data_limit(n)`` (``cimc
compile --max-data-bytes``): it holds for the current thread's context only.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np

from cimc.errors import SecurityError, UsageError
from cimc.limits import DATA_FILE_BYTES, FOLDER_ENTRIES, IMAGE_FILE_BYTES
from cimc.untrusted import read_regular

MAX_FILE_BYTES = DATA_FILE_BYTES  # an .npz / .npy file, also its uncompressed members
MAX_IMAGE_BYTES = IMAGE_FILE_BYTES
MAX_FILES = FOLDER_ENTRIES
_ARRAY_LIMIT: ContextVar[int] = ContextVar("max_data_bytes", default=MAX_FILE_BYTES)
_RAISE_HINT = "raise the limit with --max-data-bytes"


@contextmanager
def data_limit(limit: int) -> Iterator[None]:
    """Within the block, an ``.npy``/``.npz`` file (and an ``.npz``'s unpacked members) may
    hold up to ``limit`` bytes instead of ``MAX_FILE_BYTES``."""
    token = _ARRAY_LIMIT.set(limit)
    try:
        yield
    finally:
        _ARRAY_LIMIT.reset(token)


def inside(path: Path, root: Path) -> Path:
    """``path`` resolved; a ``SecurityError`` when it (through links) leaves ``root``."""
    real, base = path.resolve(), root.resolve()
    if real != base and base not in real.parents:
        raise SecurityError(f"{path} links outside the dataset folder {root}", hint="copy the file into the folder")
    return real


def entries(folder: Path, root: Path) -> list[Path]:
    """The visible entries of ``folder`` (sorted by name, hidden ones skipped), each inside ``root``."""
    try:
        with os.scandir(folder) as it:
            names = []
            for entry in it:
                if not entry.name.startswith("."):
                    names.append(entry.name)
                if len(names) > MAX_FILES:
                    raise UsageError(f"{folder} holds more than {MAX_FILES} entries")
    except OSError as exc:
        raise UsageError(f"cannot list {folder}: {exc.strerror or exc}") from exc
    paths = [folder / name for name in sorted(names)]
    for p in paths:
        inside(p, root)
    return paths


def read_bytes(path: Path, root: Path, limit: int | None = None) -> bytes:
    """The bytes of the regular file ``path`` (inside ``root``), at most ``limit`` of them
    (default: the array limit, ``data_limit``); read by ``cimc.untrusted.read_regular``."""
    hint = _RAISE_HINT if limit is None else None
    limit = _ARRAY_LIMIT.get() if limit is None else limit
    inside(path, root)
    return read_regular(path, limit=limit, root=root, hint=hint,
                        error=UsageError)


def load_arrays(path: Path, root: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (by name) or ``.npy`` (as ``""``) file, without pickles, the
    uncompressed size of an ``.npz`` bounded too."""
    raw = read_bytes(path, root)
    try:
        if path.suffix.lower() == ".npz":
            with zipfile.ZipFile(io.BytesIO(raw)) as z:
                if sum(i.file_size for i in z.infolist()) > _ARRAY_LIMIT.get():
                    raise UsageError(f"{path.name} unpacks to more than {_ARRAY_LIMIT.get()} bytes", hint=_RAISE_HINT)
            with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
                return {k: np.asarray(npz[k]) for k in npz.files}
        return {"": np.asarray(np.load(io.BytesIO(raw), allow_pickle=False))}
    except UsageError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"cannot read {path.name}: {exc}") from exc
