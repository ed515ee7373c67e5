"""Expansion search: the largest single ratio ``R`` whose widths fit the bitline budget.

Every changeable group of width ``n`` becomes ``round(n·R)`` wide (halves rounded up, at
least ``min_width``); fixed groups keep their width (paper Eq. 3–5, with the real segment
count of every layer instead of Eq. 3's ``floor(3·k²/wordlines)`` for the first one). The
paper increments ``R`` by 0.001 until the budget is exceeded. Here:

* every width is a non-decreasing function of ``R``; a layer's bitlines ``S(Cin)·Cout`` are
  non-decreasing in its widths (``S`` = segments of ``segment_bounds``), and so are the macros
  of either placement. Hence *fits(R)* holds on a prefix of the ``R`` axis, and
* ``step`` mode bisects the grid ``R = i/den``, ``den = round(1/step)`` (``R`` is kept as
  the exact fraction; ``i·step`` when ``1/step`` is an integer): the same answer as the
  linear 0.001-step scan (``scan_ratio``; tested) in ``O(log)`` evaluations, and it may also
  shrink (``R < 1``) when the pruned model is still too large;
* ``exact`` mode (``step=None``) bisects the sorted *breakpoints* ``(2k+1)/(2n)`` at which
  some width changes: the largest fitting widths over all real ``R``, never fewer bitlines
  than the grid's answer.

When no changeable group feeds a CIM layer (an MLP without ``--map-fc``), no ratio exceeds
the budget: that is a ``MappingError``, not an unbounded search.

The bitline counts come from ``BitlineModel``, which evaluates the compile path's own
select-cim geometry and ``tiling_for``; ``cimc.morph.structure`` checks the final graph
with ``model_cost`` itself.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cimc.errors import MappingError, UsageError
from cimc.morph.bitlines import BitlineModel, MorphCost
from cimc.morph.plan import ratio_widths


@dataclass(frozen=True, eq=False)
class Expansion:
    """The chosen ratio ``R = num/den``, the widths it gives and their cost."""

    num: int
    den: int
    widths: np.ndarray
    cost: MorphCost
    evaluations: int

    @property
    def ratio(self) -> float:
        return self.num / self.den


class _Probe:
    """Evaluates candidate widths, counting evaluations."""

    def __init__(self, model: BitlineModel, widths: np.ndarray, changeable: np.ndarray, budget: int,
                 min_width: int) -> None:
        self.model, self.widths, self.changeable = model, widths, changeable
        self.budget, self.min_width, self.count = budget, min_width, 0

    def widths_at(self, num: int, den: int) -> np.ndarray:
        return ratio_widths(self.widths, num, den, self.changeable, self.min_width)

    def smallest(self) -> np.ndarray:
        """Every changeable group at ``min_width``: the widths at ``R = 0``."""
        return np.where(self.changeable, self.min_width, self.widths)

    def cost(self, widths: np.ndarray) -> MorphCost:
        self.count += 1
        return self.model.evaluate(widths)

    def fits(self, widths: np.ndarray) -> bool:
        return self.cost(widths).fits(self.budget, self.model.macro)

    def fits_at(self, num: int, den: int) -> bool:
        return self.fits(self.widths_at(num, den))

    def result(self, num: int, den: int) -> Expansion:
        common = math.gcd(num, den)
        num, den = num // common, den // common
        widths = self.widths_at(num, den)
        return Expansion(num, den, widths, self.cost(widths), self.count)


def largest_true(pred: Callable[[int], bool], lo: int, hi: int) -> int:
    """Largest ``i`` in ``[lo, hi)`` with ``pred(i)``, given ``pred(lo)`` and ``not pred(hi)``,
    ``pred`` monotone (true then false) and ``0 ≤ lo < hi``. Bisection: each step halves
    ``hi − lo`` (rounding up), so ``⌈log2(hi − lo)⌉ ≤ hi.bit_length()`` steps end it; the loop is
    bounded by that count."""
    for _ in range(hi.bit_length()):
        if hi - lo <= 1:
            break
        mid = (lo + hi) // 2
        if pred(mid):
            lo = mid
        else:
            hi = mid
    return lo


def search_ratio(model: BitlineModel, widths: np.ndarray, changeable: np.ndarray, budget: int, *,
                 step: float | None = 1e-3, min_width: int = 1) -> Expansion:
    """The largest ``R`` (on the grid ``i/round(1/step)``, ``0 < step ≤ 1``, or exact with
    ``step=None``) that fits."""
    den = None if step is None else _grid(step)
    probe = _Probe(model, widths, changeable, budget, min_width)
    growable = changeable & (widths > 0)  # a group of width 0 stays at min_width at every R
    if not growable.any():
        return _no_growth(probe)
    if not probe.fits(probe.smallest() if den is None else probe.widths_at(1, den)):
        raise _infeasible(probe)
    if not (growable & model.feeds_cim(len(widths))).any():
        raise _unbounded(model)
    hi = 2  # smallest power of two R that no longer fits (bitlines grow with the fed widths)
    while probe.fits_at(hi, 1):
        hi *= 2
    if den is None:
        return _exact(probe, growable, hi)
    return probe.result(largest_true(lambda i: probe.fits_at(i, den), 1, hi * den), den)


def _grid(step: float) -> int:
    """The grid's denominator ``round(1/step)``, for ``0 < step ≤ 1``."""
    if not 0 < step <= 1:
        raise UsageError(f"expansion step must be in (0, 1], got {step}")
    return round(1 / step)


