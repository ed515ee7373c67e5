"""Expansion searches on a cost model small enough to check by hand: one layer whose bitlines
are the sum of the widths (no macro count). ``R`` gives the width ``round(n·R)``, halves up.
Each test states the answer and the evaluations it takes (``Expansion.evaluations`` is reported
by the morph)."""

from __future__ import annotations

import numpy as np
import pytest

from cimc.errors import MappingError, UsageError
from cimc.macro import MacroSpec
from cimc.morph.bitlines import MorphCost
from cimc.morph.expand import Expansion, scan_ratio, search_ratio


class SumModel:
    """Bitlines = Σ widths, zero macros; counts its evaluations."""

    def __init__(self, *, fed: bool = True, map_fc: bool = False) -> None:
        self.macro, self.map_fc, self.fed, self.calls = MacroSpec(), map_fc, fed, 0

    def evaluate(self, widths: np.ndarray) -> MorphCost:
        self.calls += 1
        return MorphCost(int(np.sum(widths)), 0, 0, 0.0, ())

    def feeds_cim(self, groups: int) -> np.ndarray:
        return np.full(groups, self.fed)


def search(widths: list[int], budget: int, step: float | None, min_width: int = 1) -> tuple[Expansion, int]:
    """The search over changeable groups of ``widths``, and the model's evaluation count."""
    model = SumModel()
    found = search_ratio(model, np.array(widths), np.ones(len(widths), dtype=bool), budget,  # type: ignore[arg-type]
                         step=step, min_width=min_width)
    return found, model.calls


def test_a_unit_step_search_to_five_takes_eight_evaluations() -> None:
    """Width 1, budget 5: R fits iff R ≤ 5. R = 1 checked; doubling 2, 4, 8 (8 fails); bisection
    of [1, 8) at 4, 6, 5; the result: 8 evaluations, each one counted once."""
    found, calls = search([1], 5, step=1)
    assert (found.num, found.den, found.widths.tolist()) == (5, 1, [5])
    assert found.evaluations == calls == 8


def test_a_ratio_is_its_numerator_over_its_denominator() -> None:
    """Width 2, budget 5, step 0.5: round(2R) ≤ 5 iff R < 2.75, so R = 5/2."""
    found, _ = search([2], 5, step=0.5)
    assert (found.num, found.den, found.ratio) == (5, 2, 2.5)


def test_a_budget_that_fits_only_r_1_on_a_unit_grid_takes_three_evaluations() -> None:
    """Width 3, budget 3: R = 1 fits, R = 2 does not, and [1, 2) needs no bisection step."""
    found, calls = search([3], 3, step=1)
    assert (found.num, found.den, found.widths.tolist()) == (1, 1, [3])
    assert found.evaluations == calls == 3


def test_a_budget_below_the_smallest_grid_ratio_is_refused_though_r_0_fits() -> None:
    """Width 3, budget 1: R = 0 (width 1) fits, the grid's smallest R = 1 (width 3) does not."""
    model, widths, changeable = SumModel(), np.array([3]), np.array([True])
    for find in (search_ratio, scan_ratio):
        with pytest.raises(MappingError, match="no channel ratio fits 1 bitlines") as info:
            find(model, widths, changeable, 1, step=1)  # type: ignore[arg-type]
        assert "smallest feasible --bl is 1" in str(info.value)


def test_the_paper_scan_shrinks_down_to_the_smallest_grid_ratio() -> None:
    """Width 4, budget 2, step 0.5: R = 1 (width 4) is too wide, R = 1/2 (width 2) fits. The scan
    evaluates R = 1, 1/2 and the result; the search R = 1/2 (its feasibility), R = 2 (doubling
    stops), R = 1 (bisection of [1, 4)) and the result."""
    widths, changeable = np.array([4]), np.array([True])
    for find, evaluations in ((search_ratio, 4), (scan_ratio, 3)):
        found = find(SumModel(), widths, changeable, 2, step=0.5)  # type: ignore[arg-type]
        assert (found.num, found.den, found.widths.tolist()) == (1, 2, [2])
        assert found.evaluations == evaluations


