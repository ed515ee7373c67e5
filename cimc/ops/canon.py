"""Helpers the ops' ``canonicalize`` rules share: integer lists, axes, 2-D windows and pads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cimc.errors import InvalidModelError, UnsupportedError
from cimc.ops.base import Attrs, Canonicalize

if TYPE_CHECKING:
    import onnx

    from cimc.frontend.canonical import OpContext


def ints(values: Any) -> tuple[int, ...]:
    """``values`` (scalar, list or array) as a flat tuple of ints."""
    return tuple(int(v) for v in np.asarray(values).reshape(-1))


def axis(node: onnx.NodeProto, value: int, rank: int, *, inclusive: bool = False) -> int:
    """``value`` made non-negative (``inclusive``: ``value == rank`` is allowed, as for Flatten)."""
    if not -rank <= value < (rank + 1 if inclusive else rank):
        raise InvalidModelError(f"node '{node.name}' ({node.op_type}): axis {value} out of range for rank {rank}")
    return value + rank if value < 0 else value


def rank4(node: onnx.NodeProto, ctx: OpContext) -> tuple[int, ...]:
    """Shape of the node's (NCHW) input; other ranks are unsupported."""
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
        pads = ints(a.get("pads", (0,) * (2 * len(spatial))))
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


def window_attrs(node: onnx.NodeProto, a: Attrs, shape: tuple[int, ...], kernel: tuple[int, ...]) -> Attrs:
    """Canonical ``kernel_shape``, ``strides``, ``pads`` and ``dilations`` of a 2-D window op."""
    strides = ints(a.get("strides", (1, 1)))
    dilations = ints(a.get("dilations", (1, 1)))
    if len(kernel) != 2 or len(strides) != 2 or len(dilations) != 2:
        raise UnsupportedError(f"node '{node.name}' ({node.op_type}): only 2-D windows are supported")
    if min(*kernel, *strides, *dilations) < 1:
        raise InvalidModelError(f"node '{node.name}' ({node.op_type}): kernel {kernel}, strides {strides} and "
                                f"dilations {dilations} must be positive")
    pads = resolve_pads(node, a, shape[2:], kernel, strides, dilations)
    return {"kernel_shape": kernel, "strides": strides, "pads": pads, "dilations": dilations}


def axis_rule(default: int | None, *, inclusive: bool = False) -> Canonicalize:
    """Canonicalisation of an op whose only attribute is ``axis`` (non-negative afterwards)."""
    def rule(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
        value = a.get("axis", default)
        if value is None:
            raise InvalidModelError(f"node '{node.name}' ({node.op_type}) lacks attribute 'axis'")
        return list(node.input), {"axis": axis(node, int(value), len(ctx.shape(node.input[0])), inclusive=inclusive)}
    return rule
