"""Transpose: ``y[i_perm[0], …] = x[i_0, …]``, i.e. ``y.shape[k] = x.shape[perm[k]]`` (canonical
``perm``, default reversed). Morph follows the channels when ``perm`` keeps axes 0 and 1."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimc.errors import InvalidModelError
from cimc.ops.base import Attrs, OpDef, Shape, always, export_attributes, no_rewrite, sign_of_inputs
from cimc.ops.canon import ints

if TYPE_CHECKING:
    import onnx
    import torch

    from cimc.frontend.canonical import OpContext
    from cimc.ir.node import Node
    from cimc.morph.channel_rules import ChannelBuilder


def _canonicalize(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    rank = len(ctx.shape(node.input[0]))
    perm = ints(a.get("perm", tuple(reversed(range(rank)))))
    if sorted(perm) != list(range(rank)):
        raise InvalidModelError(f"node '{node.name}' (Transpose): invalid perm {perm}")
    return [node.input[0]], {"perm": perm}


def _shape(shapes: list[Shape], a: Attrs) -> Shape:
    return tuple(shapes[0][p] for p in a["perm"])


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return np.ascontiguousarray(ins[0].transpose(a["perm"]))


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return ins[0].permute(a["perm"])


def _channels(b: ChannelBuilder, node: Node) -> None:
    """Identity when ``perm`` keeps axes 0 and 1, else fixed."""
    (b.identity if tuple(node.attrs["perm"][:2]) == (0, 1) else b.opaque)(node)


DEFS = (OpDef("Transpose", (1, 1), ("perm",), canonicalize=_canonicalize, shape=_shape, kernel=_kernel, torch=_torch,
              channels=_channels, rewrite=no_rewrite, export=export_attributes, nonnegative=sign_of_inputs,
              homogeneous=always, mixes_batch=lambda a: bool(a["perm"][0] != 0)),)
