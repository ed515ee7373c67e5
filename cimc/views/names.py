"""Short layer names for tables and legends: the distinctive end of a name, unique in its table.

Exporters name nodes by path (``/features/features.3/conv/conv.1/Conv``, torch's legacy exporter:
a scope per module, each repeating its parent's name, then the op): the prefixes repeat, the ends
differ. A path name is first written as its module path (``compact``: ``features.3.conv.1``), so
that the block index, not the repeated ``conv/conv.0/conv.0.0/Conv``, survives the cut. A name
longer than ``width`` characters then keeps its last ``width − 1`` characters behind ``…``; names
whose shortened forms collide keep more characters, up to the full name, until every shortened
name in the table is unique (names equal in full stay equal; names whose module paths are equal
keep their full paths).

torch's dynamo exporter (the default) names nodes ``node_conv2d_1`` and records the module path
apart (``cimc.frontend.module_paths``; a build keeps it as the layer's ``module``): given
``modules``, a layer that has one shows it in place of ``compact`` of its name.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

ELLIPSIS = "…"
#: The op scope an exporter appends to a node's path (``Conv``, ``Gemm``, ``MatMul_1``).
_OP_SCOPE = re.compile(r"[A-Z][A-Za-z0-9]*(_[0-9]+)?")


def compact(name: str) -> str:
    """The module path of an exporter's path name: ``/features/features.3/conv/conv.1/Conv`` →
    ``features.3.conv.1``. A scope that the next one extends (``features`` before ``features.3``)
    is dropped, the last scope when it is the op's, and the rest joined by ``.``; a name that is
    not such a path (no ``/``, or nothing left) is returned as it is."""
    scopes = [p for p in name.split("/") if p]
    if "/" not in name or len(scopes) < 2:
        return name
    if _OP_SCOPE.fullmatch(scopes[-1]):
        scopes = scopes[:-1]
    kept = [s for s, after in zip(scopes, [*scopes[1:], ""], strict=True) if not after.startswith(s + ".")]
    return ".".join(kept) or name


def module_path(name: str, module: str | None = None) -> str:
    """The module path a table shows for a layer: its recorded ``module``, else ``compact(name)``."""
    return module or compact(name)


def full_label(name: str, module: str | None = None) -> str:
    """A layer's whole name for a title or a hover: ``features.1.conv.0 (node_conv2d_1)`` with a
    recorded module, else the node name."""
    return f"{module} ({name})" if module else name


def tail(name: str, width: int) -> str:
    """``name`` if it fits in ``width`` characters, else ``…`` and its last ``width − 1``."""
    return name if len(name) <= width else ELLIPSIS + name[len(name) - width + 1:]


def short_names(names: Sequence[str], width: int = 28,
                modules: Sequence[str | None] | None = None) -> list[str]:
    """Each name as its ``module_path`` (``modules[i]`` where given and set, else ``compact``; the
    full name where two module paths are equal), shortened by ``tail``; colliding short forms are
    widened one character at a time."""
    mods = list(modules) if modules is not None else [None] * len(names)
    paths = [module_path(n, m) for n, m in zip(names, mods, strict=True)]
    sources: dict[str, set[str]] = {}
    for n, p in zip(names, paths, strict=True):
        sources.setdefault(p, set()).add(n)
    names = [p if len(sources[p]) == 1 else n for n, p in zip(names, paths, strict=True)]
    widths = [width] * len(names)
    distinct = len(set(names))
    while True:
        short = [tail(n, w) for n, w in zip(names, widths, strict=True)]
        counts = Counter(short)
        if len(counts) == distinct:
            return short
        for i, s in enumerate(short):
            if counts[s] > 1 and len(s) < len(names[i]):
                widths[i] += 1
