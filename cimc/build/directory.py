"""Writing a build directory atomically: all files go to a temporary sibling folder that is
swapped into place (``cimc.build.atomic_dir``), so a reader — or a compile killed at any
instant — sees the previous build or the new one, never half of one.

Safety rules for the target folder:

* a folder that exists and is not empty is replaced only when it is exactly a cimc build
  (``foreign_entries``: a valid cimc ``manifest.json`` whose listed files are all there as
  regular files, and nothing else), so a user's file inside a build folder is never deleted;
  ``force`` replaces any folder — with everything in it;
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

import errno
import hashlib
import os
import re
import stat
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cimc.build.atomic_dir import MARKER, clean_stale, make_temp, remove, swap_into_place
from cimc.build.file_parts import FileData
from cimc.documents import dumps
from cimc.documents.manifest import Manifest
from cimc.errors import CimcError, ResourceLimitError, UsageError
from cimc.limits import MANIFEST_BYTES
from cimc.safe_text import safe_name
from cimc.untrusted import load_json, read_regular

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = MANIFEST_BYTES
_FILE_NAME = re.compile(r"[a-z0-9_.-]+")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_cimc_build(folder: Path) -> bool:
    """Whether ``folder`` is exactly a build cimc wrote (``foreign_entries`` is empty)."""
    return not foreign_entries(folder)


def foreign_entries(folder: Path) -> list[str]:
    """What in ``folder`` cimc did not write; ``[]`` only when ``folder/manifest.json`` is a
    regular, reasonably small JSON object with ``tool: "cimc"`` and a ``files`` table of plain
    names and sha256 digests, every listed file is a regular file there, and nothing else is
    (no other file, folder or link; the writer's marker ``.cimc-writer`` aside). A FIFO or a
    device called ``manifest.json`` is never opened."""
    path = folder / MANIFEST
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_MANIFEST_BYTES:
            return [MANIFEST]
        doc = load_json(read_regular(path, limit=MAX_MANIFEST_BYTES, links=False), MANIFEST)
        entries = {p.name: p for p in folder.iterdir()}
    except (OSError, CimcError):
        return [MANIFEST]
    listed = doc.get("files") if isinstance(doc, dict) and doc.get("tool") == "cimc" else None
    if not isinstance(listed, dict) or not all(
            isinstance(k, str) and _FILE_NAME.fullmatch(k) and isinstance(v, str) and _SHA256.fullmatch(v)
            for k, v in listed.items()):
        return [MANIFEST]
    foreign = sorted(set(entries) - set(listed) - {MANIFEST, MARKER})
    missing = sorted(set(listed) - set(entries))
    irregular = sorted(n for n in set(listed) & set(entries) if not entries[n].is_file() or entries[n].is_symlink())
    return foreign + [f"{n} (listed, missing)" for n in missing] + [f"{n} (not a regular file)" for n in irregular]


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
    """Refuse to replace a non-empty folder that cimc did not create (unless ``force``); a
    target the system cannot even look at (a name too long, no permission) is a typed error."""
    try:
        _check_target(target, force)
    except OSError as exc:
        raise write_error(exc, target) from exc


def _check_target(target: Path, force: bool) -> None:
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
    if force or not any(target.iterdir()):
        return
    foreign = foreign_entries(target)
    if foreign:
        shown = ", ".join(safe_name(n) for n in foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3
                                                                   else "")
        raise UsageError(f"output folder {target} was not made by cimc: it holds what cimc did not write ({shown})",
                         hint="move those files away, choose another -o, or pass --force to replace the folder")


def _check_names(files: Mapping[str, FileData]) -> None:
    """Every name is a relative path of plain parts (``plots/x.svg``, never ``../x`` or ``/x``)."""
    for name in files:
        parts = name.split("/")
        if name == MANIFEST or any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
            raise ValueError(f"build file name {name!r} is not a plain relative file name")


def write_build(target: Path, files: Mapping[str, FileData], manifest: Manifest, force: bool = False) -> None:
    """Write ``files`` plus a manifest holding their sha256 into ``target``, atomically. A file
    given as pieces (``FileParts``) is written and hashed piece after piece, never joined."""
    _check_names(files)
    check_target(target, force)
    try:
        _write_all(target, files, manifest)
    except OSError as exc:
        raise write_error(exc, target) from exc


def write_error(exc: OSError, target: Path) -> CimcError:
    """The typed error of a failed write: a full disk is a ``ResourceLimitError`` (exit 5), a
    read-only, forbidden or over-long target a ``UsageError`` (exit 2); nothing was replaced."""
    what = f"cannot write the build to {target}: {exc.strerror or type(exc).__name__}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ResourceLimitError(what + " (the previous build, if any, is unchanged)",
                                  hint="free some space or choose another -o")
    return UsageError(what + " (the previous build, if any, is unchanged)",
                      hint="choose a writable folder with -o" if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
                      else "choose another -o")


def _write_all(target: Path, files: Mapping[str, FileData], manifest: Manifest) -> None:
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target.parent)
    tmp = make_temp(target.parent)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:  # hashing releases the GIL: it overlaps the writes
            digests = {name: pool.submit(_digest, data) for name, data in sorted(files.items())}
            for name, data in sorted(files.items()):
                _write(tmp / name, data)
        manifest = manifest.model_copy(update={"files": {name: digest.result() for name, digest in digests.items()}})
        _write(tmp / MANIFEST, dumps(manifest))
        swap_into_place(tmp, target)
    finally:
        if os.path.lexists(tmp):
            remove(tmp)


def _digest(data: FileData) -> str:
    return sha256(data) if isinstance(data, bytes) else data.sha256()


def _write(path: Path, data: FileData) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    with os.fdopen(fd, "wb") as fh:
        if isinstance(data, bytes):
            fh.write(data)
        else:
            data.write_to(fh)
        fh.flush()
        os.fsync(fh.fileno())
