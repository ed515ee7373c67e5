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
