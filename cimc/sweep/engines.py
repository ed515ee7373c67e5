"""Engines: run ``evaluate_point`` over the tasks and yield records as they complete.

* ``serial``: in this process (debugging, timing baselines);
* ``pool`` (default): a ``concurrent.futures.ProcessPoolExecutor`` of ``workers`` processes
  (spawned, so nothing of the driver's torch/onnxruntime thread state is inherited); the
  model blob goes to each worker once, in its initializer;
* ``ray``: ``ray.init(address)`` (a running cluster) or a local instance of ``workers`` CPUs;
  one ``ray.remote`` task (1 CPU) per point, the model blob put once in the object store. A
  task whose worker process or node dies is run again elsewhere, up to ``RAY_RETRIES`` times
  (a point is a pure function of its task, so a rerun gives the same record); the driver
  takes one result per task, so a point is never recorded twice. A point still lost after
  that is left out of the results file (a rerun of the same command evaluates it) and the
  run ends with an error naming how many were lost, after recording all the others.

Records come back to the driver, which alone writes the results file; order is completion
order. Closing the generator (Ctrl-C, an error in the driver) cancels what has not started.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from cimc.errors import UsageError
from cimc.sweep.model import ModelBlob
from cimc.sweep.point import Task, evaluate_point

ENGINES = ("pool", "ray", "serial")
RAY_RETRIES = 3
Record = dict[str, Any]
_BLOB: ModelBlob | None = None


def default_workers(points: int) -> int:
    return max(1, min(os.cpu_count() or 1, points))


def run_engine(engine: str, blob: ModelBlob, tasks: list[Task], workers: int | None = None,
               address: str | None = None) -> Iterator[Record]:
    """Records of ``tasks`` from the named engine (see the module docstring)."""
    if not tasks:
        return iter(())
    n = workers or default_workers(len(tasks))
    if engine == "serial":
        return run_serial(blob, tasks)
    if engine == "pool":
        return run_pool(blob, tasks, n)
    if engine == "ray":
        return run_ray(blob, tasks, n, address)
    raise UsageError(f"unknown engine '{engine}'", hint=f"engines: {', '.join(ENGINES)}")


def run_serial(blob: ModelBlob, tasks: list[Task]) -> Iterator[Record]:
    """In this process; the per-point warnings are silenced as in the workers (``quiet_worker``)."""
    logger = logging.getLogger("cimc")
    level = logger.level
    if logger.getEffectiveLevel() >= logging.WARNING:
        logger.setLevel(logging.ERROR)
    try:
        for task in tasks:
            yield evaluate_point(blob, task)
    finally:
        logger.setLevel(level)


def _init_worker(blob: ModelBlob, level: int) -> None:
    global _BLOB
    one_thread()
    quiet_worker(level)
    _BLOB = blob


def one_thread() -> None:
    """One point per core: no nested BLAS/OpenMP/torch thread pools fighting for the cores."""
    from threadpoolctl import threadpool_limits

    os.environ["OMP_NUM_THREADS"] = "1"  # for libraries loaded later (torch reads it at import)
    threadpool_limits(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def quiet_worker(level: int) -> None:
    """Workers log at the driver's level, but not the per-point warnings (calibration data, morph
    without training) unless the driver is verbose: one warning per point would bury the progress."""
    logging.basicConfig(level=level if level < logging.WARNING else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")


def _pool_task(task: Task) -> Record:
    if _BLOB is None:
        raise RuntimeError("sweep worker started without its model (initializer did not run)")
    return evaluate_point(_BLOB, task)


def run_pool(blob: ModelBlob, tasks: list[Task], workers: int) -> Iterator[Record]:
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(blob, logging.getLogger().getEffectiveLevel()))
    try:
        pending: set[Future[Record]] = {pool.submit(_pool_task, t) for t in tasks}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ray_task(blob: ModelBlob, task: Task, level: int) -> Record:
    quiet_worker(level)
    return evaluate_point(blob, task)


def run_ray(blob: ModelBlob, tasks: list[Task], workers: int, address: str | None) -> Iterator[Record]:
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs ray", hint="pip install 'cimc[ray]'") from None
    started = not ray.is_initialized()
    if started:
        kwargs: dict[str, Any] = {"address": address} if address else {"num_cpus": workers}
        ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
    remote = ray.remote(num_cpus=1, max_retries=RAY_RETRIES)(_ray_task)
    ref = ray.put(blob)
    level = logging.getLogger().getEffectiveLevel()
    pending = [remote.remote(ref, t, level) for t in tasks]
    lost = 0
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                record = ray.get(done[0])
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                    ray.exceptions.ObjectLostError) as exc:
                lost += 1
                logging.getLogger(__name__).warning("a sweep point was lost after %d retries: %s", RAY_RETRIES,
                                                    type(exc).__name__)
                continue
            yield record
    finally:
        for left in pending:
            ray.cancel(left)
        if started:
            ray.shutdown()
    if lost:
        raise UsageError(f"{lost} point(s) lost: their Ray workers died {RAY_RETRIES + 1} times",
                         hint="run the same command again: the results file keeps every other point")
