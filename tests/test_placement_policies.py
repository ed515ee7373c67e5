"""place-bitlines' two policies column by column, and its budget boundary. A placement that is
valid but laid out by the other policy (or with a gap) passes the validity checks; the
mutation run (docs/mutation.md) found only those checks, so these state the layout itself."""

from __future__ import annotations

import numpy as np
import pytest

from cimc.errors import MappingError, UsageError
from cimc.ir import BitlinePlacement, WordlineTiling
from cimc.macro import MacroSpec
from cimc.passes import place_bitlines
from cimc.passes.manager import PassContext, run_passes
from cimc.passes.place_bitlines import PlaceBitlines
from tests.test_tiling_placement import compile_convs

MACRO = MacroSpec(name="t", wordlines=64, bitlines=8, adcs=8, bitlines_per_adc=1)


def _placements(policy: str) -> list[BitlinePlacement]:
    """Two one-segment convs: 6 columns (4·9 = 36 rows), then 4 columns (6·9 = 54 rows)."""
    g = compile_convs([(4, 6, 3, 1), (6, 4, 3, 1)], MACRO, policy=policy)
    return [n.ann[BitlinePlacement] for n in g.topo_order()]


def test_packed_placement_continues_on_the_next_free_bitline() -> None:
    first, second = _placements("packed")
    assert (first.first_column, second.first_column) == (0, 6)
    np.testing.assert_array_equal(first.macro, [0] * 6)
    np.testing.assert_array_equal(first.bitline, range(6))
    np.testing.assert_array_equal(second.macro, [0, 0, 1, 1])
    np.testing.assert_array_equal(second.bitline, [6, 7, 0, 1])


def test_aligned_placement_starts_each_layer_on_a_fresh_macro() -> None:
    first, second = _placements("aligned")
    assert (first.first_column, second.first_column) == (0, 8)
    np.testing.assert_array_equal(second.macro, [1] * 4)
    np.testing.assert_array_equal(second.bitline, range(4))


def test_a_budget_of_exactly_one_macro_is_accepted() -> None:
    g = compile_convs([(3, 8, 3, 1)], MacroSpec())
    out = run_passes(g, [PlaceBitlines()], PassContext(macro=MacroSpec(), bitline_budget=256))
    assert out.nodes[0].ann[BitlinePlacement].num_columns == 8


@pytest.mark.parametrize("policy", ["packed", "aligned"])
def test_placing_a_placed_graph_again_changes_nothing(policy: str) -> None:
    g = compile_convs([(4, 6, 3, 1), (6, 4, 3, 1)], MACRO, policy=policy)
    assert not PlaceBitlines(policy).run(g, PassContext(macro=MACRO)).modified


def test_an_unknown_policy_is_refused_before_the_pass_runs() -> None:
    g = compile_convs([(4, 6, 3, 1)], MACRO)
    with pytest.raises(UsageError, match="diagonal"):
        PlaceBitlines("diagonal").requires(g, PassContext(macro=MACRO))


def test_the_postcondition_catches_a_placement_outside_the_macro() -> None:
    g = compile_convs([(4, 6, 3, 1)], MACRO)
    p = g.nodes[0].ann[BitlinePlacement]
    g.nodes[0].ann.put(BitlinePlacement(p.first_column, p.macro, p.bitline + 5, p.wordline))
    with pytest.raises(MappingError, match="outside the macro"):
        PlaceBitlines().ensures(g, PassContext(macro=MACRO))


def test_a_stale_placement_with_the_same_first_column_is_replaced() -> None:
    """Same first column, other bitlines: the pass must notice and put the right layout back."""
    g = compile_convs([(4, 6, 3, 1)], MACRO)
    p = g.nodes[0].ann[BitlinePlacement]
    g.nodes[0].ann.put(BitlinePlacement(p.first_column, p.macro, p.bitline[::-1].copy(), p.wordline))
    result = PlaceBitlines().run(g, PassContext(macro=MACRO))
    assert result.modified
    np.testing.assert_array_equal(result.graph.nodes[0].ann[BitlinePlacement].bitline, range(6))


