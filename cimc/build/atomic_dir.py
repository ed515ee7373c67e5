"""Replacing a folder atomically, and cleaning up after a writer that was killed.

A new folder is written under a temporary sibling name ``.cimc-tmp-<host>-<pid>-XXXX`` and
then swapped into place:

* on Linux with ``renameat2(RENAME_EXCHANGE)`` the new and the old folder trade names in one
  atomic step, so the target path always holds a complete build (the old one, then the new);
* elsewhere the old folder is first renamed to ``.cimc-old-<host>-<pid>-XXXX`` and the new one
  renamed into place, so for an instant the target does not exist (never half of one).

The old build is then deleted. A writer killed at any point (even ``SIGKILL``) leaves at
most a ``.cimc-tmp-*`` or ``.cimc-old-*`` sibling. Each such folder carries the marker file
``.cimc-writer`` (written into the temporary folder when it is made, and into the old
build just before the swap, so the folder left at the temporary name after the swap carries
it too; removed from the new build after the swap). ``clean_stale`` removes only folders
whose name has the full pattern ``.cimc-(tmp|old)-<host>-<pid>-…``, which are real folders
(not links) holding that marker, and whose writer is gone: same host and a process id that
no longer runs, or older than a day. A user's ``.cimc-old-notes`` folder is never touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

TMP_PREFIX = ".cimc-tmp-"
OLD_PREFIX = ".cimc-old-"
STALE_AFTER_S = 24 * 3600
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:40] or "host"
_NAME = re.compile(r"^\.cimc-(?:tmp|old)-(?P<host>[A-Za-z0-9._]+)-(?P<pid>\d+)-")
#: The file that proves a leftover folder was made by a cimc writer (module doc).
MARKER = ".cimc-writer"
_MARK = b"cimc: a temporary folder of an atomic build write; safe to delete once its writer is gone\n"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_temp(parent: Path, prefix: str = TMP_PREFIX) -> Path:
    """A new empty folder in ``parent`` named after this host and process (mode per umask)."""
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{_HOST}-{os.getpid()}-", dir=parent))
    os.chmod(path, 0o777 & ~_umask())
    mark(path)
    return path


def mark(folder: Path) -> None:
    """Write the marker that lets ``clean_stale`` delete ``folder`` once its writer is gone."""
    fd = os.open(folder / MARKER, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(_MARK)


def is_marked(folder: Path) -> bool:
    """``folder`` is a real folder holding cimc's marker file with its exact content — or
    holding nothing but (at most) a marker file, so deleting it loses nothing (a writer
    killed between making the folder and finishing the marker)."""
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return False
        names = os.listdir(folder)
        if not names or (names == [MARKER] and stat.S_ISREG(os.lstat(folder / MARKER).st_mode)
                         and os.lstat(folder / MARKER).st_size < len(_MARK)):
            return True
        path = folder / MARKER
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size != len(_MARK):
            return False
        with open(path, "rb") as fh:
            return fh.read(len(_MARK) + 1) == _MARK
    except OSError:
        return False


def _libc_exchange() -> Callable[..., int] | None:
    """glibc's ``renameat2`` (Linux ≥ 3.15, glibc ≥ 2.28), or ``None``."""
    name = ctypes.util.find_library("c")
    try:
        func = ctypes.CDLL(name, use_errno=True).renameat2 if name else None
    except (OSError, AttributeError):
        return None
    if func is not None:
        func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        func.restype = ctypes.c_int
    return func


_EXCHANGE = _libc_exchange()


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap the names of ``a`` and ``b``; ``False`` if the system cannot."""
    if _EXCHANGE is None:
        return False
    rc = _EXCHANGE(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system cannot exchange
        return False
    raise OSError(errno, os.strerror(errno), str(b))


def swap_into_place(new: Path, target: Path) -> None:
    """Make ``new`` (a complete folder) appear at ``target``, replacing what was there."""
    if os.path.lexists(target) and os.path.isdir(target) and not os.path.islink(target):
        mark(target)  # the old build, about to move to a temporary name: deletable if we die
    if not os.path.lexists(target):
        os.rename(new, target)
    elif exchange(new, target):
        remove(new)  # ``new`` now names the old build
    else:
        old = make_temp(target.parent, OLD_PREFIX)
        for entry in old.iterdir():
            entry.unlink()
        os.rmdir(old)
        os.rename(target, old)
        os.rename(new, target)
        remove(old)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(target / MARKER)
    _fsync_dir(target.parent)


def remove(path: Path) -> None:
    """Delete a folder we made (or a symbolic link standing in for one).

    The marker goes last: a writer killed halfway through the deletion leaves a folder that
    still carries it (or nothing at all), so the next run's ``clean_stale`` finishes the job.
    """
    if path.is_symlink():
        path.unlink()
        return
    with contextlib.suppress(OSError), os.scandir(path) as entries:
        for entry in entries:
            if entry.name == MARKER:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
    shutil.rmtree(path, ignore_errors=True)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists but belongs to someone else
    return True


def is_stale(entry: Path, now: float | None = None) -> bool:
    """A ``.cimc-tmp-*``/``.cimc-old-*`` folder of a cimc writer (name and marker) that has
    gone (module doc)."""
    match = _NAME.match(entry.name)
    if match is None or not is_marked(entry):
        return False
    if match["host"] == _HOST and not _alive(int(match["pid"])):
        return True
    try:
        age = (time.time() if now is None else now) - entry.lstat().st_mtime
    except OSError:
        return False
    return age > STALE_AFTER_S


def clean_stale(parent: Path) -> list[Path]:
    """Remove the leftovers of killed cimc writers in ``parent``; returns what was removed."""
    try:
        entries = [p for p in parent.iterdir() if p.name.startswith((TMP_PREFIX, OLD_PREFIX))]
    except OSError:
        return []
    removed = [p for p in entries if is_stale(p)]
    for path in removed:
        log.info("removing %s, left by a cimc run that was killed", path.name)
        remove(path)
    return removed
