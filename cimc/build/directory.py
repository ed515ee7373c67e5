"""Writing a build directory atomically: all files go to a temporary sibling folder that is
swapped into place (``cimc.build.atomic_dir``), so a reader — or a compile killed at any
instant — sees the previous build or the new one, never half of one.

Safety rules for the target folder:

* a folder that exists but was not made by cimc (no regular ``manifest.json`` naming cimc)
  is not replaced unless ``force``;
* the file system root, the home folder, the current folder and its ancestors are never
  replaced, not even with ``force``;
* a symbolic link to a folder is followed (the build replaces the folder it points to);
  a broken link is refused;
* file names are the fixed names the backend chose, never names from the model, and each
  must be a plain relative path (no ``..``, no leading ``/``) — nothing is written outside
  the folder.

Leftovers of killed compiles in the parent folder are removed before writing.
``manifest.json`` records the sha256 of every other file.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cimc.build.atomic_dir import clean_stale, make_temp, remove, swap_into_place
from cimc.documents import dumps
from cimc.documents.manifest import Manifest
from cimc.errors import UsageError
from cimc.limits import MANIFEST_BYTES

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = MANIFEST_BYTES


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_cimc_build(folder: Path) -> bool:
    """``folder/manifest.json`` is a regular, reasonably small JSON file naming cimc (a FIFO
    or a device called ``manifest.json`` is never opened)."""
    path = folder / MANIFEST
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_MANIFEST_BYTES:
            return False
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("tool") == "cimc"


def _protected(target: Path) -> str | None:
    """Why ``target`` must never be replaced, or ``None``."""
    real = os.path.realpath(target)
    cwd = os.path.realpath(os.getcwd())
    if real == os.path.realpath(os.sep):
        return "it is the file system root"
    if real == os.path.realpath(os.path.expanduser("~")):
        return "it is the home folder"
    if cwd == real or cwd.startswith(real.rstrip(os.sep) + os.sep):
        return "it is the current folder or one of its parents"
    return None


def check_target(target: Path, force: bool) -> None:
    """Refuse to replace a non-empty folder that cimc did not create (unless ``force``)."""
    if target.is_symlink() and not target.exists():
        raise UsageError(f"output path {target} is a broken symbolic link")
    if target.exists() and not target.is_dir():
        raise UsageError(f"output path {target} exists and is not a folder")
    if not target.is_dir():
        return
    reason = _protected(target)
    if reason is not None:
        raise UsageError(f"refusing to replace the output folder {target}: {reason}",
                         hint="choose a new folder with -o")
    if any(target.iterdir()) and not is_cimc_build(target) and not force:
        raise UsageError(f"output folder {target} exists and was not made by cimc",
                         hint="choose another -o or pass --force to replace it")


def _check_names(files: dict[str, bytes]) -> None:
    """Every name is a relative path of plain parts (``plots/x.svg``, never ``../x`` or ``/x``)."""
    for name in files:
        parts = name.split("/")
        if name == MANIFEST or any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
            raise ValueError(f"build file name {name!r} is not a plain relative file name")


def write_build(target: Path, files: dict[str, bytes], manifest: Manifest, force: bool = False) -> None:
    """Write ``files`` plus a manifest holding their sha256 into ``target``, atomically."""
    _check_names(files)
    check_target(target, force)
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target.parent)
    tmp = make_temp(target.parent)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:  # hashing releases the GIL: it overlaps the writes
            digests = {name: pool.submit(sha256, data) for name, data in sorted(files.items())}
            for name, data in sorted(files.items()):
                _write(tmp / name, data)
        manifest = manifest.model_copy(update={"files": {name: digest.result() for name, digest in digests.items()}})
        _write(tmp / MANIFEST, dumps(manifest))
        swap_into_place(tmp, target)
    finally:
        if os.path.lexists(tmp):
            remove(tmp)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
