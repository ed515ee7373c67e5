"""The benchmark harness: a thing against its reference, alternating, as a ratio.

A ``Benchmark`` names a function under test (``run``) and a reference (``reference``), both
taking the state that ``setup`` made once. ``measure`` calls each once to warm up, then for
``rounds`` rounds times both, alternating which goes first (run/ref, ref/run, …) so drift in
the machine's state (page cache, CPU clock, other processes) hits both alike. A fast call is
repeated ``n`` times per timing so one timing lasts at least ``min_time`` seconds, and the
per-call time is the timing divided by ``n``.

Per round ``i`` the ratio is ``r_i = t_run,i / t_ref,i``; the result reports the median of the
``r_i`` and their spread (quartiles and min–max), and the median absolute times. The ratio
of medians would hide that both calls of one round saw the same machine; the median of the
per-round ratios does not. Nothing here asserts on speed: ``target_ratio`` is only reported.
"""

from __future__ import annotations

import gc
import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Benchmark:
    """One measurement: ``run(state)`` against ``reference(state)``, ``state = setup()``.

    ``teardown(state)``, when given, runs once after the rounds (e.g. to delete temp files);
    ``rounds`` overrides the harness's round count for very slow benchmarks."""

    name: str
    setup: Callable[[], Any]
    run: Callable[[Any], object]
    reference: Callable[[Any], object]
    reference_name: str
    target_ratio: float | None = None
    teardown: Callable[[Any], None] | None = None
    rounds: int | None = None


@dataclass
class Settings:
    """How hard to measure: rounds after one warm-up, and the shortest single timing."""

    rounds: int = 7
    min_time: float = 0.05

    @classmethod
    def quick(cls) -> Settings:
        return cls(rounds=3, min_time=0.01)


@dataclass
class Result:
    """Timings of one benchmark (seconds per call) and the per-round ratios run/reference."""

    name: str
    reference_name: str
    target_ratio: float | None
    run_times: list[float] = field(default_factory=list)
    ref_times: list[float] = field(default_factory=list)
    repeats: tuple[int, int] = (1, 1)
    error: str | None = None

    @property
    def ratios(self) -> list[float]:
        return [r / f for r, f in zip(self.run_times, self.ref_times, strict=True) if f > 0]

    @property
    def ratio(self) -> float:
        """Median of the per-round ratios (NaN when nothing was measured)."""
        return statistics.median(self.ratios) if self.ratios else math.nan

    def quartiles(self) -> tuple[float, float]:
        """25th and 75th percentile of the ratios (the IQR's ends)."""
        ratios = self.ratios
        if len(ratios) < 2:
            return (self.ratio, self.ratio)
        q = statistics.quantiles(ratios, n=4, method="inclusive")
        return (q[0], q[2])

    @property
    def met(self) -> bool | None:
        """Whether the median ratio is within ``target_ratio`` (``None`` without a target)."""
        if self.target_ratio is None or not self.ratios:
            return None
        return self.ratio <= self.target_ratio

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        lo, hi = self.quartiles()
        ratios = self.ratios
        out.update({
            "ratio_median": self.ratio, "ratio_q1": lo, "ratio_q3": hi,
            "ratio_min": min(ratios, default=math.nan), "ratio_max": max(ratios, default=math.nan),
            "run_median_s": statistics.median(self.run_times) if self.run_times else math.nan,
            "ref_median_s": statistics.median(self.ref_times) if self.ref_times else math.nan,
            "target_met": self.met, "ratios": ratios,
        })
        return out


def _timed(fn: Callable[[Any], object], state: Any, repeats: int) -> float:
    """Seconds per call of ``fn(state)``, averaged over ``repeats`` back-to-back calls."""
    gc.collect()
    start = time.perf_counter()
    for _ in range(repeats):
        fn(state)
    return (time.perf_counter() - start) / repeats


def _repeats(seconds: float, min_time: float) -> int:
    """Calls per timing so that one timing lasts at least ``min_time``."""
    return 1 if seconds >= min_time else min(1000, math.ceil(min_time / max(seconds, 1e-7)))


def measure(bench: Benchmark, settings: Settings) -> Result:
    """Set up, warm up, and time ``bench`` over alternating rounds (see the module docstring)."""
    result = Result(bench.name, bench.reference_name, bench.target_ratio)
    state = bench.setup()
    try:
        n_run = _repeats(_timed(bench.run, state, 1), settings.min_time)
        n_ref = _repeats(_timed(bench.reference, state, 1), settings.min_time)
        result.repeats = (n_run, n_ref)
        for i in range(bench.rounds or settings.rounds):
            pair = [(bench.run, n_run, result.run_times), (bench.reference, n_ref, result.ref_times)]
            for fn, repeats, times in (pair if i % 2 == 0 else pair[::-1]):
                times.append(_timed(fn, state, repeats))
            log.info("%s round %d: ratio %.3f", bench.name, i, result.run_times[-1] / result.ref_times[-1])
    finally:
        if bench.teardown is not None:
            bench.teardown(state)
    return result


def run_safely(bench: Benchmark, settings: Settings) -> Result:
    """``measure``, turning an exception into ``Result.error`` so other benchmarks still run."""
    try:
        return measure(bench, settings)
    except Exception as exc:  # a crashing benchmark is reported, not fatal to the run
        log.exception("benchmark %s crashed", bench.name)
        return Result(bench.name, bench.reference_name, bench.target_ratio, error=f"{type(exc).__name__}: {exc}")
