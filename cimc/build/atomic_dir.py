"""Replacing a folder atomically, and cleaning up after a writer that was killed.

A new folder is written under a temporary sibling name ``.cimc-tmp-<host>-<pid>-XXXX`` and
then swapped into place:

* on Linux with ``renameat2(RENAME_EXCHANGE)`` the new and the old folder trade names in one
  atomic step, so the target path always holds a complete build (the old one, then the new);
* elsewhere the old folder is first renamed to ``.cimc-old-<host>-<pid>-XXXX`` and the new one
  renamed into place, so for an instant the target does not exist (never half of one).

The old build is then deleted. A writer killed at any point (even ``SIGKILL``) leaves at
most a ``.cimc-tmp-*`` or ``.cimc-old-*`` sibling. ``clean_stale`` removes those whose
writer is gone: same host and a process id that no longer runs, or older than a day.
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_temp(parent: Path, prefix: str = TMP_PREFIX) -> Path:
    """A new empty folder in ``parent`` named after this host and process (mode per umask)."""
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{_HOST}-{os.getpid()}-", dir=parent))
    os.chmod(path, 0o777 & ~_umask())
    return path


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
    if not os.path.lexists(target):
        os.rename(new, target)
    elif exchange(new, target):
        remove(new)  # ``new`` now names the old build
    else:
        old = make_temp(target.parent, OLD_PREFIX)
        os.rmdir(old)
        os.rename(target, old)
        os.rename(new, target)
        remove(old)
    _fsync_dir(target.parent)


def remove(path: Path) -> None:
    """Delete a folder we made (or a symbolic link standing in for one)."""
    if path.is_symlink():
        path.unlink()
    else:
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
    """A ``.cimc-tmp-*``/``.cimc-old-*`` folder whose writer has gone."""
    match = _NAME.match(entry.name)
    if match and match["host"] == _HOST and not _alive(int(match["pid"])):
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
