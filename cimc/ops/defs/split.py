"""Split: ``y_k = x[o_k : o_k + s_k]`` along ``axis`` (``o_k = s_0 + … + s_{k−1}``), one output per part.

The sizes ``s_k`` come from the constant ``split`` input (opset 13+) or attribute (older), from
``num_outputs`` (opset 18: parts of ``⌈d / n⌉``, the last one smaller), or are ``d / n`` for
``n`` outputs; a computed ``split`` is unsupported. The IR has no multi-output ops: a Split is
imported as one ``Slice`` per used output (``replace``), so every concern is the Slice's and
the Split op itself never reaches the IR.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.errors import InvalidModelError
from cimc.ops.base import CONCERNS, OpDef, Unsupported
from cimc.ops.canon import axis, ints

if TYPE_CHECKING:
    import onnx

    from cimc.frontend.canonical import OpContext


def _sizes(node: onnx.NodeProto, ctx: OpContext, a: dict[str, object], dim: int) -> list[int]:
    n = len(node.output)
    given = ctx.const(node, 1, "split")
    if given is None and "split" in a:
        given = np.asarray(a["split"])
    if given is not None:
        sizes = list(ints(given))
        if len(sizes) != n or sum(sizes) != dim or min(sizes, default=0) < 0:
            raise InvalidModelError(f"node '{node.name}' (Split): split {sizes} does not cut {dim} into {n} parts")
        return sizes
    parts = int(a.get("num_outputs", n))  # type: ignore[call-overload]
    if parts != n or parts < 1:
        raise InvalidModelError(f"node '{node.name}' (Split): num_outputs {parts} but {n} outputs")
    if "num_outputs" not in a and dim % n:
        raise InvalidModelError(f"node '{node.name}' (Split): {dim} does not split into {n} equal parts")
    step = -(-dim // n)
    sizes = [max(min(step, dim - k * step), 0) for k in range(n)]
    if sum(sizes) != dim or 0 in sizes:
        raise InvalidModelError(f"node '{node.name}' (Split): {dim} does not split into {n} parts")
    return sizes


def _replace(node: onnx.NodeProto, ctx: OpContext) -> list[onnx.NodeProto]:
    """One ``Slice(x, [o_k], [o_k + s_k], [axis])`` per used output."""
    from onnx import helper

    a = {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}
    shape = ctx.shape(node.input[0])
    ax = axis(node, int(a.get("axis", 0)), len(shape))
    nodes, start = [], 0
    for k, (out, size) in enumerate(zip(node.output, _sizes(node, ctx, a, shape[ax]), strict=True)):
        if out:
            operands = [ctx.add_constant(f"{node.name}_{k}_{field}", np.array([v], np.int64))
                        for field, v in (("starts", start), ("ends", start + size), ("axes", ax))]
            name = node.name if k == 0 else ctx.fresh(f"{node.name}_{k}")
            nodes.append(helper.make_node("Slice", [node.input[0], *operands], [out], name=name))
        start += size
    return nodes


_WHY = "imported as one Slice per output"

DEFS = (OpDef("Split", (1, 2), (), replace=_replace,
              **{concern: Unsupported("Split", concern, _WHY) for concern in CONCERNS}),)  # type: ignore[arg-type]