@pytest.mark.parametrize(("slices", "fits"), [(8, True), (9, False)])
def test_a_channel_may_take_every_bitline_of_a_macro_but_no_more(monkeypatch: pytest.MonkeyPatch, slices: int,
                                                                  fits: bool) -> None:
    """The S digit columns of a channel sit side by side on one macro of 8 bitlines: S = 8 fits."""
    g = compile_convs([(4, 6, 3, 1)], MACRO)
    monkeypatch.setattr(place_bitlines, "weight_slices", lambda node: slices)
    if fits:
        assert place_bitlines.place_layer(g.nodes[0], 0, 8).num_columns == 6 * 8
    else:
        with pytest.raises(MappingError, match="9 adjacent digit columns"):
            place_bitlines.place_layer(g.nodes[0], 0, 8)


def test_placement_arrays_are_read_only() -> None:
    p = compile_convs([(4, 6, 3, 1)], MACRO).nodes[0].ann[BitlinePlacement]
    assert not (p.macro.flags.writeable or p.bitline.flags.writeable or p.wordline.flags.writeable)


def test_placing_an_untiled_layer_names_the_missing_pass() -> None:
    g = compile_convs([(4, 6, 3, 1)], MACRO)
    g.nodes[0].ann.pop(WordlineTiling, None)
    with pytest.raises(MappingError, match="needs tile-wordlines first"):
        PlaceBitlines().requires(g, PassContext(macro=MACRO))


def test_overlap_check_sorts_each_bitline_by_start() -> None:
    """Disjoint spans listed out of order on one bitline are fine; an overlap on (macro 0,
    bitline 3) hidden between spans of macro 1 is found."""
    place_bitlines._check_overlap(np.array([[0, 3, 5, 8], [0, 3, 0, 3]]))
    with pytest.raises(MappingError, match="macro 0, bitline 3"):
        place_bitlines._check_overlap(np.array([[0, 3, 0, 10], [1, 3, 0, 10], [0, 3, 5, 8]]))


def test_overlap_message_names_the_overlapping_bitline_not_a_touching_one() -> None:
    """Bitline 1 holds two spans that touch (legal), bitline 2 two that overlap."""
    spans = np.array([[0, 1, 0, 5], [0, 1, 5, 9], [0, 2, 0, 5], [0, 2, 3, 7]])
    with pytest.raises(MappingError, match=r"macro 0, bitline 2$"):
        place_bitlines._check_overlap(spans)


def test_a_layer_starting_on_the_last_bitline_of_a_macro_records_that_column() -> None:
    _, second = (n.ann[BitlinePlacement] for n in compile_convs([(4, 7, 3, 1), (7, 4, 3, 1)], MACRO).nodes)
    assert second.first_column == 7
    np.testing.assert_array_equal(second.macro, [0, 1, 1, 1])


def test_the_missing_tiling_message_lists_five_layers_at_most() -> None:
    g = compile_convs([(4, 4, 1, 1)] * 6, MACRO)
    for node in g.nodes:
        node.ann.pop(WordlineTiling, None)
    with pytest.raises(MappingError) as info:
        PlaceBitlines().requires(g, PassContext(macro=MACRO))
    assert "c4" in str(info.value) and "c5" not in str(info.value)


def test_a_layer_after_one_that_ends_on_a_fresh_macro_starts_after_it() -> None:
    """Layer 2's two columns are (macro 0, bitline 7) and (macro 1, bitline 0): layer 3 starts
    at column 9, after the last column, not after the one before it."""
    g = compile_convs([(4, 7, 3, 1), (7, 2, 3, 1), (2, 3, 3, 1)], MACRO)
    assert [n.ann[BitlinePlacement].first_column for n in g.topo_order()] == [0, 7, 9]


def test_overlap_check_orders_by_macro_before_the_span_end() -> None:
    """Two overlapping spans of (macro 0, bitline 3) whose ends bracket one of macro 1."""
    with pytest.raises(MappingError, match="macro 0, bitline 3"):
        place_bitlines._check_overlap(np.array([[0, 3, 0, 10], [1, 3, 0, 11], [0, 3, 5, 12]]))
