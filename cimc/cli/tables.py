"""Console tables of ``cimc compile`` that fit a 100-column terminal, or everything with ``--wide``.

A table is headers and rows of text; the first column holds layer names. Narrow (the default),
the columns named in ``narrow_drop`` are left out (every figure stays in ``report.json`` and
``report.md``) and layer names keep their distinctive end, unique in the table
(``cimc.views.names``). ``--wide`` shows every column and whole names on a console of at least
150 columns. A layer whose torch module path is known (``modules``: node name → path, from a
dynamo export) is shown by that path (``features.1.conv.0``), whole with ``--wide`` as
``features.1.conv.0 (node_conv2d_1)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

NARROW = 100
WIDE = 150
NAME_WIDTH = 22


def console(wide: bool) -> Any:
    """A rich console on stdout whose text is escaped for the terminal (``safe_console``):
    ``NARROW`` columns, or ``--wide`` at least ``WIDE``."""
    from rich.console import Console

    from cimc.safe_text import safe_console

    return safe_console(width=max(WIDE, Console().width) if wide else NARROW)


def print_table(out: Any, title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], *, wide: bool,
                narrow_drop: frozenset[str] = frozenset(), left: frozenset[str] = frozenset({"layer"}),
                bold_last: bool = False, modules: Mapping[str, str] | None = None) -> None:
    """Print ``rows`` (text cells; column 0 the layer names from the model, escaped here) as a
    table on ``out`` (module doc)."""
    from rich.markup import escape
    from rich.table import Table

    from cimc.safe_text import safe_name
    from cimc.views.names import full_label, short_names

    keep = [i for i, h in enumerate(headers) if wide or h not in narrow_drop]
    names = [row[0] for row in rows]
    mods = [(modules or {}).get(n) for n in names]
    shown = ([full_label(n, m) for n, m in zip(names, mods, strict=True)] if wide
             else short_names(names, NAME_WIDTH, modules=mods))
    table = Table(title=escape(title))
    for i in keep:
        table.add_column(escape(headers[i]), justify="left" if headers[i] in left else "right")
    for r, row in enumerate(rows):
        cells = [escape(safe_name(shown[r]) if i == 0 else row[i]) for i in keep]
        table.add_row(*cells, style="bold" if bold_last and r == len(rows) - 1 else None)
    out.print(table)
