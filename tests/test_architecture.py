"""The import order of docs/architecture.md holds: a module of ``cimc`` imports only from its
own folder, its peers (same layer) and the layers below. The layers are read from the
document's table, so the document and this test cannot drift apart."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "cimc"

#: Upward imports that existed when the order was written down: (importing file, imported module).
#: Remove an entry when its import is gone; never add one without amending the document.
KNOWN_EXCEPTIONS = {
    ("cimc/build/reader.py", "cimc.views.cell_map"),
    ("cimc/cost/model.py", "cimc.passes.place_bitlines"),
    ("cimc/passes/morph_channels.py", "cimc.morph.channel_groups"),
    ("cimc/passes/morph_channels.py", "cimc.morph.channel_rules"),
    ("cimc/passes/morph_channels.py", "cimc.morph.initialise"),
    ("cimc/passes/morph_channels.py", "cimc.morph.layout"),
    ("cimc/passes/morph_channels.py", "cimc.morph.plan"),
}


def layers() -> dict[str, int]:
    """Top-level folder or module name → layer number, from the table of the document."""
    section = DOC.read_text(encoding="utf-8").split("## The folders of `cimc/`", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| `([a-z_]+)(?:/|\.py)` \|", section, flags=re.M)
    assert rows, "docs/architecture.md has no folder table"
    return {name: int(rank) for rank, name in rows}


def imports(path: Path) -> list[str]:
    """Every ``cimc.X…`` module ``path`` imports, at any depth (lazy imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
    return [m for m in found if m.startswith("cimc.")]


def test_every_top_level_package_is_in_the_table() -> None:
    rank = layers()
    names = {p.stem if p.suffix == ".py" else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    missing = sorted(names - set(rank))
    assert not missing, f"add {missing} to the folder table of docs/architecture.md"


def test_imports_go_down_only() -> None:
    rank = layers()
    upward = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        me = parts[0]
        if me == "__init__" or me not in rank:
            continue
        for module in imports(path):
            other = module.split(".")[1]
            if other in rank and rank[other] < rank[me]:
                upward.add((path.relative_to(ROOT).as_posix(), module))
    new = sorted(upward - KNOWN_EXCEPTIONS)
    assert not new, f"imports against the order of docs/architecture.md: {new}"
    gone = sorted(KNOWN_EXCEPTIONS - upward)
    assert not gone, f"fixed, remove from KNOWN_EXCEPTIONS: {gone}"
