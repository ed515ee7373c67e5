"""Expansion search edge cases: no changeable group (the widths stay, or the budget is refused),
and the chosen ratio reported in lowest terms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cimc.errors import MappingError
from cimc.morph.expand import search_ratio
from tests.test_morph_expand import PAPER, _vgg9_case

pytestmark = pytest.mark.torch  # the zoo


@pytest.mark.parametrize("step", [1e-3, None])
def test_without_a_changeable_group_the_widths_stay_when_they_fit(step: float | None) -> None:
    model, widths, changeable = _vgg9_case(0.5)
    fixed = np.zeros_like(changeable)
    need = model.evaluate(widths)
    budget = max(need.bitlines, need.macros * PAPER.bitlines)  # the bitlines of the macros it takes
    got = search_ratio(model, widths, fixed, budget, step=step)
    assert got.ratio == 1 and got.widths.tolist() == widths.tolist()
    assert got.cost.bitlines == need.bitlines and got.cost.fits(budget, PAPER)


def test_without_a_changeable_group_a_budget_too_small_is_refused() -> None:
    model, widths, changeable = _vgg9_case(0.5)
    need = model.evaluate(widths).bitlines  # fewer than that cannot fit
    with pytest.raises(MappingError, match=f"no channel ratio fits {need // 2} bitlines"):
        search_ratio(model, widths, np.zeros_like(changeable), need // 2)


@pytest.mark.parametrize("budget", [1000, 4096])
def test_the_chosen_ratio_is_in_lowest_terms(budget: int) -> None:
    model, widths, changeable = _vgg9_case(0.5)
    got = search_ratio(model, widths, changeable, budget)
    assert math.gcd(got.num, got.den) == 1 and got.den <= 1000
    assert got.widths.tolist() == search_ratio(model, widths, changeable, budget, step=1e-3).widths.tolist()


def test_changeable_groups_all_at_width_zero_do_not_grow() -> None:
    """Groups pruned to width 0 scale to 0 at any ratio: nothing can grow, as without a
    changeable group (ratio 1, widths at their minimum; not the unbounded-search error)."""
    model, widths, changeable = _vgg9_case(0.5)
    zeroed = np.where(changeable, 0, widths)
    got = search_ratio(model, zeroed, changeable, 4096)
    assert got.ratio == 1 and got.widths.tolist() == np.where(changeable, 1, widths).tolist()
