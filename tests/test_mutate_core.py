"""``scripts/mutate.py --all``: each module of ``CORE`` runs the test files declared for it, and a
module's mutants run only tests of its own files, even where another module's tests of the same
run execute its lines (the narrowed lists are what keep a survivor cheap)."""

from __future__ import annotations

import argparse
from pathlib import Path

from scripts import mutate

ROOT = Path(__file__).resolve().parents[1]

CALC = '''def add(a, b):
    return a + b


def is_small(x):
    return x < 10


def unused(x):
    return x * 2
'''
OTHER = '''from pkg.calc import add


def double(x):
    return add(x, x) * 1
'''
TEST_CALC = '''from pkg.calc import is_small


def test_small():
    assert is_small(3) and not is_small(12)
'''
TEST_OTHER = '''from pkg.other import double


def test_double():
    assert double(2) == 4
'''


def test_all_plans_each_core_module_with_its_declared_tests() -> None:
    """The plan of ``--all`` gives every module of ``CORE`` its declared list (not the default
    selection of every file importing it), each file exists, the run collects their union, and
    ``--tests`` still overrides the lists."""
    args = mutate.cli_parser().parse_args(["--all", "--sample", "0"])
    job = mutate.plan(ROOT, *_planned(args))
    got = {Path(m["path"]).relative_to(ROOT).as_posix(): m["tests"] for m in job["modules"]}
    assert got == {path: list(tests) for path, tests in mutate.CORE.items()}
    assert all((ROOT / t).is_file() for tests in mutate.CORE.values() for t in tests)
    assert job["tests"] == sorted({t for tests in mutate.CORE.values() for t in tests})
    quantize = got["cimc/passes/quantize.py"]
    assert set(quantize) != set(mutate.tests_for("cimc.passes.quantize", ROOT))  # narrowed
    args = mutate.cli_parser().parse_args(["--all", "--sample", "0", "--tests", "tests/test_cost_model.py"])
    job = mutate.plan(ROOT, *_planned(args))
    assert {tuple(m["tests"]) for m in job["modules"]} == {("tests/test_cost_model.py",)}


def _planned(args: argparse.Namespace) -> tuple[list[Path], argparse.Namespace, dict[Path, list[str]]]:
    paths, declared = mutate.selection(ROOT, args)
    return paths, args, declared


def test_a_core_module_named_alone_runs_its_declared_tests() -> None:
    """Named on the command line, a module of ``CORE`` keeps its list (its score is the one
    ``--all`` reports); a module outside ``CORE`` gets every test file importing it."""
    args = mutate.cli_parser().parse_args(["cimc/mapping/tiling.py", "cimc/ir/graph.py", "--sample", "0"])
    job = mutate.plan(ROOT, *_planned(args))
    tests = {m["module"]: m["tests"] for m in job["modules"]}
    assert tests["cimc.mapping.tiling"] == list(mutate.CORE["cimc/mapping/tiling.py"])
    assert tests["cimc.ir.graph"] == mutate.tests_for("cimc.ir.graph", ROOT)


def _toy(root: Path) -> tuple[Path, Path]:
    for rel, text in {"pkg/__init__.py": "", "pkg/calc.py": CALC, "pkg/other.py": OTHER,
                      "tests/test_calc.py": TEST_CALC, "tests/test_other.py": TEST_OTHER}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return (root / "pkg/calc.py").resolve(), (root / "pkg/other.py").resolve()


def test_a_module_runs_only_its_declared_tests(tmp_path: Path) -> None:
    """``calc.add`` is executed only by ``test_other.py``, which is ``other``'s file, not
    ``calc``'s: its mutant has no coverage (before, the test of the other module ran and killed
    it), while ``is_small``'s mutant runs ``test_calc.py``'s one test and ``other``'s constant is
    killed by its own test. The last mutants of the run (``unused``) have no coverage: the run
    still ends normally (the runner once waited for a child when none was left, and stopped)."""
    root = tmp_path / "repo"
    calc, other = _toy(root)
    args = mutate.cli_parser().parse_args(["--jobs", "1"])
    job = mutate.plan(root, [other, calc], args, {calc: ["tests/test_calc.py"], other: ["tests/test_other.py"]})
    got = mutate.run_plan(root, job)
    assert "stopped" not in got and "error" not in got
    assert got["coverage"]["tests"] == 2  # both files collected and traced
    out = {(o["module"], o["line"], o["description"]): o for o in got["outcomes"]}
    add = out[("pkg.calc", 2, "Add → Sub")]
    assert (add["status"], add["tests"]) == ("no coverage", 0)
    small = out[("pkg.calc", 6, "Lt → LtE")]
    assert (small["status"], small["tests"]) == ("survived", 1)
    assert out[("pkg.other", 5, "1 → 2")]["status"] == "killed"
    # the run ends on mutants without coverage, none of them forked: every one is reported
    assert [o["status"] for o in got["outcomes"] if o["line"] == 10] == ["no coverage"] * 3


def test_lines_restricts_the_mutants_to_those_lines() -> None:
    """``--lines`` re-checks chosen survivors: only the mutants on those lines are planned."""
    args = mutate.cli_parser().parse_args(["cimc/mapping/tiling.py", "--lines", "33", "37"])
    job = mutate.plan(ROOT, *_planned(args))
    lines = [m["line"] for m in job["modules"][0]["mutants"]]
    every = mutate.mutants(ROOT / "cimc/mapping/tiling.py", "cimc.mapping.tiling")
    assert lines == [m.line for m in every if m.line in (33, 37)] and set(lines) == {33, 37}