def test_the_paper_scan_steps_up_to_the_last_grid_ratio_that_fits() -> None:
    """Width 1, budget 5, step 0.5: round(R) ≤ 5 iff R < 5.5, so R = 10/2 = 5 (a grid of quarters
    would give 21/4). The scan evaluates R = 1, 3/2, …, 11/2 (10 ratios) and the result."""
    widths, changeable = np.array([1]), np.array([True])
    for find in (search_ratio, scan_ratio):
        found = find(SumModel(), widths, changeable, 5, step=0.5)  # type: ignore[arg-type]
        assert (found.num, found.den, found.widths.tolist()) == (5, 1, [5])
    assert found.evaluations == 11


def test_the_paper_scan_keeps_widths_at_least_one_by_default() -> None:
    """Widths (1, 4), budget 2, step 1/4: at R = 1/4 they are (round(0.25) → 1, 1); R = 1/2 gives
    (1, 2), too wide. A default minimum of 0 or 2 gives other widths or no answer."""
    found = scan_ratio(SumModel(), np.array([1, 4]), np.array([True, True]), 2, step=0.25)  # type: ignore[arg-type]
    assert (found.num, found.den, found.widths.tolist()) == (1, 4, [1, 1])


def test_exact_search_to_five_is_the_breakpoint_nine_halves_in_eight_evaluations() -> None:
    """Width 1, budget 5: the breakpoints below r_max = 8 are 0, 1/2, 3/2, …, 15/2; the largest
    that fits is 9/2 (round(4.5) = 5). R = 0 checked; doubling 2, 4, 8; bisection of the 9
    candidates at 7/2, 11/2, 9/2; the result."""
    found, calls = search([1], 5, step=None)
    assert (found.num, found.den, found.widths.tolist()) == (9, 2, [5])
    assert found.evaluations == calls == 8


def test_exact_answer_can_be_the_breakpoint_just_below_r_max() -> None:
    """Widths (2, 3), budget 19: R = 4 gives (8, 12) = 20, so r_max = 4; R = 15/4 (the width-2
    group's last breakpoint below 4) gives (round(7.5) = 8, round(11.25) = 11) = 19, and the next
    breakpoint 23/6 gives (8, 12)."""
    found, _ = search([2, 3], 19, step=None)
    assert (found.num, found.den, found.widths.tolist()) == (15, 4, [8, 11])


def test_exact_search_answers_r_0_when_only_zero_widths_fit() -> None:
    """With ``min_width=0`` a group may vanish: width 3, budget 0 fits only at R = 0 (the first
    breakpoint 1/6 already gives width 1). R = 0 checked; doubling stops at 2; bisection of the
    7 candidates at 7/6, 1/6; the result: 5 evaluations."""
    found, calls = search([3], 0, step=None, min_width=0)
    assert (found.num, found.den, found.widths.tolist()) == (0, 1, [0])
    assert found.evaluations == calls == 5


def test_a_step_over_1_is_a_usage_error() -> None:
    """``round(1/1.5) = 1`` would give a grid, but of steps 1, not 1.5."""
    with pytest.raises(UsageError, match="step"):
        search([1], 5, step=1.5)


@pytest.mark.parametrize(("map_fc", "hint"), [
    (False, "add --map-fc to map the fully connected layers"),
    (True, "morph a model whose CIM layers have changeable channels, or leave out --bl"),
])
def test_without_a_fed_group_the_hint_says_what_to_change(map_fc: bool, hint: str) -> None:
    model = SumModel(fed=False, map_fc=map_fc)
    with pytest.raises(MappingError, match="no changeable channel group feeds a CIM layer") as info:
        search_ratio(model, np.array([4]), np.array([True]), 10)  # type: ignore[arg-type]
    assert f"(hint: {hint})" in str(info.value)
