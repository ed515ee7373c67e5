"""quantize: its place in a pipeline, and edge cases left unasserted by the other quantize tests
(each found as a surviving mutant of ``scripts/mutate.py``)."""

from __future__ import annotations

import pytest

from cimc.errors import UsageError
from cimc.passes.manager import PassContext
from cimc.passes.pipelines import check_order
from cimc.passes.quantize import Quantize
from tests.cim_helpers import SMALL
from tests.ir_builders import graph_with_input


def test_a_pipeline_running_quantize_before_tile_wordlines_is_refused() -> None:
    with pytest.raises(UsageError, match="'quantize' needs 'tile-wordlines' before it"):
        check_order(("select-cim", "quantize", "tile-wordlines"))
    check_order(("select-cim", "tile-wordlines", "quantize"))


@pytest.mark.parametrize("option", ["granularity", "weight_method"])
def test_an_unknown_granularity_or_weight_method_is_refused_before_any_work(option: str) -> None:
    graph = graph_with_input((1, 3, 8, 8))
    with pytest.raises(UsageError, match=option.replace("_", "[-_]")):
        Quantize(**{option: "nonsense"}).requires(graph, PassContext(macro=SMALL))
