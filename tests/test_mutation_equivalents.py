"""``scripts/mutate.py --equivalents``: documented equivalents are reported, not re-run, until
their line changes, and still count as survivors."""

from __future__ import annotations

import json
from pathlib import Path

from scripts import mutate, mutation_equivalents

CALC = '''LIMIT = 10


def twice(x):
    return x.reshape(-1) + x.reshape(-1)


def is_small(x):
    return x < LIMIT
'''
TESTS = '''import numpy as np

from pkg.calc import is_small, twice


def test_small():
    assert is_small(3) and not is_small(12)


def test_twice():
    assert twice(np.ones(2)).tolist() == [2.0, 2.0]
'''


def _toy(root: Path) -> Path:
    for rel, text in {"pkg/__init__.py": "", "pkg/calc.py": CALC, "tests/test_calc.py": TESTS}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return (root / "pkg" / "calc.py").resolve()


def _report(path: Path, *spots: tuple[int, str, int]) -> dict[str, object]:
    """A report whose survivors are the ``(line, description, k)``-th mutants of ``path``."""
    found = mutate.mutants(path, "pkg.calc")
    survivors = []
    for line, description, k in spots:
        m = [m for m in found if (m.line, m.description) == (line, description)][k]
        survivors.append({"index": m.index, "line": line, "operator": m.operator, "description": description,
                          "status": "survived", "detail": None})
    return {"modules": {"pkg.calc": {"survivors": survivors}}}


def _remember(root: Path, path: Path, report: dict[str, object], lines: list[int]) -> Path:
    (root / "r.json").write_text(json.dumps(report))
    eq = root / "eq.json"
    assert mutate.main(["--root", str(root), str(path), "--remember", str(root / "r.json"), "--equivalents",
                        str(eq), "--lines", *map(str, lines)]) == 0
    return eq


def _known(root: Path, path: Path, eq: Path) -> list[tuple[int, str]]:
    args = mutate.cli_parser().parse_args(["--equivalents", str(eq)])
    spec = mutate.plan(root, [path], args, {path: ["tests/test_calc.py"]})["modules"][0]
    return [(m["line"], m["description"]) for m in spec["known"]]


def test_a_documented_equivalent_is_not_rerun_until_its_line_changes(tmp_path: Path) -> None:
    """Only the report's survivors on the lines named are remembered (line 9's ``<`` → ``<=``
    is not: its line is not named); the second ``reshape(-1)`` of line 5 is another mutant (its
    occurrence) and still runs; an edit of line 5 makes its mutant run again."""
    path = _toy(tmp_path)
    eq = _remember(tmp_path, path, _report(path, (5, "1 → 2", 0), (9, "Lt → LtE", 0)), [5])
    assert _known(tmp_path, path, eq) == [(5, "1 → 2")]
    entry = json.loads(eq.read_text())[0]
    assert (entry["text"], entry["occurrence"]) == ("return x.reshape(-1) + x.reshape(-1)", 0)
    path.write_text(CALC.replace("x.reshape(-1) + x", "x.reshape(-1) + 1 * x"))
    assert _known(tmp_path, path, eq) == []


def test_a_known_equivalent_counts_as_a_survivor_without_running(tmp_path: Path) -> None:
    """The score is the same with or without ``--equivalents``: the remembered mutant is
    reported survived (no test run, no time), the others run as before."""
    root = tmp_path / "repo"
    path = _toy(root)
    eq = _remember(root, path, _report(path, (5, "1 → 2", 0), (5, "1 → 2", 1)), [5])
    report = tmp_path / "out.json"
    mutate.main(["--root", str(root), str(path), "--jobs", "1", "--tests", "tests/test_calc.py",
                 "--equivalents", str(eq), "--lines", "5", "9", "--report", str(report)])
    got = json.loads(report.read_text())["modules"]["pkg.calc"]
    known = [o for o in got["outcomes"] if o["detail"] == mutation_equivalents.NOT_RERUN]
    assert [(o["line"], o["status"], o["tests"]) for o in known] == [(5, "survived", 0)] * 2
    assert got["not_rerun"] == 2 and got["planned"] == got["mutants"]
    assert got["survived"] == 3  # the two known and line 9's ``<=`` (run: 3 is not 10)
    assert "documented equivalent, not re-run" in report.with_suffix(".md").read_text()

