"""tile-wordlines and place-bitlines: segment bounds, tiled execution, placement properties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cimc.errors import MappingError, UsageError
from cimc.ir import BitlinePlacement, WordlineTiling
from cimc.macro import MacroSpec
from cimc.mapping.tiling import segment_bounds
from cimc.ops.windows import conv2d
from cimc.passes.manager import PassContext, run_passes
from cimc.passes.place_bitlines import PlaceBitlines, check_placement
from cimc.passes.select_cim import SelectCim
from cimc.passes.tile_wordlines import TileWordlines
from tests.ir_builders import add_conv, graph_with_input


def test_paper_segments_28_channels_for_3x3() -> None:
    assert segment_bounds(56, 9, 256).tolist() == [0, 252, 504]
    assert segment_bounds(64, 9, 256).tolist() == [0, 252, 504, 576]
    assert segment_bounds(3, 9, 256).tolist() == [0, 27]


def test_dense_and_oversized_kernels() -> None:
    assert segment_bounds(64, 9, 256, "dense").tolist() == [0, 256, 512, 576]
    # an 11x11 kernel (121 rows) on 64 wordlines splits inside every channel
    assert segment_bounds(2, 121, 64).tolist() == [0, 64, 121, 185, 242]
    with pytest.raises(UsageError):
        segment_bounds(2, 9, 64, "diagonal")


@pytest.mark.parametrize("mode", ["channel", "dense"])
@pytest.mark.parametrize("group", [1, 2])
def test_tiled_convolution_sums_to_untiled(mode: str, group: int) -> None:
    """Σ_s conv(x restricted to segment s rows, W restricted likewise) == conv(x, W)."""
    rng = np.random.default_rng(0)
    cin, cout, k = 20, 6, 3
    x = rng.standard_normal((1, cin, 7, 7)).astype(np.float32)
    w = rng.standard_normal((cout, cin // group, k, k)).astype(np.float32)
    ref = conv2d(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), group)
    bounds = segment_bounds(cin // group, k * k, 32, mode)
    assert len(bounds) > 2
    total = np.zeros_like(ref)
    for lo, hi in itertools.pairwise(bounds):
        mask = np.zeros(cin // group * k * k, dtype=np.float32)
        mask[lo:hi] = 1
        total += conv2d(x, w * mask.reshape(1, cin // group, k, k), None, (1, 1), (1, 1, 1, 1), (1, 1), group)
    np.testing.assert_allclose(total, ref, rtol=1e-4, atol=1e-4)


def compile_convs(specs: list[tuple[int, int, int, int]], macro: MacroSpec, mode: str = "channel",
                  policy: str = "packed"):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    cin0 = specs[0][0]
    g = graph_with_input((1, cin0, 6, 6))
    x = "x"
    for i, (_, cout, k, group) in enumerate(specs):
        x = add_conv(g, x, cout, k, group=group, pad=k // 2, rng=rng, name=f"c{i}")
    g.outputs.append(x)
    ctx = PassContext(macro=macro)
    return run_passes(g, [SelectCim(), TileWordlines(mode), PlaceBitlines(policy)], ctx)


conv_specs = st.lists(
    st.tuples(st.sampled_from([1, 2, 4]), st.integers(1, 12), st.sampled_from([1, 3, 5]), st.sampled_from([1, 2])),
    min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(conv_specs, st.sampled_from([8, 16, 64]), st.sampled_from([4, 8, 32]),
       st.sampled_from(["channel", "dense"]), st.sampled_from(["packed", "aligned"]))
def test_every_weight_placed_once_in_bounds(specs, wordlines, bitlines, mode, policy) -> None:  # type: ignore[no-untyped-def]
    fixed, cin = [], specs[0][0] * 2
    for _, cout, k, group in specs:  # even channel counts are divisible by every group (1 or 2)
        fixed.append((cin, cout * 2, k, group))
        cin = cout * 2
    macro = MacroSpec(name="t", wordlines=wordlines, bitlines=bitlines, adcs=bitlines, bitlines_per_adc=1)
    g = compile_convs(fixed, macro, mode, policy)
    check_placement(g, wordlines, bitlines)
    for node in g.nodes:
        tiling, place = node.ann[WordlineTiling], node.ann[BitlinePlacement]
        assert tiling.activated_wordlines() <= wordlines
        cells = np.repeat(tiling.segment_rows(), g.shape(node.inputs[1])[0]).sum()
        assert cells == int(np.prod(g.shape(node.inputs[1]))), "every weight exactly once"
        assert len(set(zip(place.macro.tolist(), place.bitline.tolist(), strict=False))) == place.num_columns


def test_second_run_unmodified_and_overlap_detected() -> None:
    macro = MacroSpec()
    g = compile_convs([(64, 32, 3, 1), (32, 16, 3, 1)], macro)
    ctx = PassContext(macro=macro)
    assert not TileWordlines().run(g, ctx).modified
    assert not PlaceBitlines().run(g, ctx).modified
    second = g.nodes[1]
    first = g.nodes[0].ann[BitlinePlacement]
    second.ann.put(BitlinePlacement(0, first.macro[:32], first.bitline[:32], first.wordline[:32]))
    with pytest.raises(MappingError, match="share cells"):
        check_placement(g, 256, 256)


def test_budget_below_one_macro_names_smallest_feasible() -> None:
    g = compile_convs([(3, 8, 3, 1)], MacroSpec())
    with pytest.raises(MappingError) as info:
        run_passes(g, [PlaceBitlines()], PassContext(macro=MacroSpec(), bitline_budget=100))
    assert "--bl is 256" in str(info.value)
