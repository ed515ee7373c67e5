"""tile-wordlines as a pass: its precondition refuses an unknown mode before running, a first
run reports a change, and its postcondition catches a segment taller than the array (found
unchecked by the mutation run, docs/mutation.md)."""

from __future__ import annotations

import pytest

from cimc.errors import UsageError
from cimc.ir import WordlineTiling
from cimc.macro import MacroSpec
from cimc.passes.manager import PassContext, run_passes
from cimc.passes.pipelines import check_order
from cimc.passes.select_cim import SelectCim
from cimc.passes.tile_wordlines import TileWordlines
from tests.test_tiling_placement import compile_convs

CTX = PassContext(macro=MacroSpec())


def test_an_unknown_tiling_mode_is_refused_before_the_pass_runs() -> None:
    g = compile_convs([(8, 16, 3, 1)], MacroSpec())
    with pytest.raises(UsageError, match="diagonal"):
        TileWordlines("diagonal").requires(g, CTX)


def test_a_first_tiling_reports_the_graph_modified() -> None:
    g = compile_convs([(8, 16, 3, 1)], MacroSpec())
    selected = run_passes(g, [SelectCim()], CTX)
    for node in selected.nodes:
        node.ann.pop(WordlineTiling, None)
    result = TileWordlines().run(selected, CTX)
    assert result.modified and result.graph.nodes[0].ann[WordlineTiling].bounds == (0, 72)


def test_the_postcondition_catches_a_segment_taller_than_the_array() -> None:
    g = compile_convs([(8, 16, 3, 1)], MacroSpec())
    g.nodes[0].ann.put(WordlineTiling("dense", 512, (0, 72, 372)))
    with pytest.raises(AssertionError, match="exceeds 256 wordlines"):
        TileWordlines().ensures(g, CTX)


@pytest.mark.parametrize(("order", "missing"), [(("tile-wordlines",), "select-cim"),
                                                (("select-cim", "place-bitlines"), "tile-wordlines")])
def test_a_pipeline_without_the_pass_a_mapping_pass_needs_is_refused(order: tuple[str, ...], missing: str) -> None:
    with pytest.raises(UsageError, match=f"needs '{missing}' before it"):
        check_order(order)
