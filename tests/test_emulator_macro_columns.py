"""``cimc.emulator.layers.macro_columns`` on a hand-made macro: a short segment near the bottom
of the array reads its own rows and zeros past them, whatever the cells below hold."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from cimc.emulator.layers import macro_columns


def test_a_short_segment_at_the_bottom_reads_zeros_past_its_rows() -> None:
    """Segment 0 (3 rows) on bitline 0 from wordline 1 ends on the last wordline; segment 1
    (1 row) on bitline 1 from wordline 2 of the 4-wordline array: its window of ``Rmax = 3``
    wordlines runs past the last one (clipped to it, the padded reads masked), and the cell
    under its row (9, another layer's) is not read."""
    macros = np.array([[[1, 0], [2, 0], [3, 5], [7, 9]]], dtype=np.int8)  # (M, WL, BL)
    segments = [SimpleNamespace(row_start=0, row_stop=3), SimpleNamespace(row_start=3, row_stop=4)]
    layer = SimpleNamespace(segments=segments, cout=1)
    # layer, segment, out channel, first wordline, slice of each bitline: (5, M, BL)
    owner = np.array([[[0, 0]], [[0, 1]], [[0, 0]], [[1, 2]], [[0, 0]]], dtype=np.int64)
    columns = macro_columns(macros, owner, 0, layer, 1)  # type: ignore[arg-type]
    np.testing.assert_array_equal(columns, [[[2, 3, 7]], [[5, 0, 0]]])
