"""Per-op conversion of ONNX nodes into the IR's canonical attributes (see ``cimc.ir.ops``).

Each rule takes the ONNX node and an ``OpContext`` (static shapes and constant values of the
folded, shape-inferred model) and returns the IR data inputs and plain-Python attributes:
constant operands become attributes, ``auto_pad`` becomes explicit pads, defaults are filled
in, and axes are made non-negative.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from cimc.errors import InvalidModelError, UnsupportedError

Attrs = dict[str, Any]


@dataclass
class OpContext:
    """What the rules may look up: static shapes and initializers (decoded lazily)."""

    shapes: dict[str, tuple[int, ...]]
    initializers: dict[str, onnx.TensorProto]
    _values: dict[str, np.ndarray] = field(default_factory=dict)

    def shape(self, name: str) -> tuple[int, ...]:
        if name not in self.shapes:
            raise InvalidModelError(f"no static shape could be inferred for tensor '{name}'",
                                    hint="pass --input-shape NAME=1,3,32,32 for inputs with symbolic dims")
        return self.shapes[name]

    def const(self, node: onnx.NodeProto, index: int, what: str) -> np.ndarray | None:
        """Constant value of input ``index`` (``None`` if absent); a runtime value is unsupported."""
        if index >= len(node.input) or not node.input[index]:
            return None
        name = node.input[index]
        if name not in self.initializers:
            raise UnsupportedError(f"node '{node.name}' ({node.op_type}): {what} '{name}' must be a constant")
        if name not in self._values:
            self._values[name] = numpy_helper.to_array(self.initializers[name])
        return self._values[name]


def onnx_attrs(node: onnx.NodeProto) -> Attrs:
    """The node's attributes as plain Python values (str, int, float, tuples)."""
    out: Attrs = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        elif isinstance(value, list):
            value = tuple(v.decode("utf-8") if isinstance(v, bytes) else v for v in value)
        out[attr.name] = value
    return out


def _ints(values: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(values).reshape(-1))


