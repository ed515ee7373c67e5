"""Phase 2's segmented convolution (``cimc.train.phase2``) against a per-segment reference.

Each segment's partial sum must equal the full convolution with the weight rows outside the
segment zeroed; the slot layout, the zero pad and the choice of the grouped-conv form are
pinned by their documented contracts. Written against the survivors of the mutation run
(docs/mutation.md, "`train/phase2.py`: the survivors of the measured `--all`").
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from cimc.mapping.tiling import segment_bounds
from cimc.train.phase2 import ConvGeometry, SegmentPlan, conv2d, slot_layout

pytestmark = pytest.mark.torch


def _reference(a: torch.Tensor, w: torch.Tensor, geom: ConvGeometry, bounds: np.ndarray) -> torch.Tensor:
    """``p_s`` = the grouped conv with the rows ``r = c·k + p`` outside ``[b_s, b_{s+1})`` zeroed,
    as ``(N, Ho, Wo, G, S, Cout_g)``."""
    cout, cin_g, kh, kw = w.shape
    rows = torch.arange(cin_g * kh * kw).reshape(cin_g, kh, kw)
    parts = []
    for lo, hi in itertools.pairwise(bounds):
        p = conv2d(a, w * ((rows >= int(lo)) & (rows < int(hi))), geom)
        n, _, ho, wo = p.shape
        parts.append(p.reshape(n, geom.groups, cout // geom.groups, ho, wo).permute(0, 3, 4, 1, 2))
    return torch.stack(parts, dim=4)


# (cin_g, kernel, groups, wordlines, mode, H, W, pads): non-square kernels and outputs, 2 groups.
LAYERS = {
    "dense_rows_split_channels": (3, (3, 2), 2, 4, "dense", 5, 7, (1, 0, 0, 1)),
    "channel_mode_narrow_last": (5, (1, 3), 2, 6, "channel", 3, 6, (0, 1, 0, 1)),
}


@pytest.mark.parametrize("method", ["conv", "bmm"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_partial_sums_equal_masked_conv_per_segment(name: str, method: str) -> None:
    cin_g, kernel, groups, wordlines, mode, h, w_, pads = LAYERS[name]
    gen = torch.Generator().manual_seed(3)
    a = torch.randint(-3, 4, (2, groups * cin_g, h, w_), generator=gen).float()
    w = torch.randint(-3, 4, (groups * 3, cin_g, *kernel), generator=gen).float()
    geom = ConvGeometry((1, 1), pads, (1, 1), groups)
    plan = SegmentPlan(cin_g, kernel, groups, wordlines, mode)
    bounds = segment_bounds(cin_g, kernel[0] * kernel[1], wordlines, mode)
    np.testing.assert_array_equal(plan.bounds, bounds)
    got = plan.partial_sums(a, w, geom, method)
    want = _reference(a, w, geom, bounds)
    assert got.shape == want.shape and want.shape[1] != want.shape[2]
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_slot_layout_narrow_segment_slot_is_zero_pad() -> None:
    index, mask = slot_layout(np.array([0, 2, 6]), 6, 1)
    np.testing.assert_array_equal(index, [[0, 1, 6, 6], [2, 3, 4, 5]])
    assert mask is None


def test_slot_layout_width_is_widest_segment() -> None:
    index, _ = slot_layout(np.array([0, 4, 8, 12]), 12, 1)
    assert index.shape == (3, 4)


def test_slot_layout_mask_stops_before_next_segment_row() -> None:
    index, mask = slot_layout(np.array([0, 4, 6]), 2, 3)
    np.testing.assert_array_equal(index, [[0, 1], [1, 2]])
    assert mask is not None
    np.testing.assert_array_equal(mask[0], [[True, True, True], [True, False, False]])
    np.testing.assert_array_equal(mask[1], [[False, True, True], [False, False, False]])


def test_gather_input_pad_slots_are_zero_in_every_group() -> None:
    cin_g, groups = 3, 2
    plan = SegmentPlan(cin_g, (3, 2), groups, 4, "dense")
    x = torch.arange(1, 1 + 2 * groups * cin_g * 4 * 5, dtype=torch.float32).reshape(2, groups * cin_g, 4, 5)
    index, _ = slot_layout(plan.bounds, cin_g, 6)
    padded = torch.cat([x.reshape(2, groups, cin_g, 4, 5), torch.zeros(2, groups, 1, 4, 5)], dim=2)
    want = padded[:, :, torch.from_numpy(index.reshape(-1))].reshape(2, -1, 4, 5)
    assert (index == cin_g).any()
    torch.testing.assert_close(plan.gather_input(x), want, rtol=0, atol=0)


def test_single_segment_gather_input_returns_input_without_copy() -> None:
    plan = SegmentPlan(2, (1, 1), 2, 8, "channel")
    x = torch.ones(1, 4, 3, 3).contiguous(memory_format=torch.channels_last)
    assert plan.gather_input(x) is x


def _method_used(monkeypatch: pytest.MonkeyPatch, plan: SegmentPlan, hw: tuple[int, int]) -> str:
    calls: list[int] = []
    original = SegmentPlan._bmm

    def spy(self, *args):  # type: ignore[no-untyped-def]
        calls.append(1)
        return original(self, *args)

    monkeypatch.setattr(SegmentPlan, "_bmm", spy)
    a = torch.ones(1, plan.groups * plan.cin_g, *hw)
    w = torch.ones(2 * plan.groups, plan.cin_g, 1, 1)
    plan.partial_sums(a, w, ConvGeometry((1, 1), (0, 0, 0, 0), (1, 1), plan.groups))
    return "bmm" if calls else "conv"


@pytest.mark.parametrize(("hw", "wordlines", "method"), [
    ((2, 2), 2, "bmm"),    # 4 pixels = BMM_MAX_PIXELS, 2 segments
    ((1, 3), 2, "bmm"),
    ((1, 5), 2, "conv"),   # 5 pixels
    ((2, 2), 4, "conv"),   # one segment: nothing to batch
])
def test_default_method_is_bmm_only_for_small_multi_segment_outputs(
        monkeypatch: pytest.MonkeyPatch, hw: tuple[int, int], wordlines: int, method: str) -> None:
    plan = SegmentPlan(4, (1, 1), 1, wordlines, "channel")
    assert (plan.segments > 1) == (wordlines == 2)
    assert _method_used(monkeypatch, plan, hw) == method
