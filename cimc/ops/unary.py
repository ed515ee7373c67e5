"""``unary_op``: the ``OpDef`` of an elementwise op of one tensor, ``y = f(x)``.

Such an op keeps the input's shape, maps channel c to channel c (morph ties them), holds
no per-channel constant (morph rewrites nothing), exports its attributes as they are and
never mixes the samples of a batch; whether its output is ≥ 0 and whether it is homogeneous
the op states.
"""

from __future__ import annotations

from cimc.ops.base import (
    Canonicalize,
    Decompose,
    ExportRule,
    Kernel,
    NodeTest,
    OpDef,
    SignRule,
    TorchForward,
    channel_identity,
    export_attributes,
    never,
    no_rewrite,
    plain_inputs,
    same_shape,
)


def unary_op(name: str, kernel: Kernel, torch: TorchForward, *, nonnegative: SignRule, homogeneous: NodeTest,
             attrs: tuple[str, ...] = (), canonicalize: Canonicalize = plain_inputs,
             export: ExportRule = export_attributes, double: bool = False,
             decompose: Decompose | None = None) -> OpDef:
    """The ``OpDef`` of elementwise ``name`` (one input, canonical ``attrs``); it never mixes samples."""
    return OpDef(name, (1, 1), attrs, canonicalize=canonicalize, shape=same_shape, kernel=kernel, torch=torch,
                 channels=channel_identity, rewrite=no_rewrite, export=export, nonnegative=nonnegative,
                 homogeneous=homogeneous, mixes_batch=never, double=double, elementwise=True,
                 decompose=decompose)
