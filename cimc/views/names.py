"""Short layer names for tables and legends: the distinctive end of a name, unique in its table.

Exporters name nodes by path (``/features/features.3/conv/conv.1/Conv``): the prefixes repeat,
the ends differ. A name longer than ``width`` characters keeps its last ``width − 1`` characters
behind ``…``; names whose shortened forms collide keep more characters, up to the full name, until
every shortened name in the table is unique (names equal in full stay equal).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

ELLIPSIS = "…"


def tail(name: str, width: int) -> str:
    """``name`` if it fits in ``width`` characters, else ``…`` and its last ``width − 1``."""
    return name if len(name) <= width else ELLIPSIS + name[len(name) - width + 1:]


def short_names(names: Sequence[str], width: int = 28) -> list[str]:
    """Each name shortened by ``tail``; colliding short forms are widened one character at a time."""
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
