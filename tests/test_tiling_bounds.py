"""Wordline tiling corner cases the mutation run found untested (docs/mutation.md): a kernel
several times taller than the array, and kernels that are not square."""

from __future__ import annotations

from cimc.ir.annotations import CimLayer
from cimc.mapping.tiling import segment_bounds, tiling_for


def test_a_kernel_three_arrays_tall_splits_every_channel_into_three_pieces() -> None:
    """k = 9 rows on 4 wordlines: pieces [0, 4), [4, 8), [8, 9) in each of the 2 channels."""
    assert segment_bounds(2, 9, 4).tolist() == [0, 4, 8, 9, 13, 17, 18]


def test_tiling_of_a_wide_kernel_counts_kh_times_kw_rows_per_channel() -> None:
    """A 1×3 kernel over 4 channels is 12 rows, 3 per channel: 7 wordlines hold 2 whole
    channels (6 rows) per segment; a tiling that took kh·kh = 1 or kw·kw = 9 rows per
    channel would split elsewhere."""
    layer = CimLayer(kind="conv", groups=1, rows=12, cout=8, kernel=(1, 3), out_pixels=10)
    assert tiling_for(layer, 7, "channel").bounds == (0, 6, 12)
    tall = CimLayer(kind="conv", groups=1, rows=12, cout=8, kernel=(3, 1), out_pixels=10)
    assert tiling_for(tall, 7, "channel").bounds == (0, 6, 12)
