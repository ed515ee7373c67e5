"""``model.cim.onnx``'s grouped convolution with its channels per group padded to a SIMD block
(``segments.aligned_width``): zero weights on the extra channels, every partial sum unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from cimc.ops.windows import conv2d
from cimc.quant.segments import aligned_width, segment_conv


@pytest.mark.parametrize(("width", "blocks", "want"), [
    (29, (16, 8), 32), (13, (16, 8), 16), (26, (16, 8), 32), (20, (16, 8), 24), (3, (16, 8), 3), (29, (), 29)])
def test_aligned_width(width: int, blocks: tuple[int, ...], want: int) -> None:
    assert aligned_width(width, blocks) == want


def sums(conv, x: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    gathered = x if conv.index is None else np.take(x, conv.index, axis=1)
    return conv2d(gathered, conv.weight, None, (1, 1), (1, 1, 1, 1), (1, 1), conv.groups)


def test_padded_segments_give_the_same_partial_sums() -> None:
    """52 input channels over 4 segments of 117 rows (13 channels of 3×3): padded to 16 channels
    per segment, the sums of all 4 segments are bit-identical."""
    rng = np.random.default_rng(0)
    cin, cout, k = 52, 24, 9
    codes = rng.integers(-7, 8, (cout, cin * k)).astype(np.float32)
    bounds = np.arange(0, cin * k + 1, 13 * k)
    plain = segment_conv(codes, bounds, cin, 1, (3, 3))
    padded = segment_conv(codes, bounds, cin, 1, (3, 3), align=(16, 8))
    assert plain.weight.shape[1] == 13 and padded.weight.shape[1] == 16
    x = rng.integers(0, 16, (2, cin, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(sums(padded, x), sums(plain, x))


@pytest.mark.parametrize(("cin_g", "groups", "bounds", "align", "gathered"), [
    (5, 2, (0, 20, 45), (16, 8), True),  # dense tiling: segment 1 starts inside channel 2's kernel
    (6, 1, (0, 27, 54), (), False),  # whole channels: the gather is the identity
    (6, 2, (0, 54), (16, 8), False),  # one segment of every channel, two groups
    (3, 3, (0, 7, 14, 27), (8,), True),  # three segments cutting kernels, three groups
    (10, 1, (0, 60, 90), (8,), True),  # 7 channels padded to 8: segment 1's window runs past cin_g
])
def test_segment_weights_are_the_cells_by_definition(cin_g: int, groups: int, bounds: tuple[int, ...],
                                                     align: tuple[int, ...], gathered: bool) -> None:
    """``weight[(s, o), j, i1, i2]`` is ``codes[o, r]`` for the row ``r = (c_lo(s) + j)·9 + 3·i1 + i2``
    inside segment ``s`` and a channel below ``cin_g``, else 0, built cell by cell here; the
    codes' integer dtype is kept (no float copy of the layer)."""
    rng = np.random.default_rng(len(bounds))
    cout = 4 * groups
    codes = rng.integers(-7, 8, (cout, cin_g * 9)).astype(np.int8)
    conv = segment_conv(codes, bounds, cin_g, groups, (3, 3), align=align)
    segments, width = len(bounds) - 1, conv.weight.shape[1]
    want = np.zeros((segments * cout, width, 3, 3), np.int8)
    for s in range(segments):
        first = bounds[s] // 9
        for o in range(cout):
            for j in range(width):
                for tap in range(9):
                    r = (first + j) * 9 + tap
                    if bounds[s] <= r < bounds[s + 1] and first + j < cin_g:
                        want[s * cout + o, j, tap // 3, tap % 3] = codes[o, r]
    assert conv.weight.dtype == np.int8 and conv.groups == segments * groups
    assert (conv.index is not None) == gathered  # no Gather node where it would copy the input as it is
    np.testing.assert_array_equal(conv.weight, want)
