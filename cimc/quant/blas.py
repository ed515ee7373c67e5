"""One BLAS thread for the many small matrix products of the CIM reference.

The reference computes each layer's partial sums as a stack of small products, one per
segment, and calibration runs the interpreter on a small batch. Multi-threaded BLAS
(OpenBLAS) wakes its threads for every product; on a busy 2-core machine that made
calibration and scale-to-shift 4–10× slower than one thread. ``single_blas_thread()``
limits BLAS to one thread for a block (through ``threadpoolctl`` when it is installed,
otherwise it does nothing).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any


@functools.cache
def _controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


@contextlib.contextmanager
def single_blas_thread() -> Iterator[None]:
    controller = _controller()
    if controller is None:
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield
