"""The garbage collector and the allocator of a ``cimc`` command, a short process that
allocates few reference cycles and many large temporary arrays.

* ``settle_imports``: CPython's cyclic collector runs a young collection every 700 net
  allocations of container objects and, now and then, a full one that walks every live object,
  the tens of thousands the imports made (modules, classes, functions, pydantic schemas) among
  them; on ``cimc compile vgg9`` that was about 0.15 s of CPU, most in the walks over objects
  that live as long as the process. It moves the objects alive after the imports out of the
  collector's reach (``gc.freeze``: never walked, never freed, as they would not have been) and
  collects the young generation every ``YOUNG`` allocations (``collect_young_less_often``, from
  before the imports on). Memory is still freed by reference counting when the last reference
  goes; only garbage in cycles waits a little longer.
* ``keep_freed_memory``: glibc's malloc gives every block above a threshold that adapts up to
  32 MiB its own ``mmap`` and unmaps it when freed, and trims the heap's free top above
  128 KiB, so the next array of that size faults its pages in again (the kernel zeroes each
  4 KiB page: 70,000 page faults, about 0.3 s of system time on vgg9). Blocks up to
  ``MMAP_THRESHOLD`` then come from the heap, and up to ``TRIM_THRESHOLD`` of its free top is
  kept for the next array: 47,000 page faults. The peak resident memory grows a little: vgg9
  +1–3 %, ResNet18 +2 %, VGG16 +5 % (freed blocks reused in place instead of new mappings).
  Other C libraries are left as they are.

Both change the whole process, so ``cimc compile`` applies them only when the process is the
``cimc`` command itself (``owns_process``), never inside a host that runs cimc's commands
in-process (a test runner, a notebook, click's ``CliRunner``).
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

#: Net allocations of container objects between young collections (CPython's default: 700).
YOUNG = 10_000
#: Blocks up to this size come from malloc's heap (glibc's default adapts up to 32 MiB).
MMAP_THRESHOLD = 64 * 2**20
#: Free memory at the top of the heap kept for later blocks (glibc's default: 128 KiB).
TRIM_THRESHOLD = 64 * 2**20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def owns_process(argv: list[str] | None = None) -> bool:
    """Whether the program of this process (``argv[0]``, default ``sys.argv``) is the ``cimc``
    command: the console script ``cimc`` (``cimc.exe``) or ``python -m cimc.cli.main``."""
    args = sys.argv if argv is None else argv
    if not args or not args[0]:
        return False
    program = Path(args[0])
    return program.stem == "cimc" or program.resolve() == Path(__file__).with_name("main.py").resolve()


def collect_young_less_often() -> None:
    """Collect the young generation every ``YOUNG`` allocations (module doc); call it before a
    command's imports, which alone made about a hundred young collections at 700."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)


def settle_imports() -> None:
    """Freeze every object alive now (call it after a command's imports; module doc) and
    collect the young generation every ``YOUNG`` allocations."""
    gc.freeze()
    collect_young_less_often()


def keep_freed_memory() -> None:
    """Large blocks from glibc's heap, its free top kept (module doc); elsewhere nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a C library without mallopt
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
