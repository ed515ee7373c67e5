"""The emulator's fast paths give the bits of the plain computation: segments split in parts
(``cimc.emulator.layers.segment_parts``), ``1 × 1`` kernels read as rows of the codes
without a gather (``cimc.emulator.run.patches``), and CIM outputs kept pixel-major for the
digital ops of ``LAYOUT_FREE`` (every other op gets C-contiguous inputs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cimc.emulator.layers as emulator_layers
import cimc.emulator.run as emulator_run
from cimc.emulator import Emulator
from cimc.ir.graph import Graph
from tests.cim_helpers import add_node, assert_same_run, assert_three_way, compile_ir, write
from tests.ir_builders import add_conv, add_unary, graph_with_input

pytestmark = pytest.mark.torch  # the compile helpers import the zoo


def residual_net(batch: int = 2, h: int = 6) -> Graph:
    """3×3 conv (40 channels) → relu, then a 1×1 conv (stride 2) added to 3×3 conv → relu →
    1×1 conv (stride 2), → relu → 1×1 conv → GAP: 40 and 360 wordlines cut in segments of
    unequal rows on the 32-wordline test macro, 1×1 layers of stride 1 and 2 and a residual
    Add of pixel-major outputs."""
    rng = np.random.default_rng(3)
    g = graph_with_input((batch, 3, h, h))
    y = add_unary(g, "Relu", add_conv(g, "x", 64, 3, pad=1, rng=rng, name="c1"), "r1")
    a = add_conv(g, y, 16, 1, stride=2, rng=rng, name="c2")
    b = add_unary(g, "Relu", add_conv(g, y, 40, 3, pad=1, rng=rng, name="c3"), "r3")
    b = add_conv(g, b, 16, 1, stride=2, rng=rng, name="c4")
    y = add_unary(g, "Relu", add_node(g, "Add", [a, b], g.shape(a), "add"), "r4")
    y = add_conv(g, y, 8, 1, rng=rng, name="c5")
    g.outputs.append(add_node(g, "GlobalAveragePool", [y], (batch, 8, 1, 1), "gap"))
    return g


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Graph]:
    graph, ctx = compile_ir(residual_net())
    return write(graph, ctx, tmp_path_factory.mktemp("parts") / "b"), graph


def _x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)


def test_fast_paths_equal_onnxruntime_and_the_reference(compiled: tuple[Path, Graph]) -> None:
    """The net exercises every fast path (two segment parts, a 1×1 layer read without a gather,
    pixel-major Relu/Add), and every layer's codes, sums and outputs equal onnxruntime on
    ``model.cim.onnx`` and the reference bit for bit; so do the outputs of a run without traces."""
    build, graph = compiled
    emu = Emulator.open(build)
    assert any(len(layer.parts) == 2 for layer in emu.layers)
    assert any(layer.kernel == (1, 1) for layer in emu.layers)
    reference = assert_three_way(build, graph, _x())
    plain = emu.run(_x())
    for name, value in reference.outputs.items():
        np.testing.assert_array_equal(plain.outputs[name], value, err_msg=name)
        assert plain.outputs[name].flags.c_contiguous


def test_two_parts_equal_one_padded_part(compiled: tuple[Path, Graph], monkeypatch: pytest.MonkeyPatch) -> None:
    """All segments in one part padded to the longest (the layout before the split) gives the
    same ADC codes, in segment order, sums and outputs as the split in two parts."""
    build, _ = compiled
    split = Emulator.open(build)
    original = emulator_layers.segment_parts

    def one_part(columns: np.ndarray, rows: np.ndarray, *args: Any) -> Any:
        return original(columns, np.full_like(rows, rows.max()), *args)

    monkeypatch.setattr(emulator_layers, "segment_parts", one_part)
    padded = Emulator.open(build)
    assert all(len(layer.parts) == 1 for layer in padded.layers)
    assert any(len(layer.parts) == 2 for layer in split.layers)
    assert_same_run(split.run(_x(), record=True), padded.run(_x(), record=True))


def test_one_by_one_rows_are_views_of_the_codes(compiled: tuple[Path, Graph]) -> None:
    """A stride-1 unpadded 1×1 layer reads its rows from the pixel-major codes: a part of one
    segment over every channel is the codes themselves (no copy), any other part a copy of the
    channels of its wordlines, equal to the gather of the general path."""
    emu = Emulator.open(compiled[0])
    layer = next(layer for layer in emu.layers if layer.kernel == (1, 1))
    layer = dataclasses.replace(layer, strides=(1, 1))
    cin = max(int(part.taps[0].max()) for part in layer.parts) + 1
    codes = np.random.default_rng(1).integers(-7, 8, (6, 5, 2, cin)).astype(np.float32)  # (H, W, N, C)
    x = codes.transpose(2, 3, 0, 1)  # (N, C, H, W) view, pixel-major memory
    pixels = codes.reshape(-1, cin)
    whole = dataclasses.replace(layer.parts[0], taps=tuple(np.arange(cin).reshape(1, 1, cin) * (k == 0)
                                                           for k in range(3)),
                                weight=np.zeros((1, 1, 1, cin), np.float32), channels=(0, cin))
    for part in (*layer.parts, whole):
        (rows,) = emulator_run.patches(dataclasses.replace(layer, parts=(part,)), x)
        np.testing.assert_array_equal(rows, pixels[:, part.taps[0]].transpose(1, 2, 0, 3))
        assert np.shares_memory(rows, codes) == (part.channels == (0, cin) and part.taps[0].shape[:2] == (1, 1))


def test_order_sensitive_digital_ops_get_contiguous_inputs(compiled: tuple[Path, Graph],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """GlobalAveragePool (a sum) receives C-contiguous inputs; Relu and Add may receive the CIM
    layers' pixel-major views (in the reference's kernels or in place), and do."""
    seen: dict[str, list[bool]] = {}
    original = emulator_run.digital_op

    def spy(op: str, args: list[np.ndarray], attrs: Any) -> np.ndarray:
        seen.setdefault(op, []).extend(a.flags.c_contiguous for a in args)
        return original(op, args, attrs)

    def in_place_spy(op: str) -> Any:
        kernel = emulator_run.IN_PLACE[op]

        def run(args: list[np.ndarray], out: np.ndarray) -> np.ndarray:
            seen.setdefault(op, []).extend(a.flags.c_contiguous for a in args)
            return kernel(args, out)
        return run

    monkeypatch.setattr(emulator_run, "digital_op", spy)
    for op in emulator_run.IN_PLACE:
        monkeypatch.setitem(emulator_run.IN_PLACE, op, in_place_spy(op))
    Emulator.open(compiled[0], lanes=1).run(_x())  # one lane: a batch of one sample has contiguous views
    assert all(seen["GlobalAveragePool"])
    assert not all(seen["Relu"] + seen["Add"])


def test_feed_order_puts_channels_innermost_for_whole_channels() -> None:
    """Eight channels per segment of a 3×3 kernel (``MIN_PIXEL_RUN``): wordline ``r = c·9 + i·3
    + j`` is fed at ``(i·3 + j)·8 + c``, and so for a 1 × 3 kernel; a part of thinner runs (two
    channels, a depthwise layer's one), whose segments cut a channel, or that gathers its taps,
    keeps its wordlines' order and is fed channel-major."""
    def part(rows: int, channels: tuple[int, int] | None) -> Any:
        taps = tuple(np.zeros((2, 1, rows), np.int64) for _ in range(3))
        return emulator_layers.SegmentPart(np.arange(2), np.zeros((2, 1, 4, rows), np.float32), taps, channels)

    assert emulator_layers.MIN_PIXEL_RUN == 8
    for kernel in ((3, 3), (1, 3)):
        kh, kw = kernel
        whole = part(8 * kh * kw, (0, 16))
        assert emulator_layers.whole_channels(whole, kernel) == 8 and emulator_layers.pixel_rows(whole, kernel)
        order = emulator_layers.feed_order(whole, kernel)
        c, i, j = np.meshgrid(np.arange(8), np.arange(kh), np.arange(kw), indexing="ij")
        fed_at = ((i * kw + j) * 8 + c).reshape(-1)  # where wordline r = (c·kh + i)·kw + j is fed
        np.testing.assert_array_equal(order[fed_at], np.arange(8 * kh * kw))
    thin, cut, gathered = part(18, (0, 4)), part(16, (0, 4)), part(72, None)
    assert emulator_layers.whole_channels(thin, (3, 3)) == 2 and emulator_layers.whole_channels(cut, (3, 3)) is None
    for other in (thin, cut, gathered):
        assert not emulator_layers.pixel_rows(other, (3, 3))
        np.testing.assert_array_equal(emulator_layers.feed_order(other, (3, 3)), np.arange(other.weight.shape[-1]))
    assert emulator_layers.whole_channels(part(5, (0, 10)), (1, 1)) == 5
    assert emulator_layers.whole_channels(part(24, (0, 16)), (1, 3)) == 8  # not 24: the area is kh·kw


def test_pixel_major_rows_of_three_by_three_segments_are_exact(tmp_path: Path) -> None:
    """On a 256-wordline macro, 3×3 layers of 16 and 64 input channels cut into segments of 16,
    then 28, 28 and 8 channels (``MIN_PIXEL_RUN`` or more: fed pixel-major, channel innermost;
    a part of two segments), padded, of stride 1 and 2: the emulator, onnxruntime on
    ``model.cim.onnx`` and the reference agree bit for bit, with and without lanes."""
    from cimc.macro import MacroSpec

    rng = np.random.default_rng(6)
    g = graph_with_input((3, 16, 7, 7))
    y = add_unary(g, "Relu", add_conv(g, "x", 64, 3, pad=1, rng=rng, name="c1"), "r1")
    y = add_unary(g, "Relu", add_conv(g, y, 24, 3, stride=2, pad=1, rng=rng, name="c2"), "r2")
    g.outputs.append(add_node(g, "GlobalAveragePool", [y], (3, 24, 1, 1), "gap"))
    wide = MacroSpec(name="wide-test", wordlines=256, bitlines=256, adcs=64, load_cycles=256)
    graph, ctx = compile_ir(g, wide)
    build = write(graph, ctx, tmp_path / "b")
    layers = Emulator.open(build).layers
    pixel = [(layer.kernel, emulator_layers.whole_channels(part, layer.kernel), len(part.segments))
             for layer in layers for part in layer.parts if emulator_layers.pixel_rows(part, layer.kernel)]
    assert sorted(pixel) == [((3, 3), 8, 1), ((3, 3), 16, 1), ((3, 3), 28, 2)]
    x = np.random.default_rng(7).standard_normal((3, 16, 7, 7)).astype(np.float32)
    assert_three_way(build, graph, x)
    np.testing.assert_array_equal(Emulator.open(build, lanes=1).run(x).outputs["gap.y"],
                                  Emulator.open(build, lanes=3).run(x).outputs["gap.y"])
