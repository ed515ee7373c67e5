"""Negative tests of the placement checks: every violation that place-bitlines' own check
(``check_placement``) and ``cimc validate``'s layout and placement checks can report is
produced by one tampering and reported with its message (a clean case beside it passes)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cimc.check.validate import validate_build
from cimc.errors import MappingError
from cimc.ir import BitlinePlacement
from cimc.macro import MacroSpec
from cimc.passes.place_bitlines import check_placement
from tests.map_builds import copy_build, read_json, rehash, write_json
from tests.test_tiling_placement import compile_convs

MACRO = MacroSpec(name="t", wordlines=32, bitlines=16, adcs=16, bitlines_per_adc=1)


@pytest.fixture()
def placed():  # type: ignore[no-untyped-def]
    """c0: 3×3 conv 2→4 (18 rows, 1 segment), c1: 1×1 conv 4→6 (4 rows), packed on 16 bitlines."""
    graph = compile_convs([(2, 4, 3, 1), (4, 6, 1, 1)], MACRO)
    check_placement(graph, MACRO.wordlines, MACRO.bitlines)
    return graph


def _tamper(graph, name: str, **change: Any) -> None:  # type: ignore[no-untyped-def]
    p = graph.node(name).ann[BitlinePlacement]
    arrays = {"macro": p.macro.copy(), "bitline": p.bitline.copy(), "wordline": p.wordline.copy()}
    for key, edit in change.items():
        arrays[key] = edit(arrays[key])
    graph.node(name).ann.put(BitlinePlacement(p.first_column, arrays["macro"], arrays["bitline"], arrays["wordline"]))


def _set(index: int, value: int) -> Callable[[np.ndarray], np.ndarray]:
    def edit(a: np.ndarray) -> np.ndarray:
        a[index] = value
        return a
    return edit


def _drop_last(a: np.ndarray) -> np.ndarray:
    return a[:-1]


@pytest.mark.parametrize("change,message", [
    ({"macro": _drop_last, "bitline": _drop_last, "wordline": _drop_last}, "places 3 columns, needs 4"),
    ({"bitline": _set(0, -1)}, "outside the macro"),
    ({"bitline": _set(0, 16)}, "outside the macro"),
    ({"wordline": _set(0, -1)}, "outside the macro"),
    ({"wordline": _set(0, 32 - 18 + 1)}, "outside the macro"),  # 18 rows from wordline 15 pass wordline 31
])
def test_place_bitlines_check_catches_each_violation(placed, change, message) -> None:  # type: ignore[no-untyped-def]
    _tamper(placed, "c0", **change)
    with pytest.raises(MappingError, match=message):
        check_placement(placed, MACRO.wordlines, MACRO.bitlines)


def test_a_span_ending_on_the_last_wordline_is_inside(placed) -> None:  # type: ignore[no-untyped-def]
    _tamper(placed, "c0", wordline=_set(0, 32 - 18))
    check_placement(placed, MACRO.wordlines, MACRO.bitlines)


def test_stacked_spans_share_a_bitline_only_when_disjoint(placed) -> None:  # type: ignore[no-untyped-def]
    """c1's first column (4 rows) moved onto c0's last bitline (3): below c0's 18 rows it is fine,
    one wordline into them it shares cells — and the message names that bitline."""
    _tamper(placed, "c1", bitline=_set(0, 3), wordline=_set(0, 18))
    check_placement(placed, MACRO.wordlines, MACRO.bitlines)
    _tamper(placed, "c1", wordline=_set(0, 17))
    with pytest.raises(MappingError, match=r"share cells on macro 0, bitline 3$"):
        check_placement(placed, MACRO.wordlines, MACRO.bitlines)


# --- cimc validate: the layout and placement checks on a tampered tiny_cnn build ----------------

def _layer(i: int, edit: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    return lambda layout: edit(layout["layers"][i])


def _owner(bitline: int, **values: int) -> Callable[[dict[str, Any]], None]:
    def edit(layout: dict[str, Any]) -> None:
        for key, value in values.items():
            layout["macros"][0][key][bitline] = value
    return edit


def _copy_owner(src: int, dst: int) -> Callable[[dict[str, Any]], None]:
    def edit(layout: dict[str, Any]) -> None:
        owner = layout["macros"][0]
        for key in ("layer", "segment", "out_channel", "wordline_start", "slice"):
            owner[key][dst] = owner[key][src]
    return edit


def _renumber(layer: dict[str, Any]) -> None:
    layer["segments"][0]["index"] = 1


def _overlap_segments(layer: dict[str, Any]) -> None:
    layer["segments"][0]["row_stop"] -= 9


def _wrong_wordline_map(layer: dict[str, Any]) -> None:
    layer["segments"][0]["wordline_channel"][10] += 1


def _more_columns(layer: dict[str, Any]) -> None:
    layer["columns"] += 1


def _wrong_first_column(layer: dict[str, Any]) -> None:
    layer["first_column"] += 1


def _slice_swap(layout: dict[str, Any]) -> None:
    owner = layout["macros"][0]
    owner["slice"][0], owner["slice"][1] = 1, 0


# (build options, tampering of layout.json, check, message)
LAYOUT_CASES: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], None], str, str]] = {
    "span past the last wordline": ({}, _owner(0, wordline_start=240), "layout", r"holds wordlines 240…266, outside"),
    "span before wordline 0": ({}, _owner(0, wordline_start=-1), "layout", r"holds wordlines -1…25, outside"),
    "segments misnumbered": ({}, _layer(0, _renumber), "layout", "segments not numbered"),
    "segments not a partition": ({}, _layer(2, _overlap_segments), "layout", "do not partition rows"),
    "wordline map wrong": ({}, _layer(0, _wrong_wordline_map), "layout",
                           "1 wordline map entries wrong, first at row 10"),
    "column count recorded wrong": ({}, _layer(1, _more_columns), "layout", "41 columns recorded"),
    "output channel out of range": ({}, _owner(3, out_channel=8), "layout", "names output channel 8 of a layer with 8"),
    "weight slice of an unsliced layer": ({}, _owner(3, slice=1), "layout",
                                          "names weight slice 1, the layer has w_slices = 1"),
    "column claimed twice, another missing": ({}, _owner(3, out_channel=2), "layout",
                                              r"1 column\(s\) .* not placed, 1 placed more than once"),
    "column placed twice": ({}, _copy_owner(10, 200), "layout",
                            r"0 column\(s\) .* not placed, 1 placed more than once"
                            r" \(e.g. segment 0, output channel 2\)"),
    "digit columns not adjacent": ({"w_bits": 8}, _slice_swap, "layout",
                                   "the digit columns of a channel must be adjacent"),
    "first column moved": ({}, _layer(1, _wrong_first_column), "placement", "first column 9, packed placement gives 8"),
    "column off wordline 0": ({}, _owner(3, wordline_start=1), "placement", "1 column.* not where packed placement"),
}


@pytest.mark.parametrize("case", sorted(LAYOUT_CASES))
def test_validate_catches_each_layout_violation(tmp_path: Path, case: str) -> None:
    options, tamper, check, message = LAYOUT_CASES[case]
    folder = copy_build(tmp_path / "b", "tiny_cnn", **options)
    assert validate_build(folder).ok
    layout = read_json(folder, "layout.json")
    tamper(layout)
    write_json(folder, "layout.json", layout)
    rehash(folder)
    found = [v for v in validate_build(folder).violations if v.check == check]
    assert any(re.search(message, v.message) for v in found), found
