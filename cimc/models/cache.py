"""A cache of zoo exports: ``cimc compile vgg9`` exports with torch once, then reads the cached
file in place (``cimc.models.onnx_file``); ``export_onnx`` copies it.

A torch export of a zoo model costs seconds (VGG9 about 5 s here) and gives the same bytes every
time for the same model source, seed and torch version. The file is kept under
``$CIMC_CACHE_DIR`` (default ``$XDG_CACHE_HOME/cimc/zoo``, else ``~/.cache/cimc/zoo``), named
by its key: the SHA-256 of the model name, the seed, torch's and cimc's versions and the source
of ``cimc/models/*.py`` (so an edited zoo definition never reads a stale file). ``CIMC_CACHE_DIR=off``
disables the cache. Files are written to a temporary name and renamed, so a killed export
leaves no half file; an unreadable cache (read-only home, a file in the way) is skipped with a
debug message, never an error. A cached file is still an input like any other: the frontend
checks it as it checks every model.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

ENV = "CIMC_CACHE_DIR"
OFF = "off"
SOURCES = Path(__file__).parent


def cache_dir() -> Path | None:
    """The cache folder (module doc), or ``None`` when the cache is off."""
    chosen = os.environ.get(ENV)
    if chosen == OFF:
        return None
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cimc" / "zoo"


def key(name: str, seed: int, torch_version: str) -> str:
    """Hex SHA-256 of everything the exported bytes depend on (module doc)."""
    from cimc import __version__

    digest = hashlib.sha256(f"{name}\0{seed}\0{torch_version}\0{__version__}\0".encode())
    for source in sorted(SOURCES.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def cached_export(name: str, seed: int, path: Path, export: Callable[[Path], None]) -> bool:
    """Write model ``name`` (seed ``seed``) to ``path``: a copy of the cached file when there is
    one, else ``export(path)`` and a copy into the cache. Returns whether the cache was hit."""
    folder = cache_dir()
    if folder is None:
        export(path)
        return False
    entry = entry_path(folder, name, seed)
    if _usable(entry, name, seed):
        shutil.copyfile(entry, path)
        return True
    export(path)
    _store(path, entry)
    return False


def entry_path(folder: Path, name: str, seed: int) -> Path:
    """The cache file of model ``name`` (seed ``seed``) in ``folder`` (named by ``key``)."""
    return folder / f"{name}-seed{seed}-{key(name, seed, torch_version())[:20]}.onnx"


def lookup(name: str, seed: int) -> Path | None:
    """The cached file of model ``name`` (seed ``seed``): a regular file, not a link; ``None``
    when the cache is off or holds none."""
    folder = cache_dir()
    if folder is None:
        return None
    entry = entry_path(folder, name, seed)
    return entry if _usable(entry, name, seed) else None


def _usable(entry: Path, name: str, seed: int) -> bool:
    """Whether the cache entry ``entry`` exists as a regular file (a link is never read)."""
    if entry.is_file() and not entry.is_symlink():
        log.debug("zoo model %s (seed %d) from the cache %s", name, seed, entry)
        return True
    return False


def torch_version() -> str:
    """The installed torch's version, read from its package metadata: a cache hit never imports
    torch (seconds); ``torch.__version__`` when the metadata is missing."""
    from importlib import metadata

    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        import torch

        return str(torch.__version__)


def _store(path: Path, entry: Path) -> None:
    """Copy ``path`` to ``entry`` through a temporary file and a rename; failures are skipped."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".export-", suffix=".onnx", dir=entry.parent)
        os.close(handle)
        shutil.copyfile(path, temporary)
        os.replace(temporary, entry)
    except OSError as exc:
        log.debug("zoo export cache not written (%s): %s", entry.parent, exc)
