"""``unary_op``: the ``OpDef`` of an elementwise op of one tensor, ``y = f(x)``.

Such an op keeps the input's shape, maps channel c to channel c (morph ties them), holds
no per-channel constant (morph rewrites nothing) and exports its attributes as they are.
"""

from __future__ import annotations

from cimc.ops.base import (
    Canonicalize,
    ExportRule,
    Kernel,
    OpDef,
    TorchForward,
    channel_identity,
    export_attributes,
    no_rewrite,
    plain_inputs,
    same_shape,
)


def unary_op(name: str, kernel: Kernel, torch: TorchForward, *, attrs: tuple[str, ...] = (),
             canonicalize: Canonicalize = plain_inputs, export: ExportRule = export_attributes) -> OpDef:
    """The ``OpDef`` of elementwise ``name`` (one input, canonical ``attrs``)."""
    return OpDef(name, (1, 1), attrs, canonicalize, same_shape, kernel, torch, channel_identity, no_rewrite, export)
