"""One batch run as lanes, one per core.

An emulator run is a chain of passes over whole layers: a few onnxruntime products, which use
every core, and many numpy and compiled passes (DAC, im2col, ADC, adder tree, Relu, Add,
MaxPool), which use one. Splitting their data over threads inside a layer gave nothing on the 2-core machine
(``benchmarks/results/emulator.md``, branch ``emu5``). Splitting the *batch* does: a batch of
``N ≥ 2`` samples of a model that never mixes its samples is cut into ``L = min(lanes, N)``
consecutive chunks (sizes ``⌈N/L⌉`` or ``⌊N/L⌋``), and each chunk runs through the whole model
on its own thread with its own scratch (``Workspace``) and bitline products on ``lane_threads``
onnxruntime threads (one, on the calling thread, when there is a lane per core). No two lanes
share a buffer, so every pass of every lane runs in parallel; the outputs (and traces) are
concatenated in order. ``lanes`` is one per core by default, at most ``DEFAULT_MAX_LANES``.

The bits are those of the unsplit run: a CIM layer computes each output pixel of each sample
from that sample alone (integer partial sums, elementwise ADC, per-pixel adder tree and
output), as does every digital op of a model that does not mix its batch (the ones that do
run unsplit: ``Emulator.run``). ``tests/test_emulator_lanes.py`` checks outputs and traces
bit for bit against the unsplit run.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from cimc.emulator.product import BitlineProduct
from cimc.emulator.workspace import Workspace

T = TypeVar("T")
R = TypeVar("R")


#: The most lanes an emulator takes by default: each lane's numpy calls hold the GIL between
#: passes, so many small lanes would queue for it; the cores beyond go to the lanes' products
#: (``lane_threads``). A guess: only 2 cores were there to measure on (session 11).
DEFAULT_MAX_LANES = 8


def core_count() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def default_lanes() -> int:
    """One lane per core, at most ``DEFAULT_MAX_LANES``."""
    return min(core_count(), DEFAULT_MAX_LANES)


def lane_threads(lanes: int) -> int:
    """onnxruntime threads of each lane's bitline products: the cores shared out among the
    lanes, at least one (one on a machine with a lane per core)."""
    return max(1, core_count() // max(1, lanes))


def lane_slices(samples: int, lanes: int) -> list[slice]:
    """``min(lanes, samples)`` consecutive slices covering ``range(samples)``, sizes differing
    by at most one (the larger first)."""
    count = max(1, min(lanes, samples))
    base, extra = divmod(samples, count)
    bounds = itertools.accumulate((base + (i < extra) for i in range(count)), initial=0)
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


def lane_feeds(feeds: Mapping[str, np.ndarray], batched: frozenset[str], lanes: int) -> list[dict[str, np.ndarray]]:
    """``feeds`` cut into lanes along axis 0 of the ``batched`` inputs (the others whole in
    every lane); one lane when those inputs disagree on their sample count or have fewer than
    two samples."""
    sizes = {int(feeds[k].shape[0]) for k in feeds if k in batched}
    if len(sizes) != 1 or lanes < 2:
        return [dict(feeds)]
    (samples,) = sizes
    return [{k: v[part] if k in batched else v for k, v in feeds.items()} for part in lane_slices(samples, lanes)]


@dataclass(eq=False)
class Lanes:
    """The per-lane state of an emulator: bitline products on ``lane_threads`` threads (shared
    by the lanes: onnxruntime sessions run concurrently), one ``Workspace`` per lane, the
    threads of lanes 1… (lane 0 runs on the caller's thread) and a lock held by the run using
    them."""

    products: list[BitlineProduct]
    count: int
    workspaces: list[Workspace] = field(init=False)
    pool: ThreadPoolExecutor = field(init=False)
    lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.workspaces = [Workspace() for _ in range(self.count)]
        self.pool = ThreadPoolExecutor(max_workers=max(1, self.count - 1), thread_name_prefix="cimc-lane")

    def map(self, job: Callable[[T, Workspace], R], chunks: Sequence[T]) -> list[R]:
        """``job(chunk, workspace)`` for every chunk (at most ``count``), each on its own lane;
        the results in order (the first exception raised, after every lane has finished)."""
        if len(chunks) > self.count:
            raise ValueError(f"{len(chunks)} chunks for {self.count} lanes")
        later = [self.pool.submit(job, chunk, work) for chunk, work in zip(chunks[1:], self.workspaces[1:],
                                                                           strict=False)]
        try:
            first = job(chunks[0], self.workspaces[0])
        finally:
            for lane in later:  # every lane has finished before any error leaves
                lane.exception()
        return [first, *(lane.result() for lane in later)]  # ``result`` raises a lane's error
