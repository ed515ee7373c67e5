"""Where with a constant condition: ``y = x`` where ``condition`` else ``z`` (numpy broadcasting
of the three). Canonical attributes ``condition`` (flat 0/1 values) and ``condition_shape``; the
IR inputs are ``x`` and ``z``. A condition computed from activations (``Where(x > 0, …)``) is
unsupported; one computed from shapes folds to a constant at import.

A selection, one IEEE-free operation per element: ≥ 0 when both branches are; not homogeneous
(a constant branch does not scale); morph keeps the widths (opaque). Written back as ONNX Where
with the condition as a bool operand (``decompose``: the condition comes first).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.errors import InvalidModelError, UnsupportedError
from cimc.ops.base import Attrs, OpDef, Shape, attrs_except, channel_opaque, never, no_rewrite, sign_of_inputs
from cimc.ops.canon import ints

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext
    from cimc.frontend.onnx_export import ExportBuilder
    from cimc.ir.node import Node


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    if node.input[0] not in ctx.initializers:
        raise UnsupportedError(f"node '{node.name}' (Where): condition '{node.input[0]}' is computed at run time",
                               hint="only a constant condition is supported (a mask fixed at export)")
    cond = ctx.const(node, 0, "condition")
    assert cond is not None
    if cond.dtype != np.bool_:
        raise InvalidModelError(f"node '{node.name}' (Where): condition of type {cond.dtype}, not bool")
    return [node.input[1], node.input[2]], {"condition": ints(cond.astype(np.int64)),
                                            "condition_shape": ints(cond.shape)}


def _condition(a: Attrs) -> np.ndarray:
    return np.asarray(a["condition"], np.bool_).reshape(a["condition_shape"])


def _shape(shapes: list[Shape], a: Attrs) -> Shape:
    cond = tuple(a["condition_shape"])
    if int(np.prod(cond)) != len(a["condition"]):
        raise InvalidModelError(f"Where: {len(a['condition'])} condition values for shape {cond}")
    return tuple(int(d) for d in np.broadcast_shapes(cond, *shapes))


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return np.where(_condition(a), ins[0], ins[1]).astype(ins[0].dtype)


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    import torch

    return torch.where(torch.as_tensor(_condition(a), device=ins[0].device), ins[0], ins[1])


def _decompose(b: ExportBuilder, node: Node, wide: bool) -> bool:
    """ONNX Where(condition, x, z), the condition a bool initializer."""
    from onnx import helper

    cond = b.constant(node, "condition", _condition(node.attrs))
    b.nodes.append(helper.make_node("Where", [cond, *node.inputs], list(node.outputs), name=node.name))
    return True


def _export(b: ExportBuilder, node: Node) -> tuple[list[str], Attrs]:
    return [], attrs_except(node, "condition", "condition_shape")


DEFS = (OpDef("Where", (2, 2), ("condition", "condition_shape"), canonicalize=_canonicalize, shape=_shape,
              kernel=_kernel, torch=_torch, channels=channel_opaque, rewrite=no_rewrite, export=_export,
              nonnegative=sign_of_inputs, homogeneous=never, mixes_batch=never, decompose=_decompose),)
