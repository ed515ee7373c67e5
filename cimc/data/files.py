"""Reading the user's data files, which are untrusted.

Every file is opened without following a final symlink out of its folder (a link whose target
leaves the dataset's root is refused), must be a regular file (a FIFO or device is refused,
never read: it is opened non-blocking and checked with ``fstat``), and is read up to a bound
(``MAX_FILE_BYTES`` for arrays, ``MAX_IMAGE_BYTES`` for images). A folder lists at most
``MAX_FILES`` entries. Errors are ``UsageError``s naming the file; escaping links are
``SecurityError``s.

The bound on arrays may be raised for a block of work with ``data_limit(n)`` (``cimc
compile --max-data-bytes``): it holds for the current thread's context only.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np

from cimc.errors import SecurityError, UsageError
from cimc.limits import DATA_FILE_BYTES, FOLDER_ENTRIES, IMAGE_FILE_BYTES

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
    (default: the array limit, ``data_limit``)."""
    hint = _RAISE_HINT if limit is None else None
    limit = _ARRAY_LIMIT.get() if limit is None else limit
    real = inside(path, root)
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise UsageError(f"cannot open {path.name}: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"{path.name} is not a regular file", hint="remove it from the dataset folder")
        if info.st_size > limit:
            raise UsageError(f"{path.name} is {info.st_size} bytes, more than the {limit} allowed", hint=hint)
        with os.fdopen(os.dup(fd), "rb") as f:
            raw = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(raw) > limit:
        raise UsageError(f"{path.name} is more than the {limit} bytes allowed", hint=hint)
    return raw


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
