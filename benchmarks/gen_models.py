"""Synthetic ONNX models for the compile benchmarks: ResNet-50-like stacks scaled in width.

``resnet50_like(width)`` builds the ResNet-50 topology (stem 7×7 conv, bottleneck stages of
3, 4, 6, 3 blocks, expansion 4, projection shortcuts, global pool, 1000-way Gemm) with every
channel count multiplied by ``width``, BatchNormalization after every conv (as an
un-fused export has it) and random float32 weights. Parameters grow as ``width²``: width 1
gives 25.6 M parameters (ResNet-50: 25.5 M weights + BN statistics), so the width for a given
size is about ``√(params / 25.6 M)``; ``width_for`` finds it by bisection on a dry build.

Files are written with ``onnx.helper`` directly (no torch); weights are drawn from a
seeded generator, so the same width gives byte-identical files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STAGES = ((3, 64), (4, 128), (6, 256), (3, 512))
EXPANSION = 4


Fill = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]


@dataclass
class _Builder:
    """Accumulates nodes and initializers; names are sequential and deterministic. A ``dry``
    builder draws no weights and only counts parameters (to pick a width quickly)."""

    rng: np.random.Generator
    dry: bool = False
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    inits: list[onnx.TensorProto] = field(default_factory=list)
    params: int = 0
    count: int = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def tensor(self, prefix: str, shape: tuple[int, ...], fill: Fill) -> str:
        name = self.name(prefix)
        self.params += math.prod(shape)
        if not self.dry:
            self.inits.append(numpy_helper.from_array(fill(self.rng, shape).astype(np.float32), name))
        return name

    def conv_bn(self, x: str, cin: int, cout: int, k: int, stride: int, relu: bool) -> str:
        std = math.sqrt(2.0 / (cin * k * k))
        w = self.tensor("w", (cout, cin, k, k), lambda r, s: r.standard_normal(s, dtype=np.float32) * std)
        y = self.name("conv")
        self.nodes.append(helper.make_node("Conv", [x, w], [y], name=y, kernel_shape=[k, k],
                                           strides=[stride, stride], pads=[k // 2] * 4))
        return self.bn_relu(y, cout, relu)

    def bn_relu(self, x: str, c: int, relu: bool) -> str:
        fills: list[Fill] = [lambda r, s: r.uniform(0.5, 1.5, s), lambda r, s: r.normal(0, 0.1, s),
                             lambda r, s: r.normal(0, 0.1, s), lambda r, s: r.uniform(0.5, 1.5, s)]
        names = [self.tensor(p, (c,), f) for p, f in zip(("gamma", "beta", "mean", "var"), fills, strict=True)]
        y = self.name("bn")
        self.nodes.append(helper.make_node("BatchNormalization", [x, *names], [y], name=y, epsilon=1e-5))
        return self.op("Relu", [y]) if relu else y

    def op(self, op: str, inputs: list[str], **attrs: Any) -> str:
        y = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [y], name=y, **attrs))
        return y


def _bottleneck(b: _Builder, x: str, cin: int, mid: int, stride: int) -> str:
    out = mid * EXPANSION
    y = b.conv_bn(x, cin, mid, 1, 1, relu=True)
    y = b.conv_bn(y, mid, mid, 3, stride, relu=True)
    y = b.conv_bn(y, mid, out, 1, 1, relu=False)
    short = x if (cin == out and stride == 1) else b.conv_bn(x, cin, out, 1, stride, relu=False)
    return b.op("Relu", [b.op("Add", [y, short])])


def _body(b: _Builder, width: float, classes: int) -> str:
    """Stem, the four bottleneck stages, pooling and the classifier; returns the output name."""
    c = max(1, round(64 * width))
    x = b.op("MaxPool", [b.conv_bn("input", 3, c, 7, 2, relu=True)], kernel_shape=[3, 3], strides=[2, 2],
             pads=[1, 1, 1, 1])
    for index, (blocks, base) in enumerate(STAGES):
        mid = max(1, round(base * width))
        for block in range(blocks):
            x = _bottleneck(b, x, c, mid, 2 if index > 0 and block == 0 else 1)
            c = mid * EXPANSION
    flat = b.op("Flatten", [b.op("GlobalAveragePool", [x])], axis=1)
    fc_w = b.tensor("fc_w", (classes, c), lambda r, s: r.standard_normal(s, dtype=np.float32) / math.sqrt(c))
    fc_b = b.tensor("fc_b", (classes,), lambda r, s: np.zeros(s, np.float32))
    b.nodes.append(helper.make_node("Gemm", [flat, fc_w, fc_b], ["logits"], name="fc", transB=1))
    return "logits"


def resnet50_like(width: float, *, image: int = 224, classes: int = 1000, seed: int = 0) -> onnx.ModelProto:
    """The ResNet-50 topology with channel counts scaled by ``width`` (at least 1 channel)."""
    b = _Builder(np.random.default_rng(seed))
    out = _body(b, width, classes)
    graph = helper.make_graph(
        b.nodes, f"resnet50_x{width:.3f}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, image, image])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, classes])], initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="cimc-bench")
    model.ir_version = 8
    return model


def params_at(width: float, classes: int = 1000) -> int:
    """Parameters (all initializer elements) of ``resnet50_like(width)``, without drawing weights."""
    b = _Builder(np.random.default_rng(0), dry=True)
    _body(b, width, classes)
    return b.params


def width_for(params: float) -> float:
    """The width multiplier whose model has about ``params`` parameters (bisection on width)."""
    lo, hi = 0.01, 8.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if params_at(mid) < params else (lo, mid)
    return hi


def write_model(folder: Path, params: float, *, image: int = 224, seed: int = 0) -> tuple[Path, int]:
    """Write the ResNet-50-like model of about ``params`` parameters taking ``image``² inputs;
    returns (path, exact parameter count)."""
    width = width_for(params)
    path = Path(folder) / f"resnet50_like_{params / 1e6:g}M_{image}px.onnx"
    onnx.save(resnet50_like(width, image=image, seed=seed), path)
    return path, params_at(width)
