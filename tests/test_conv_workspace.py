"""The reference convolution (and the CIM layers' exact partial sums) bound their im2col
workspace: a convolution whose windows exceed ``CONV_WORKSPACE_BYTES`` runs in chunks of images,
or of output rows of one image, so a batch of 224×224 images no longer forms one 1.85 GB matrix.
A convolution that fits is one GEMM, as before; chunks compute every output element's dot
product in the same K order, so they agree with it to float32 rounding (OpenBLAS's blocking may
differ in the last bit); the partial sums are exact integers, so their chunks change no bit."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from cimc.mapping.tiling import segment_bounds
from cimc.ops import windows
from cimc.ops.windows import conv2d, conv_chunks
from cimc.quant import reference
from cimc.quant.cim_layer import CimSpec
from cimc.quant.reference import segment_sums

#: (input shape, weight shape, strides, pads (t, l, b, r), dilations, group)
CASES = [
    ((5, 3, 19, 17), (8, 3, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((3, 6, 15, 15), (9, 2, 3, 5), (1, 2), (2, 1, 0, 3), (2, 1), 3),
    ((4, 8, 17, 19), (8, 1, 3, 3), (2, 2), (1, 0, 1, 2), (1, 1), 8),
    ((2, 16, 13, 11), (32, 16, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((1, 4, 9, 30), (5, 4, 2, 7), (3, 1), (0, 3, 1, 3), (1, 2), 1),
]


def direct(x: np.ndarray, w: np.ndarray, b: np.ndarray, strides: tuple[int, ...], pads: tuple[int, ...],
           dilations: tuple[int, ...], group: int) -> np.ndarray:
    """The definition, in float64, one kernel tap at a time (independent of im2col)."""
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    cout, cg, kh, kw = w.shape
    ho = (xp.shape[2] - (kh - 1) * dilations[0] - 1) // strides[0] + 1
    wo = (xp.shape[3] - (kw - 1) * dilations[1] - 1) // strides[1] + 1
    y = np.zeros((x.shape[0], cout, ho, wo)) + b.reshape(1, -1, 1, 1)
    per = cout // group
    for i in range(kh):
        for j in range(kw):
            tap = xp[:, :, i * dilations[0]::strides[0], j * dilations[1]::strides[1]][:, :, :ho, :wo]
            for g in range(group):
                y[:, g * per:(g + 1) * per] += np.einsum("nchw,oc->nohw", tap[:, g * cg:(g + 1) * cg],
                                                         w[g * per:(g + 1) * per, :, i, j].astype(np.float64))
    return y


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("budget", [1, 2000, 40_000, 2**30])
def test_chunked_conv_computes_the_convolution(case: tuple, budget: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every budget (one row a chunk, rows of one image, several images, the whole batch) gives
    the convolution's definition within float32 rounding, with an odd batch and odd row tails."""
    xs, ws, strides, pads, dil, group = case
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    monkeypatch.setattr(windows, "CONV_WORKSPACE_BYTES", budget)
    got = conv2d(x, w, b, strides, pads, dil, group)
    want = direct(x, w, b, strides, pads, dil, group)
    assert got.dtype == np.float32 and got.flags.c_contiguous and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("case", CASES)
