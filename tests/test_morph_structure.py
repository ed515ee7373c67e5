"""``morph_structure``: the morphed graph fits the budget, and the cost model counts it."""

from __future__ import annotations

import pytest

from cimc.macro import MacroSpec
from cimc.morph.planning import MorphOptions
from cimc.morph.structure import morph_structure
from tests.morph_builders import zoo

pytestmark = pytest.mark.torch  # the zoo

PAPER = MacroSpec()


def test_structure_morph_fits_and_is_counted_by_the_cost_model() -> None:
    result = morph_structure(zoo("resnet18"), PAPER, 4096, MorphOptions(keep=0.2))
    assert result.cost.bitlines <= 4096 and result.cost.fits_on_chip
    assert result.report.after.bitlines == result.cost.bitlines
    assert result.report.pruned.bitlines < result.report.after.bitlines  # pruned, then expanded to the budget
    assert result.report.before.bitlines == 46_400  # the paper's ResNet18 baseline (Table V)
