"""The op set of the IR: arity and required attributes for every op the frontend accepts.

The frontend normalises ONNX into one canonical form per op: constant operands that
ONNX passes as inputs in newer opsets (Clip min/max, Pad pads, Reshape shape, Slice
starts/ends/axes/steps) become attributes; ``auto_pad`` is resolved into explicit pads;
negative axes are made non-negative. The exporter writes them back as opset-17 ONNX.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OpSpec:
    """How many inputs (``min_in``..``max_in``) and outputs an op has, and its required attrs."""

    min_in: int
    max_in: int
    outputs: int = 1
    attrs: tuple[str, ...] = ()


_POOL = ("kernel_shape", "strides", "pads")
OPS: dict[str, OpSpec] = {
    "Conv": OpSpec(2, 3, attrs=("strides", "pads", "dilations", "group")),
    "Gemm": OpSpec(2, 3, attrs=("alpha", "beta", "transA", "transB")),
    "MatMul": OpSpec(2, 2),
    "BatchNormalization": OpSpec(5, 5, attrs=("epsilon",)),
    "Relu": OpSpec(1, 1),
    "Clip": OpSpec(1, 1, attrs=("min", "max")),
    "LeakyRelu": OpSpec(1, 1, attrs=("alpha",)),
    "Sigmoid": OpSpec(1, 1),
    "MaxPool": OpSpec(1, 1, attrs=(*_POOL, "dilations", "ceil_mode")),
    "AveragePool": OpSpec(1, 1, attrs=(*_POOL, "ceil_mode", "count_include_pad")),
    "GlobalAveragePool": OpSpec(1, 1),
    "Add": OpSpec(2, 2),
    "Mul": OpSpec(2, 2),
    "Sum": OpSpec(1, 2**16),
    "Concat": OpSpec(1, 2**16, attrs=("axis",)),
    "Flatten": OpSpec(1, 1, attrs=("axis",)),
    "Reshape": OpSpec(1, 1, attrs=("shape",)),
    "Transpose": OpSpec(1, 1, attrs=("perm",)),
    "Softmax": OpSpec(1, 1, attrs=("axis",)),
    "LRN": OpSpec(1, 1, attrs=("alpha", "beta", "bias", "size")),
    "Pad": OpSpec(1, 1, attrs=("pads", "mode", "value")),
    "Slice": OpSpec(1, 1, attrs=("starts", "ends", "axes", "steps")),
}

#: Ops removed at import (they compute the identity at inference time).
IDENTITY_OPS = frozenset({"Identity", "Dropout"})