def test_a_conv_that_fits_is_one_chunk(case: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """Below the budget the result does not depend on the budget: one GEMM, bit for bit."""
    xs, ws, strides, pads, dil, group = case
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    first = conv2d(x, w, None, strides, pads, dil, group)
    monkeypatch.setattr(windows, "CONV_WORKSPACE_BYTES", 2**40)
    np.testing.assert_array_equal(conv2d(x, w, None, strides, pads, dil, group), first)


@pytest.mark.parametrize(("n", "ho", "row_bytes", "budget"),
                         [(7, 5, 10, 1000), (7, 5, 10, 120), (7, 5, 10, 49), (3, 11, 10, 30), (2, 4, 100, 1)])
def test_chunks_cover_every_output_row_once_within_the_budget(n: int, ho: int, row_bytes: int, budget: int) -> None:
    chunks = conv_chunks(n, ho, row_bytes, budget)
    seen = np.zeros((n, ho), dtype=int)
    for (n0, n1), (h0, h1) in chunks:
        seen[n0:n1, h0:h1] += 1
        assert (n1 - n0) * (h1 - h0) * row_bytes <= max(budget, row_bytes)
    assert (seen == 1).all()
    assert (len(chunks) == 1) == (n * ho * row_bytes <= budget)


def test_conv_workspace_stays_near_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A conv whose im2col matrix is 18 MiB peaks at its input, output and about one 1 MiB
    chunk (plus one image padded): forming the whole matrix, as before, fails this bound."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 16, 64, 64)).astype(np.float32)  # 2 MiB
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    monkeypatch.setattr(windows, "CONV_WORKSPACE_BYTES", 2**20)
    whole = 8 * 64 * 64 * 16 * 9 * 4
    tracemalloc.start()
    try:
        y = conv2d(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert y.shape == (8, 16, 64, 64)
    assert peak < y.nbytes + 4 * 2**20 < whole, f"peak {peak} bytes; the whole im2col is {whole}"


@pytest.mark.parametrize(("cin", "k", "wordlines", "mode", "group", "stride", "pads"), [
    (20, 3, 32, "channel", 1, 1, (1, 1, 1, 1)), (20, 3, 32, "dense", 2, 2, (0, 1, 2, 1)),
    (4, 3, 64, "channel", 4, 1, (1, 1, 1, 1)), (6, 5, 16, "dense", 1, 3, (2, 0, 2, 1))])
def test_chunked_segment_sums_change_no_bit(cin: int, k: int, wordlines: int, mode: str, group: int, stride: int,
                                            pads: tuple[int, int, int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """The exact integer partial sums of a CIM layer, in chunks of one output row, of rows of an
    image, of images, or whole: the same bits (and an odd batch of odd-sized images)."""
    rng = np.random.default_rng(cin + k)
    cout, cin_g = 4 * group, cin // group
    bounds = tuple(int(b) for b in segment_bounds(cin_g, k * k, wordlines, mode))
    w = rng.integers(-7, 8, (cout, cin_g, k, k)).astype(np.float32)
    x = rng.integers(0, 16, (3, cin, 13, 11)).astype(np.float32)
    spec = CimSpec("t", "conv", w, np.zeros(cout, np.float32), group, (stride, stride), pads, (1, 1), bounds,
                   None, None)
    whole = segment_sums(x, w, spec)
    for budget in (1, 3000, 60_000):
        monkeypatch.setattr(reference, "CONV_WORKSPACE_BYTES", budget)
        np.testing.assert_array_equal(segment_sums(x, w, spec), whole)
    assert whole.shape[:3] == (3, len(bounds) - 1, cout)


def test_partial_sums_workspace_stays_near_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CIM layer's exact partial sums (6 segments × 64 channels: the sums outweigh the windows)
    peak at their output and about one 1 MiB chunk: the whole windows, copies and sums at once
    are 14 MiB more (an estimate of a row's bytes that subtracts the sums gives that)."""
    rng = np.random.default_rng(3)
    cin, k, cout = 16, 3, 64
    bounds = tuple(int(b) for b in segment_bounds(cin, k * k, 32, "channel"))
    w = rng.integers(-7, 8, (cout, cin, k, k)).astype(np.float32)
    x = rng.integers(0, 16, (4, cin, 32, 32)).astype(np.float32)
    spec = CimSpec("t", "conv", w, np.zeros(cout, np.float32), 1, (1, 1), (1, 1, 1, 1), (1, 1), bounds, None, None)
    monkeypatch.setattr(reference, "CONV_WORKSPACE_BYTES", 2**20)
    tracemalloc.start()
    try:
        p = segment_sums(x, w, spec)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert p.shape == (4, 6, cout, 32, 32)
    assert peak - p.nbytes < 4 * 2**20, f"peak {peak} bytes beside the {p.nbytes} of the sums"
