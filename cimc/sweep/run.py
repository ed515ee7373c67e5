"""The sweep driver: plan (validate, expand, key), run the missing points, report.

``plan_sweep`` reads the config, resolves the model (zoo export or file bytes) and keys every
point; it writes nothing, so a bad config (or model) leaves no file behind. ``run_sweep`` skips keys
already in the results file (resume), runs the rest on an engine and appends each record as
it arrives. ``summarise`` reads a results file back into the Pareto set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cimc.sweep.config import SweepConfig, load_config
from cimc.sweep.engines import run_engine
from cimc.sweep.model import ModelBlob, imported, resolve_model
from cimc.sweep.pareto import Objective, pareto
from cimc.sweep.point import Task
from cimc.sweep.space import expand, point_key
from cimc.sweep.store import ResultWriter, done_keys, latest, read_records

log = logging.getLogger(__name__)
Record = dict[str, Any]


@dataclass(frozen=True)
class SweepPlan:
    config: SweepConfig
    blob: ModelBlob
    tasks: list[Task]


@dataclass(frozen=True)
class RunSummary:
    points: int
    skipped: int
    evaluated: int
    failed: int
    wall_s: float
    bugs: int = 0


@dataclass(frozen=True)
class Summary:
    ok: list[Record]
    front: list[Record]
    objectives: tuple[Objective, ...]
    failed: int


def plan_sweep(config_path: Path, *, train: bool = False, keep_builds: Path | None = None) -> SweepPlan:
    """Validate the config and key its points (nothing is written)."""
    config = load_config(config_path, train=train)
    return plan_from_config(config, keep_builds=keep_builds)


def plan_from_config(config: SweepConfig, keep_builds: Path | None = None) -> SweepPlan:
    points = expand(config)
    blob = resolve_model(config.model)
    imported(blob)  # a model the importer refuses fails here, typed, not as one "bug" record per point
    keep = str(keep_builds) if keep_builds is not None else None
    tasks = [Task(point_key(p, config.settings, blob.identity()), p, config.settings, config.data_root, keep)
             for p in points]
    unique = list({t.key: t for t in tasks}.values())  # random draws may repeat a point
    return SweepPlan(config, blob, unique)


def run_sweep(plan: SweepPlan, out: Path, *, engine: str = "pool", workers: int | None = None,
              address: str | None = None, retry_failed: bool = False,
              on_record: Callable[[Record], None] | None = None) -> RunSummary:
    """Evaluate the points not yet in ``out`` and append their records."""
    start = time.perf_counter()
    done = done_keys(out, retry_failed)
    todo = [t for t in plan.tasks if t.key not in done]
    log.info("sweep: %d points, %d already in %s, %d to run", len(plan.tasks), len(plan.tasks) - len(todo),
             out.name, len(todo))
    failed = bugs = 0
    with ResultWriter(out) as writer:
        for record in run_engine(engine, plan.blob, todo, workers, address):
            writer.write(record)
            failed += record.get("status") != "ok"
            bugs += record.get("status") == "bug"
            if on_record is not None:
                on_record(record)
    return RunSummary(len(plan.tasks), len(plan.tasks) - len(todo), len(todo), failed,
                      round(time.perf_counter() - start, 3), bugs)


def summarise(out: Path, keys: set[str] | None = None, objective: str = "latency") -> Summary:
    """The Pareto set of the results in ``out`` (only ``keys`` when given: one sweep's points),
    minimising ``objective`` (``cimc.cost.objective``)."""
    records = list(latest(read_records(out)).values())
    if keys is not None:
        records = [r for r in records if r["key"] in keys]
    ok, front, objs = pareto(records, objective)
    return Summary(ok, front, objs, sum(r.get("status") != "ok" for r in records))
