"""Design points: grid and random expansion of the axes, and each point's key.

* grid: the Cartesian product of the axes in config order, the last axis varying fastest;
  ``N = Π |axis|`` points.
* random (``samples = n``, ``seed``): when every axis is a list, ``min(n, N)`` distinct grid
  points drawn without replacement (``numpy.random.default_rng(seed)``); with ``{min, max}``
  ranges, ``n`` independent draws (integers uniform in ``[min, max]``, floats uniform and
  rounded to 6 significant digits so the JSON stays short and stable).

A point is ``fixed ∪ axis values``. Its key is ``sha256(canonical JSON of {point, settings,
model identity (kind, name, sha256 of the ONNX), cimc version})``; canonical = sorted keys, no
spaces, ASCII. Any change of an axis value, the model file or the tool version gives a new key.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from typing import Any

import numpy as np

from cimc import __version__
from cimc.errors import ResourceLimitError
from cimc.limits import SWEEP_POINTS
from cimc.sweep.config import Range, SweepConfig

Point = dict[str, Any]


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def point_key(point: Point, settings: dict[str, Any], model: dict[str, Any], version: str = __version__) -> str:
    """The point's identity in the results file (see the module docstring)."""
    identity = {"kind": model["kind"], "name": model["name"], "sha256": model["sha256"]}
    doc = {"point": point, "settings": settings, "model": identity, "cimc": version}
    return hashlib.sha256(canonical(doc).encode()).hexdigest()


def count(config: SweepConfig) -> int:
    """How many points ``expand`` gives, in Python integers (nothing enumerated)."""
    sizes = [len(v) for v in config.axes.values() if isinstance(v, list)]
    if config.mode == "grid":
        return math.prod(sizes)
    n = config.samples or 1
    return min(n, math.prod(sizes)) if len(sizes) == len(config.axes) else n


def expand(config: SweepConfig) -> list[Point]:
    """All points of the sweep, in a deterministic order; a sweep of more than ``SWEEP_POINTS``
    points is refused before any is made (``count``)."""
    total = count(config)
    if total > SWEEP_POINTS:
        raise ResourceLimitError(f"the sweep has {total:,} points, more than the limit of {SWEEP_POINTS:,}",
                                 hint="use fewer axis values, or mode = \"random\" with samples = N")
    names = list(config.axes)
    if config.mode == "grid":
        combos = list(itertools.product(*(_values(config.axes[n]) for n in names)))
    else:
        combos = _random(config, names)
    return [{**config.fixed, **dict(zip(names, combo, strict=True))} for combo in combos]


def _values(axis: list[Any] | Range) -> list[Any]:
    if isinstance(axis, Range):  # the config refuses ranges in grid mode
        raise TypeError("a {min, max} range cannot be enumerated")
    return axis


def _random(config: SweepConfig, names: list[str]) -> list[tuple[Any, ...]]:
    rng = np.random.default_rng(config.seed)
    n = config.samples or 1
    lists = [config.axes[name] for name in names]
    if all(isinstance(v, list) for v in lists):
        sizes = [len(v) for v in lists]  # type: ignore[arg-type]
        total = math.prod(sizes)
        if total >= 2**62:  # beyond numpy's integers: distinct points drawn axis by axis
            return _distinct_draws(rng, lists, n)  # type: ignore[arg-type]
        picks = np.sort(rng.choice(total, size=min(n, total), replace=False))
        return [tuple(v[i] for v, i in zip(lists, np.unravel_index(p, sizes), strict=True))  # type: ignore[index]
                for p in picks] if sizes else [()]
    return [tuple(_draw(rng, axis) for axis in lists) for _ in range(n)]


def _distinct_draws(rng: np.random.Generator, lists: list[list[Any]], n: int) -> list[tuple[Any, ...]]:
    """``n`` distinct points of a grid of at least 2^62 points (``n`` ≤ ``SWEEP_POINTS``, so a
    repeat is rare and the loop short), in grid order."""
    seen: dict[tuple[int, ...], None] = {}
    while len(seen) < n:
        seen.setdefault(tuple(int(rng.integers(len(v))) for v in lists), None)
    return [tuple(v[i] for v, i in zip(lists, index, strict=True)) for index in sorted(seen)]


def _draw(rng: np.random.Generator, axis: list[Any] | Range) -> Any:
    if isinstance(axis, list):
        return axis[int(rng.integers(len(axis)))]
    if axis.integer:
        return int(rng.integers(int(axis.low), int(axis.high) + 1))
    return float(f"{rng.uniform(axis.low, axis.high):.6g}")
