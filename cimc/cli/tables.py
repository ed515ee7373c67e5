"""Console tables of ``cimc compile`` that fit a 100-column terminal, or everything with ``--wide``.

A table is headers and rows of text; the first column holds layer names. Narrow (the default),
the columns named in ``narrow_drop`` are left out (every figure stays in ``report.json`` and
``report.md``) and layer names keep their distinctive end, unique in the table
(``cimc.views.names``). ``--wide`` shows every column and whole names on a console of at least
150 columns.
"""

from __future__ import annotations

from collections.abc import Sequence
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
                bold_last: bool = False) -> None:
    """Print ``rows`` (text cells; column 0 the layer names from the model, escaped here) as a
    table on ``out`` (module doc)."""
    from rich.markup import escape
    from rich.table import Table

    from cimc.safe_text import safe_name
    from cimc.views.names import short_names

    keep = [i for i, h in enumerate(headers) if wide or h not in narrow_drop]
    names = [row[0] for row in rows]
    shown = names if wide else short_names(names, NAME_WIDTH)
    table = Table(title=escape(title))
    for i in keep:
        table.add_column(escape(headers[i]), justify="left" if headers[i] in left else "right")
    for r, row in enumerate(rows):
        cells = [escape(safe_name(shown[r]) if i == 0 else row[i]) for i in keep]
        table.add_row(*cells, style="bold" if bold_last and r == len(rows) - 1 else None)
    out.print(table)
