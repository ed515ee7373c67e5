"""Graphs and helpers for the channel-morphing tests."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from cimc.frontend import export_onnx
from cimc.ir import Node, TensorInfo
from cimc.ir.graph import Graph
from cimc.morph.channel_groups import ChannelGroups
from tests.ir_builders import add_bn, add_conv, add_unary, graph_with_input
from tests.train_helpers import zoo_graph


def zoo(name: str) -> Graph:
    """The imported zoo model (seed 0), a fresh copy (the export is cached for the whole session,
    shared with the training tests)."""
    return zoo_graph(name).copy()


def _node(g: Graph, name: str, op: str, ins: tuple[str, ...], shape: tuple[int, ...], **attrs: object) -> str:
    out = f"{name}.y"
    g.tensors[out] = TensorInfo(out, shape)
    g.add_node(Node(name, op, ins, (out,), dict(attrs)))
    return out


def _cbr(g: Graph, x: str, cout: int, rng: np.random.Generator, name: str, group: int = 1) -> str:
    y = add_conv(g, x, cout, 3, pad=1, group=group, bias=True, rng=rng, name=name)
    return add_bn(g, y, rng, f"{name}.bn")


def mixed_graph(seed: int = 0) -> Graph:
    """conv(4→8) ─┬─ depthwise ─ Add ─ conv(→6) ─ Concat(s, b) ─ conv(→17) ─ Add(·, Pad(Concat)) ─ Relu ─
    MaxPool ─ Mul(const per channel) ─ Flatten ─ Gemm(→5): a depthwise tie, a residual Add, a Concat,
    a channel Pad shortcut, a per-channel constant and a Flatten→Gemm (multiplicity 9)."""
    rng = np.random.default_rng(seed)
    g = graph_with_input((2, 4, 6, 6))
    a = add_unary(g, "Relu", _cbr(g, "x", 8, rng, "c1"), "r1")
    d = _cbr(g, a, 8, rng, "dw", group=8)
    s = _node(g, "add1", "Add", (a, d), (2, 8, 6, 6))
    b = add_unary(g, "Relu", _cbr(g, s, 6, rng, "c2"), "r2")
    cat = _node(g, "cat", "Concat", (s, b), (2, 14, 6, 6), axis=1)
    c3 = _cbr(g, cat, 17, rng, "c3")
    pad = _node(g, "pad", "Pad", (cat,), (2, 17, 6, 6), pads=(0, 0, 0, 0, 0, 3, 0, 0), mode="constant", value=0.0)
    r = add_unary(g, "Relu", _node(g, "add2", "Add", (c3, pad), (2, 17, 6, 6)), "r3")
    p = _node(g, "pool", "MaxPool", (r,), (2, 17, 3, 3), kernel_shape=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0),
              dilations=(1, 1), ceil_mode=0)
    g.set_initializer("scale", rng.uniform(0.5, 1.5, (1, 17, 1, 1)).astype(np.float32))
    m = _node(g, "mul", "Mul", (p, "scale"), (2, 17, 3, 3))
    f = _node(g, "flat", "Flatten", (m,), (2, 153), axis=1)
    g.set_initializer("fc.w", rng.standard_normal((5, 153)).astype(np.float32))
    g.set_initializer("fc.b", rng.standard_normal(5).astype(np.float32))
    g.outputs.append(_node(g, "fc", "Gemm", (f, "fc.w", "fc.b"), (2, 5), alpha=1.0, beta=1.0, transA=0, transB=1))
    return g


def zero_classes(graph: Graph, groups: ChannelGroups, dead: np.ndarray) -> Graph:
    """A copy of ``graph`` where every BN sets γ = β = 0 on the classes in ``dead`` (bool per class)."""
    out = graph.copy()
    for bn in groups.bns:
        node = out.node(bn.node)
        mask = dead[groups.classes(bn.x)]
        for index in (1, 2):
            arr = np.array(out.initializers[node.inputs[index]])
            arr[mask] = 0.0
            out.set_initializer(node.inputs[index], arr)
    return out


def ort_outputs(graph: Graph, x: np.ndarray) -> np.ndarray:
    """The first output of ``graph`` exported to ONNX and run by onnxruntime (optimizations off)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(export_onnx(graph).SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {graph.inputs[0]: x})[0])


def random_input(graph: Graph, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(graph.shape(graph.inputs[0])).astype(np.float32)