def _axis(node: onnx.NodeProto, axis: int, rank: int, *, inclusive: bool = False) -> int:
    """``axis`` made non-negative (``inclusive``: ``axis == rank`` is allowed, as for Flatten)."""
    if not -rank <= axis < (rank + 1 if inclusive else rank):
        raise InvalidModelError(f"node '{node.name}' ({node.op_type}): axis {axis} out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def _rank4(node: onnx.NodeProto, ctx: OpContext) -> tuple[int, ...]:
    shape = ctx.shape(node.input[0])
    if len(shape) != 4:
        raise UnsupportedError(f"node '{node.name}' ({node.op_type}): only 2-D (NCHW) inputs are supported, "
                               f"got shape {shape}")
    return shape


def resolve_pads(node: onnx.NodeProto, a: Attrs, spatial: tuple[int, ...], kernel: tuple[int, ...],
                 strides: tuple[int, ...], dilations: tuple[int, ...]) -> tuple[int, ...]:
    """Explicit ``(top, left, bottom, right)`` pads, resolving ``auto_pad``."""
    auto = a.get("auto_pad", "NOTSET")
    if auto == "NOTSET":
        pads = _ints(a.get("pads", (0,) * (2 * len(spatial))))
        if len(pads) != 2 * len(spatial) or min(pads) < 0:
            raise InvalidModelError(f"node '{node.name}' ({node.op_type}) has invalid pads {pads}")
        return pads
    if auto == "VALID":
        return (0,) * (2 * len(spatial))
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise InvalidModelError(f"node '{node.name}' ({node.op_type}) has unknown auto_pad '{auto}'")
    begins, ends = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        begins.append(small if auto == "SAME_UPPER" else big)
        ends.append(big if auto == "SAME_UPPER" else small)
    return (*begins, *ends)


def _window_attrs(node: onnx.NodeProto, a: Attrs, shape: tuple[int, ...], kernel: tuple[int, ...]) -> Attrs:
    strides = _ints(a.get("strides", (1, 1)))
    dilations = _ints(a.get("dilations", (1, 1)))
    if len(kernel) != 2 or len(strides) != 2 or len(dilations) != 2:
        raise UnsupportedError(f"node '{node.name}' ({node.op_type}): only 2-D windows are supported")
    if min(*kernel, *strides, *dilations) < 1:
        raise InvalidModelError(f"node '{node.name}' ({node.op_type}): kernel {kernel}, strides {strides} and "
                                f"dilations {dilations} must be positive")
    pads = resolve_pads(node, a, shape[2:], kernel, strides, dilations)
    return {"kernel_shape": kernel, "strides": strides, "pads": pads, "dilations": dilations}


def _conv(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    shape = _rank4(node, ctx)
    kernel = _ints(a.get("kernel_shape", ctx.shape(node.input[1])[2:]))
    attrs = _window_attrs(node, a, shape, kernel)
    attrs["group"] = int(a.get("group", 1))
    weight = ctx.shape(node.input[1])
    if len(weight) != 4:
        raise InvalidModelError(f"node '{node.name}' (Conv): weight shape {weight} is not 4-D")
    cout, cin_g = weight[:2]
    if attrs["group"] < 1 or cout % attrs["group"] or shape[1] != cin_g * attrs["group"]:
        raise InvalidModelError(f"node '{node.name}' (Conv): group={attrs['group']} does not fit input channels "
                                f"{shape[1]} and weight shape {ctx.shape(node.input[1])}")
    return [t for t in node.input if t], attrs


def _maxpool(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    attrs = _window_attrs(node, a, _rank4(node, ctx), _ints(a["kernel_shape"]))
    if int(a.get("storage_order", 0)) != 0:
        raise UnsupportedError(f"node '{node.name}' (MaxPool): storage_order=1 is not supported")
    attrs["ceil_mode"] = int(a.get("ceil_mode", 0))
    return [node.input[0]], attrs


def _avgpool(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    attrs = _window_attrs(node, a, _rank4(node, ctx), _ints(a["kernel_shape"]))
    if attrs.pop("dilations") != (1, 1):
        raise UnsupportedError(f"node '{node.name}' (AveragePool): dilations are not supported")
    attrs["ceil_mode"] = int(a.get("ceil_mode", 0))
    attrs["count_include_pad"] = int(a.get("count_include_pad", 0))
    return [node.input[0]], attrs


def _gemm(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    attrs = {"alpha": float(a.get("alpha", 1.0)), "beta": float(a.get("beta", 1.0)),
             "transA": int(a.get("transA", 0)), "transB": int(a.get("transB", 0))}
    return [t for t in node.input if t], attrs


def _batchnorm(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    if int(a.get("training_mode", 0)):
        raise UnsupportedError(f"node '{node.name}' (BatchNormalization): training_mode=1 is not supported",
                               hint="export the model in eval mode")
    return list(node.input), {"epsilon": float(a.get("epsilon", 1e-5))}


def _clip(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    lo, hi = ctx.const(node, 1, "min"), ctx.const(node, 2, "max")
    attrs = {"min": -math.inf if lo is None else float(np.asarray(lo).reshape(-1)[0]),
             "max": math.inf if hi is None else float(np.asarray(hi).reshape(-1)[0])}
    return [node.input[0]], attrs


def _pad(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    rank = len(ctx.shape(node.input[0]))
    given = _ints(ctx.const(node, 1, "pads"))
    axes_value = ctx.const(node, 3, "axes")
    axes = [_axis(node, ax, rank) for ax in _ints(axes_value)] if axes_value is not None else list(range(rank))
    if len(given) != 2 * len(axes):
        raise InvalidModelError(f"node '{node.name}' (Pad): {len(given)} pads for {len(axes)} axes")
    pads = [0] * (2 * rank)
    for i, ax in enumerate(axes):
        pads[ax], pads[ax + rank] = given[i], given[i + len(axes)]
    mode = str(a.get("mode", "constant"))
    if mode not in ("constant", "reflect", "edge") or min(pads) < 0:
        raise UnsupportedError(f"node '{node.name}' (Pad): mode '{mode}' with pads {pads} is not supported")
    value = ctx.const(node, 2, "constant_value")
    fill = 0.0 if value is None else float(np.asarray(value).reshape(-1)[0])
    return [node.input[0]], {"pads": tuple(pads), "mode": mode, "value": fill}


def _reshape(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    src = ctx.shape(node.input[0])
    spec = list(_ints(ctx.const(node, 1, "shape")))
    if not a.get("allowzero", 0):
        spec = [src[i] if d == 0 and i < len(src) else d for i, d in enumerate(spec)]
    total, known = math.prod(src), math.prod(d for d in spec if d != -1)
    if spec.count(-1) > 1 or any(d < -1 for d in spec):
        raise InvalidModelError(f"node '{node.name}' (Reshape): invalid shape {spec}")
    if -1 in spec:
        if known == 0 or total % known:
            raise InvalidModelError(f"node '{node.name}' (Reshape): cannot reshape {src} to {spec}")
        spec[spec.index(-1)] = total // known
    if math.prod(spec) != total:
        raise InvalidModelError(f"node '{node.name}' (Reshape): cannot reshape {src} to {spec}")
    return [node.input[0]], {"shape": tuple(spec)}


def _clamp(value: int, dim: int, step: int, *, end: bool) -> int:
    """ONNX Slice index clamping (negative indices count from the end)."""
    value = value + dim if value < 0 else value
    if step > 0:
        return min(max(value, 0), dim)
    return min(max(value, -1 if end else 0), dim - 1)


def _slice(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    shape = ctx.shape(node.input[0])
    starts, ends = _ints(ctx.const(node, 1, "starts")), _ints(ctx.const(node, 2, "ends"))
    axes_v, steps_v = ctx.const(node, 3, "axes"), ctx.const(node, 4, "steps")
    axes = [_axis(node, ax, len(shape)) for ax in _ints(axes_v)] if axes_v is not None else list(range(len(starts)))
    steps = _ints(steps_v) if steps_v is not None else (1,) * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps) or 0 in steps or len(set(axes)) != len(axes):
        raise InvalidModelError(f"node '{node.name}' (Slice): inconsistent starts/ends/axes/steps")
    dims = [shape[ax] for ax in axes]
    return [node.input[0]], {
        "starts": tuple(_clamp(s, d, st, end=False) for s, d, st in zip(starts, dims, steps, strict=True)),
        "ends": tuple(_clamp(e, d, st, end=True) for e, d, st in zip(ends, dims, steps, strict=True)),
        "axes": tuple(axes), "steps": tuple(steps)}


def _axis_rule(default: int | None, *, inclusive: bool = False) -> Rule:
    def rule(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
        value = a.get("axis", default)
        if value is None:
            raise InvalidModelError(f"node '{node.name}' ({node.op_type}) lacks attribute 'axis'")
        axis = _axis(node, int(value), len(ctx.shape(node.input[0])), inclusive=inclusive)
        return list(node.input), {"axis": axis}
    return rule


def _transpose(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    rank = len(ctx.shape(node.input[0]))
    perm = _ints(a.get("perm", tuple(reversed(range(rank)))))
    if sorted(perm) != list(range(rank)):
        raise InvalidModelError(f"node '{node.name}' (Transpose): invalid perm {perm}")
    return [node.input[0]], {"perm": perm}


def _lrn(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    return [node.input[0]], {"alpha": float(a.get("alpha", 1e-4)), "beta": float(a.get("beta", 0.75)),
                             "bias": float(a.get("bias", 1.0)), "size": int(a["size"])}


def _leaky(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    return [node.input[0]], {"alpha": float(a.get("alpha", 0.01))}


def _plain(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    return [t for t in node.input if t], {}


def _global_pool(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    _rank4(node, ctx)
    return [node.input[0]], {}


Rule = Callable[[onnx.NodeProto, OpContext, Attrs], tuple[list[str], Attrs]]
RULES: dict[str, Rule] = {
    "Conv": _conv, "Gemm": _gemm, "MatMul": _plain, "BatchNormalization": _batchnorm,
    "Relu": _plain, "Clip": _clip, "LeakyRelu": _leaky, "Sigmoid": _plain,
    "MaxPool": _maxpool, "AveragePool": _avgpool, "GlobalAveragePool": _global_pool,
    "Add": _plain, "Mul": _plain, "Sum": _plain,
    "Concat": _axis_rule(None), "Flatten": _axis_rule(1, inclusive=True), "Softmax": _axis_rule(-1),
    "Reshape": _reshape, "Transpose": _transpose, "LRN": _lrn, "Pad": _pad, "Slice": _slice,
}

#: Inputs of CIM-relevant ops that must be constants (weights, biases, BN statistics).
WEIGHT_INPUTS: dict[str, tuple[int, ...]] = {
    "Conv": (1, 2), "Gemm": (1, 2), "MatMul": (1,), "BatchNormalization": (1, 2, 3, 4)}


def canonicalize(node: onnx.NodeProto, ctx: OpContext) -> tuple[list[str], Attrs]:
    """IR inputs and canonical attributes of ``node`` (an op in ``RULES``)."""
    for index in WEIGHT_INPUTS.get(node.op_type, ()):
        if index < len(node.input) and node.input[index] and node.input[index] not in ctx.initializers:
            raise UnsupportedError(f"node '{node.name}' ({node.op_type}): weight input '{node.input[index]}' "
                                   "is computed at run time; only constant weights are supported")
    return RULES[node.op_type](node, ctx, onnx_attrs(node))
