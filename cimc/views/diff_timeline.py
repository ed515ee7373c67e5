"""The timeline part of ``cimc diff``: two builds' timelines side by side.

From ``report.json`` (``latency``, ``energy``, ``system``) the figures that differ, as
``[A, B]`` pairs: latency per inference and its parts (load, compute, overlap, stall cycles of a
batch, loads), energy per inference by component, area. From ``schedule.json``'s ``timeline``
(its events, not its totals), per physical macro (slot): the cycles it computes (``Σ`` over the
phases it takes part in of ``end − start``), the cycles it loads and how many loads, in A and in
B, for every slot whose figures differ (a slot one build lacks counts as zeros there).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cimc.build.reader import BuildDir
from cimc.documents.parse import parse
from cimc.documents.schedule import Schedule, Timeline
from cimc.errors import CimcError

LATENCY_KEYS = ("timing", "conversion", "batch", "slots", "cycles_per_inference", "first_batch_cycles",
                "steady_batch_cycles", "load_cycles", "compute_cycles", "overlap_cycles", "stall_cycles", "loads",
                "resident")
ENERGY_KEYS = ("total", "adc", "dac", "adder", "psum_buffer", "offchip", "cell_write", "initial_load", "tops_per_w")
SLOT_KEYS = ("compute_cycles", "load_cycles", "loads")


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is None or b is None or not math.isclose(a, b, rel_tol=1e-12)
    return bool(a != b)


def _section(a: dict[str, Any] | None, b: dict[str, Any] | None, keys: tuple[str, ...]) -> dict[str, list[Any]]:
    a, b = a or {}, b or {}
    return {k: [a.get(k), b.get(k)] for k in keys if _differs(a.get(k), b.get(k))}


def slot_figures(timeline: Timeline) -> np.ndarray:
    """``(slots, 3)``: per slot its compute cycles, load cycles and loads (module doc)."""
    out = np.zeros((timeline.slots, 3), dtype=np.int64)
    for ph in timeline.phases:
        out[np.asarray(ph.slots, dtype=np.int64), 0] += ph.end - ph.start
    for ld in timeline.loads:
        out[ld.slot, 1] += ld.end - ld.start
        out[ld.slot, 2] += 1
    return out


def _timeline(build: BuildDir) -> Timeline | None:
    if build.schedule is None:
        return None
    try:
        return parse(Schedule, "schedule.json", build.schedule).timeline
    except CimcError:  # an unreadable schedule: the rest of the diff still stands
        return None


def diff_slots(a: Timeline, b: Timeline) -> list[dict[str, Any]]:
    """Per slot whose figures differ: ``{slot, compute_cycles: [A, B], load_cycles, loads}``."""
    fa, fb = slot_figures(a), slot_figures(b)
    n = max(len(fa), len(fb))
    pa, pb = np.zeros((n, 3), dtype=np.int64), np.zeros((n, 3), dtype=np.int64)
    pa[:len(fa)], pb[:len(fb)] = fa, fb
    changed = np.flatnonzero((pa != pb).any(axis=1))
    return [{"slot": int(s), **{k: [int(pa[s, i]), int(pb[s, i])] for i, k in enumerate(SLOT_KEYS)}}
            for s in changed.tolist()]


def diff_timeline(a: BuildDir, b: BuildDir) -> dict[str, Any]:
    """The timeline section of ``cimc diff`` (module doc); ``{}`` when neither build has one."""
    ra, rb = a.report or {}, b.report or {}
    out: dict[str, Any] = {"latency": _section(ra.get("latency"), rb.get("latency"), LATENCY_KEYS),
                           "energy": _section(ra.get("energy"), rb.get("energy"), ENERGY_KEYS),
                           "area": _section(ra.get("system"), rb.get("system"), ("total", "macros", "psum_buffer"))}
    ta, tb = _timeline(a), _timeline(b)
    out["slots"] = diff_slots(ta, tb) if ta is not None and tb is not None else []
    if (ta is None) != (tb is None):
        out["note"] = f"only {'A' if tb is None else 'B'} has a readable timeline"
    return out


def timeline_changed(section: dict[str, Any]) -> bool:
    return any(section.get(k) for k in ("latency", "energy", "area", "slots", "note"))
