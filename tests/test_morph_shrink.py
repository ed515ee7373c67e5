"""The data-free shrink's alignment: kept widths rounded to whole wordline segments."""

from __future__ import annotations

import numpy as np
import pytest

from cimc.ir import Node, TensorInfo
from cimc.ir.annotations import CimLayer
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.mapping.tiling import tiling_for
from cimc.morph.channel_groups import analyze
from cimc.morph.costs import layer_terms
from cimc.morph.shrink import segment_channels
from tests.ir_builders import add_bn, add_conv, add_unary, graph_with_input

M64 = MacroSpec(name="m64", wordlines=64, bitlines=64, adcs=16, adc_bits=7, load_cycles=64)


def conv_flatten_gemm() -> Graph:
    """x(3, 6×6) → conv 3→8 (3×3) → BN → ReLU → Flatten (8·36) → Gemm(→4): the conv's 8
    channels reach only the Gemm, 36 features each."""
    rng = np.random.default_rng(0)
    g = graph_with_input((1, 3, 6, 6))
    y = add_unary(g, "Relu", add_bn(g, add_conv(g, "x", 8, 3, pad=1, rng=rng, name="c1"), rng, "b1"), "r1")
    g.tensors["flat"] = TensorInfo("flat", (1, 288))
    g.add_node(Node("flat", "Flatten", (y,), ("flat",), {"axis": 1}))
    g.set_initializer("w", rng.standard_normal((4, 288)).astype(np.float32))
    g.tensors["out"] = TensorInfo("out", (1, 4))
    g.add_node(Node("fc", "Gemm", ("flat", "w"), ("out",), {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1}))
    g.outputs.append("out")
    return g


@pytest.mark.parametrize("tiling", ["channel", "dense"])
def test_segment_unit_of_a_flattened_gemm_input_fills_whole_segments(tiling: str) -> None:
    """The compile path tiles a Gemm's features one row each (kernel 1×1), in either tiling: a
    channel of 36 features fills whole 64-row segments only in multiples of 64/gcd(64, 36) = 16
    channels. The unit was once ⌊64/36⌋ = 1 channel under channel tiling (36 of 64 rows)."""
    graph = conv_flatten_gemm()
    groups = analyze(graph)
    unit = segment_channels(groups, layer_terms(graph, groups, map_fc=True), M64, tiling)
    group = int(groups.class_group[groups.classes("flat")][0])
    assert unit[group] == 16
    bounds = tiling_for(CimLayer("gemm", 1, int(unit[group]) * 36, 4, (1, 1), 1), M64.wordlines, tiling).bounds
    assert set(np.diff(bounds).tolist()) == {64}


@pytest.mark.parametrize("tiling,want", [("channel", 7), ("dense", 64)])
def test_segment_unit_of_a_3x3_conv_input(tiling: str, want: int) -> None:
    """3×3 kernels on 64 wordlines: 7 whole channels per segment (channel tiling), or 64
    channels = 9 full segments of dense rows."""
    rng = np.random.default_rng(1)
    g = graph_with_input((1, 3, 6, 6))
    y = add_unary(g, "Relu", add_bn(g, add_conv(g, "x", 8, 3, pad=1, rng=rng, name="c1"), rng, "b1"), "r1")
    g.outputs.append(add_conv(g, y, 5, 3, pad=1, rng=rng, name="c2"))
    groups = analyze(g)
    unit = segment_channels(groups, layer_terms(g, groups), M64, tiling)
    assert unit[int(groups.class_group[groups.classes(y)][0])] == want
