"""The model the scale-to-shift tests share, and the pass run alone on it.

``two_conv_cnn``: conv ``c1`` (bias) → ``between(graph, c1's output)`` → conv ``c2`` → relu →
global average pool → flatten → gemm ``fc``, 8 channels of 8×8, weights drawn from one seeded
generator in that order; ``between`` builds what joins ``c1`` to ``c2`` (a fold target, an
activation, a Clip…) and returns ``c2``'s input."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cimc.ir import verify
from cimc.ir.graph import Graph
from cimc.passes.manager import PassContext
from cimc.passes.scale_to_shift import ScaleToShift
from tests.cim_helpers import add_gemm, add_node
from tests.ir_builders import add_conv, add_unary, graph_with_input

#: builds what joins c1's output (its second argument) to c2; returns c2's input
Between = Callable[[Graph, str], str]


def two_conv_cnn(between: Between, seed: int) -> Graph:
    """The shared model (module doc), its weights drawn from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    g = graph_with_input((1, 3, 8, 8))
    y = add_conv(g, "x", 8, 3, pad=1, bias=True, rng=rng, name="c1")
    y = add_unary(g, "Relu", add_conv(g, between(g, y), 8, 3, pad=1, rng=rng, name="c2"), "r2")
    y = add_node(g, "GlobalAveragePool", [y], (1, 8, 1, 1), "gap")
    y = add_node(g, "Flatten", [y], (1, 8), "fl", axis=1)
    g.outputs.append(add_gemm(g, y, 4, rng, "fc"))
    return g


def shifted(graph: Graph, ctx: PassContext) -> Graph:
    """``graph`` after scale-to-shift alone (8 calibration images), verified."""
    p = ScaleToShift(calib_size=8)
    p.requires(graph, ctx)
    out = p.run(graph, ctx).graph
    verify(out)
    return out


def batch() -> np.ndarray:
    """The seeded calibration/test batch of ``two_conv_cnn`` (6 images, 3×8×8)."""
    return np.random.default_rng(7).standard_normal((6, 3, 8, 8)).astype(np.float32)
