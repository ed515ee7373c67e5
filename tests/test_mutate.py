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


SELECT = '''LIMIT = 10


def add(a, b):
    return a + b


def is_small(x):
    return x < LIMIT


def unused(x):
    return x * 2
'''


def _select_toy(root: Path) -> Path:
    path = _toy(root)
    path.write_text(SELECT)
    return path


def test_each_mutant_runs_only_the_tests_that_execute_its_line(tmp_path: Path) -> None:
    """Per-line selection on the toy: ``add``'s mutant runs test_add alone (which kills it),
    ``is_small``'s runs test_small alone, ``unused`` has no test (``no coverage``, never run),
    and a module-level change (LIMIT) runs every test that executes any line of the module."""
    path = _select_toy(tmp_path / "repo")
    report = tmp_path / "r.json"
    mutate.main(["--root", str(tmp_path / "repo"), str(path), "--jobs", "2", "--report", str(report)])
    got = {(o["line"], o["description"]): o for o in json.loads(report.read_text())["modules"]["pkg.calc"]["outcomes"]}
    add, small, unused = got[(5, "Add → Sub")], got[(9, "Lt → LtE")], got[(13, "Mult → Div")]
    assert (add["status"], add["tests"], add["detail"]) == ("killed", 1, "tests/test_calc.py::test_add")
    assert (small["status"], small["tests"], small["level"]) == ("survived", 1, "function")
    assert (unused["status"], unused["tests"]) == ("no coverage", 0)
    limit = got[(1, "10 → 11")]
    assert (limit["status"], limit["tests"], limit["level"]) == ("survived", 2, "module")
    assert got[(1, "delete Assign")]["status"] == "killed"  # LIMIT undefined: a NameError in test_small
    assert path.read_text() == SELECT


def test_a_patched_function_changes_for_every_importer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-memory patching swaps the live function's code, so a name bound by ``from m import f``
    before the patch runs the mutant too; a module-level change rebinds the constant."""
    from scripts import mutation_worker as worker

    path = _select_toy(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    mod = importlib.import_module("pkg.calc")
    add, is_small = mod.add, mod.is_small
    original = compile(path.read_text(), str(path), "exec", dont_inherit=True)
    live = worker.live_functions({str(path)})
    by = {(m.line, m.description): m for m in mutate.mutants(path, "pkg.calc")}
    code = worker.mutant_code(str(path), by[(5, "Add → Sub")], SELECT)
    level = worker.apply_mutant(mod, code, original, live, tmp_path)
    assert level == "function" and add(2, 3) == -1
    code = worker.mutant_code(str(path), by[(1, "10 → 9")], SELECT)
    level = worker.apply_mutant(mod, code, original, live, tmp_path)
    assert level == "module" and mod.LIMIT == 9 and not is_small(9) and is_small(8)
    monkeypatch.delitem(__import__("sys").modules, "pkg.calc")
    monkeypatch.delitem(__import__("sys").modules, "pkg")


def test_a_core_module_with_declared_tests_runs_those_unless_tests_are_given() -> None:
    """``CORE`` names existing test files; ``plan`` takes them for its modules, ``--tests``
    still overrides, and a module outside ``CORE`` keeps the files importing it."""
    root = mutate.ROOT
    assert all((root / f).is_file() for files in mutate.CORE.values() for f in files)
    declared = "cimc/passes/quantize.py"

    def tests_of(module: str, given: list[str] | None) -> list[str]:
        args = mutate.argparse.Namespace(tests=given, sample=0, seed=0, jobs=1, timeout=None)
        return mutate.plan(root, [(root / module).resolve()], args)["modules"][0]["tests"]

    assert tests_of(declared, None) == list(mutate.CORE[declared])
    assert tests_of(declared, ["tests/test_mutate.py"]) == ["tests/test_mutate.py"]
    assert tests_of("cimc/ir/graph.py", None) == mutate.tests_for("cimc.ir.graph", root)


def test_live_functions_skip_a_dead_weak_proxy() -> None:
    """``gc.get_objects()`` may hold a ``weakref.proxy`` whose referent died (numba leaves
    some): looking for live functions passes over it instead of raising ``ReferenceError``."""
    import gc
    import weakref

    from scripts import mutation_worker as worker

    class Target:
        pass

    target = Target()
    proxy = weakref.proxy(target)
    holder = [proxy]
    del target
    gc.collect()
    with pytest.raises(ReferenceError):
        isinstance(holder[0], type(test_live_functions_skip_a_dead_weak_proxy))
    assert worker.live_functions({__file__}) != {}  # this module's functions, found past the proxy
