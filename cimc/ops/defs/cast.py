"""Cast and CastLike of a computed tensor to float32: ``y = x`` (canonical attribute ``to = 1``).

cimc computes on float32 tensors only, so a Cast of an activation is the identity: ``to`` must be
FLOAT (a float32 → float32 Cast that exporters leave behind). A Cast to another type (an integer,
float16, float64) of a computed tensor is unsupported; Casts of constants are folded at import
(``cimc.frontend.fold_constants``), which is where a Cast to an integer type is exact.
CastLike is imported as the Cast to its second operand's type (``replace``; a constant first
operand folds away instead), so it never reaches the IR.

Identity for morph, ≥ 0 when its input is, homogeneous.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.errors import UnsupportedError
from cimc.ops.base import CONCERNS, Attrs, OpDef, Unsupported, always, sign_of_inputs
from cimc.ops.unary import unary_op

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext

FLOAT = 1  # onnx.TensorProto.FLOAT
_HINT = "cimc computes in float32: export the model in float32, without casts of activations to other types"


def _type_name(to: int) -> str:
    from onnx import TensorProto

    return TensorProto.DataType.Name(to).lower() if to in TensorProto.DataType.values() else str(to)


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    to = int(a.get("to", 0))
    if to != FLOAT:
        raise UnsupportedError(f"node '{node.name}' (Cast): a cast of a computed tensor to {_type_name(to)}",
                               hint=_HINT)
    return [node.input[0]], {"to": FLOAT}


def _cast_like(node: onnx.NodeProto, ctx: OpContext) -> list[onnx.NodeProto]:
    """``CastLike(x, like)``: ``Cast(x, to = float)`` when ``like`` is float32 (a constant ``like``
    of another type is refused; a computed ``like`` is float32 or refused by the importer)."""
    from onnx import helper

    if len(node.input) > 1 and node.input[1] in ctx.initializers:
        like = ctx.const(node, 1, "target")
        if like is not None and like.dtype != np.float32:
            raise UnsupportedError(f"node '{node.name}' (CastLike): a cast of a computed tensor to {like.dtype}",
                                   hint=_HINT)
    return [helper.make_node("Cast", [node.input[0]], [node.output[0]], name=node.name, to=FLOAT)]


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return ins[0]


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return ins[0]


_REASON = "imported as a Cast (OpDef.replace)"
DEFS = (
    unary_op("Cast", _kernel, _torch, nonnegative=sign_of_inputs, homogeneous=always, attrs=("to",),
             canonicalize=_canonicalize),
    OpDef("CastLike", (2, 2), (), **{c: Unsupported("CastLike", c, _REASON) for c in CONCERNS},  # type: ignore[arg-type]
          replace=_cast_like),
)
