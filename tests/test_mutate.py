"""``scripts/mutate.py``: the mutants of a module, and killed vs surviving on a toy repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts import mutate

CALC = '''"""A toy module."""

LIMIT = 10


def add(a, b):
    total = a + b
    return total


def is_small(x):
    return x < LIMIT
'''
TESTS = '''from pkg.calc import add, is_small


def test_add():
    assert add(2, 3) == 5


def test_small():
    assert is_small(3) and not is_small(12)
'''


def _toy(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "calc.py").write_text(CALC)
    (root / "tests").mkdir()
    (root / "tests" / "test_calc.py").write_text(TESTS)
    return root / "pkg" / "calc.py"


def test_mutants_of_each_operator(tmp_path: Path) -> None:
    path = _toy(tmp_path)
    found = [(m.line, m.operator, m.description) for m in mutate.mutants(path, "pkg.calc")]
    assert sorted(found) == sorted([(3, "constant", "10 → 11"), (3, "constant", "10 → 9"),
                                    (3, "delete", "delete Assign"), (7, "arith", "Add → Sub"),
                                    (7, "delete", "delete Assign"), (12, "compare", "Lt → LtE")])
    assert mutate.tests_for("pkg.calc", tmp_path) == ["tests/test_calc.py"]
    sub = next(m for m in mutate.mutants(path, "pkg.calc") if m.operator == "arith")
    assert "total = a - b" in mutate.mutated_source(path, sub)
    assert path.read_text() == CALC  # the module itself is never written


@pytest.mark.slow  # seven pytest runs in subprocesses
def test_runner_reports_killed_and_surviving_mutants(tmp_path: Path) -> None:
    """The tests never probe x = 10 nor a limit of 9 or 11: those three mutants survive."""
    path = _toy(tmp_path / "repo")
    report = tmp_path / "r.json"
    code = mutate.main(["--root", str(tmp_path / "repo"), str(path), "--jobs", "1", "--report", str(report),
                        "--min-score", "0.6"])
    doc = json.loads(report.read_text())["modules"]["pkg.calc"]
    assert (doc["mutants"], doc["killed"]) == (6, 3) and code == 1  # score 0.5 < 0.6
    assert sorted(s["description"] for s in doc["survivors"]) == ["10 → 11", "10 → 9", "Lt → LtE"]
    assert path.read_text() == CALC
