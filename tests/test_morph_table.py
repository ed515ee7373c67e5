"""The README's structure-only morph table: every budget met, macro usage at least the paper's
(Tables III–V), counted by the compile path's cost model on the rewritten graphs."""

from __future__ import annotations

import pytest

from cimc.morph.paper import BUDGETS, PAPER, markdown, usage_rows
from tests.morph_builders import zoo

pytestmark = pytest.mark.torch  # the zoo or the training hook


def check(name: str) -> None:
    rows = usage_rows({name: zoo(name)})
    assert [r.budget for r in rows] == list(BUDGETS)
    for r in rows:
        assert r.fits and r.bitlines <= r.budget, r
        assert r.usage >= r.paper_usage, f"{name} at {r.budget}: {100 * r.usage:.2f}% < paper {r.paper_usage:.2%}"
    table = markdown(rows)
    assert table.count(f"| {name} |") == len(BUDGETS)


def test_vgg9_meets_the_paper_at_every_budget() -> None:
    check("vgg9")


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in PAPER if n != "vgg9"])
def test_vgg16_and_resnet18_meet_the_paper_at_every_budget(name: str) -> None:
    check(name)
