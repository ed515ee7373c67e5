"""The README's table of supported ops is the one ``scripts/op_table.py`` generates from the
op table, and every op with an import rewrite says what it becomes."""

from __future__ import annotations

from cimc.ops import op_table
from scripts.op_table import BEGIN, END, README, REWRITES, render


def test_readme_table_is_generated() -> None:
    text = README.read_text(encoding="utf-8")
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert block.strip() == render().strip(), "run python3 scripts/op_table.py --update"


def test_every_import_rewrite_is_described() -> None:
    rewritten = {name for name, op in op_table().items() if getattr(op, "replace", None) is not None}
    assert rewritten == set(REWRITES)