def _exact(probe: _Probe, growable: np.ndarray, r_max: int) -> Expansion:
    """Bisection over ``R = 0`` and the sorted breakpoints ``(2k+1)/(2n)`` below ``r_max``
    (``k < n·r_max``) of the growable widths ``n``: the answer lies below ``r_max``."""
    n = np.unique(probe.widths[growable])
    reps = n * r_max
    k = np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps)
    nums = np.concatenate([[0], 2 * k + 1])
    dens = np.concatenate([[1], 2 * np.repeat(n, reps)])
    order = np.argsort(nums / dens, kind="stable")
    nums, dens = nums[order], dens[order]
    i = largest_true(lambda j: probe.fits_at(int(nums[j]), int(dens[j])), 0, len(nums))
    return probe.result(int(nums[i]), int(dens[i]))


def _no_growth(probe: _Probe) -> Expansion:
    result = probe.result(1, 1)
    if not result.cost.fits(probe.budget, probe.model.macro):
        raise _infeasible(probe)
    return result


def _infeasible(probe: _Probe) -> MappingError:
    smallest = probe.model.evaluate(probe.smallest())
    need = max(smallest.bitlines, smallest.macros * probe.model.macro.bitlines)
    return MappingError(f"no channel ratio fits {probe.budget} bitlines: even with every changeable group "
                        f"at its minimum width the model needs {smallest.bitlines} bitlines",
                        hint=f"the smallest feasible --bl is {need}")


def _unbounded(model: BitlineModel) -> MappingError:
    fc = "" if model.map_fc else " (Gemm/MatMul layers are not mapped without --map-fc)"
    return MappingError(f"no changeable channel group feeds a CIM layer{fc}: widening changes no bitline, "
                        "so the budget bounds no channel ratio",
                        hint="add --map-fc to map the fully connected layers" if not model.map_fc
                        else "morph a model whose CIM layers have changeable channels, or leave out --bl")


def scan_ratio(model: BitlineModel, widths: np.ndarray, changeable: np.ndarray, budget: int, *,
               step: float = 1e-3, min_width: int = 1) -> Expansion:
    """The paper's linear scan from ``R = 1`` in ``step`` increments (downwards while it does
    not fit): the reference ``search_ratio`` must reproduce."""
    probe = _Probe(model, widths, changeable, budget, min_width)
    den = _grid(step)
    if probe.fits_at(den, den):
        return probe.result(next(i for i in itertools.count(den + 1) if not probe.fits_at(i, den)) - 1, den)
    below = next((i for i in range(den - 1, 0, -1) if probe.fits_at(i, den)), None)
    if below is None:
        raise _infeasible(probe)
    return probe.result(below, den)
