"""The op table: every IR op's definition (``OpDef``), one module per op in ``cimc.ops.defs``.

``op_table()`` imports every module of ``cimc.ops.defs`` once and collects their ``DEFS``;
adding an op is adding one module there. Importing ``cimc.ops`` itself loads neither numpy,
onnx nor torch (the table is built on first use; torch only runs inside the torch forwards).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Mapping
from types import MappingProxyType

from cimc.ops.base import OpDef, Unsupported

__all__ = ["IDENTITY_OPS", "OpDef", "Unsupported", "find", "op_table"]

#: ONNX ops the frontend removes at import (they compute the identity at inference time).
IDENTITY_OPS = frozenset({"Identity", "Dropout"})


@functools.cache
def op_table() -> Mapping[str, OpDef]:
    """Op name → ``OpDef``, for every op of every module in ``cimc.ops.defs`` (read-only)."""
    from cimc.ops import defs

    table: dict[str, OpDef] = {}
    for info in sorted(pkgutil.iter_modules(defs.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{defs.__name__}.{info.name}")
        for op in module.DEFS:
            if op.name in table:
                raise RuntimeError(f"op {op.name} is defined twice (second time in {module.__name__})")
            table[op.name] = op
    return MappingProxyType(dict(sorted(table.items())))


def find(name: str) -> OpDef | None:
    """The definition of op ``name``, or ``None`` when the IR has no such op."""
    return op_table().get(name)
