"""The import direction of ``cimc``'s folders, declared in docs/architecture.md's folder table: a package imports only
packages of lower layers, never a sibling of its own layer, and no module imports another
that imports it back, directly or around a circle. Every import counts, also those inside functions (lazy imports only
delay a dependency; they do not remove it); imports under ``TYPE_CHECKING`` do not."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from cimc.ir.order import cycle, topological

ROOT = Path(__file__).resolve().parents[1] / "cimc"

DOC = ROOT.parent / "docs" / "architecture.md"


def doc_layers() -> list[list[str]]:
    """The layers of the folder table of docs/architecture.md, top to bottom (the document is
    where the order is declared; this test holds the code to it)."""
    section = DOC.read_text(encoding="utf-8").split("## The folders of `cimc/`", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| `([a-z_]+)(?:/|\.py)` \|", section, flags=re.MULTILINE)
    assert rows, "docs/architecture.md has no folder table"
    layers: dict[int, list[str]] = {}
    for rank, name in rows:
        layers.setdefault(int(rank), []).append(name)
    return [layers[k] for k in sorted(layers)]


#: Top to bottom. A unit is a sub-package or a top-level module of ``cimc``.
LAYERS = doc_layers()
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


def imports(path: Path) -> Iterator[tuple[str, bool]]:
    """(imported cimc module, whether the import is at module level) for each import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if node.lineno in skip if hasattr(node, "lineno") else False:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cimc") and not node.level:
            for alias in node.names:  # ``from cimc.quant import numerics`` imports a module
                sub = f"{node.module}.{alias.name}"
                known = (ROOT.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                yield (sub if known else node.module), id(node) in top
        elif isinstance(node, ast.Import):
            yield from ((a.name, id(node) in top) for a in node.names if a.name.startswith("cimc."))


def edges() -> Iterator[tuple[str, str, bool]]:
    for path in sorted(ROOT.rglob("*.py")):
        for target, top in imports(path):
            yield module_name(path), target, top


def test_every_unit_has_a_layer() -> None:
    units = {p.stem if p.is_file() else p.name for p in ROOT.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    assert units - set(RANK) == set(), "add the new package or module to the table of docs/architecture.md"


def upward(pairs: Iterator[tuple[str, str, bool]]) -> list[str]:
    """The imports that do not go down: into the same layer's sibling or a higher layer."""
    return sorted(f"{src} -> {dst}" for src, dst, _ in pairs
                  if (a := unit_of(src)) and (b := unit_of(dst)) and a != b and RANK[a] >= RANK[b])


def test_imports_go_down_the_layers() -> None:
    assert upward(edges()) == []


def test_no_import_cycles() -> None:
    """Not even through an import inside a function (a lazy import that closes a circle only
    hides it)."""
    pairs = {(src, dst) for src, dst, _ in edges() if src != dst}
    modules = sorted({m for pair in pairs for m in pair})
    index = {m: i for i, m in enumerate(modules)}
    deps: list[set[int]] = [set() for _ in modules]
    for src, dst in pairs:
        deps[index[src]].add(index[dst])
    order = topological(deps)
    assert [modules[i] for i in cycle(deps, set(order))] == []


def test_the_check_sees_a_wrong_import(tmp_path: Path) -> None:
    """The rule is not vacuous: an upward import in a low layer is reported."""
    assert RANK["quant"] > RANK["passes"]
    probe = tmp_path / "probe.py"
    probe.write_text("from cimc.passes.manager import GraphPass\n", encoding="utf-8")
    assert list(imports(probe)) == [("cimc.passes.manager", True)]
    assert upward(iter([("cimc.quant.probe", "cimc.passes.manager", True)])) == [
        "cimc.quant.probe -> cimc.passes.manager"]
    assert upward(iter([("cimc.views.x", "cimc.emulator.run", False)])) == ["cimc.views.x -> cimc.emulator.run"]
    assert upward(iter([("cimc.passes.x", "cimc.quant.numerics", True)])) == []
