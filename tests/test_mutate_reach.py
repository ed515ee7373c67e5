"""``scripts/mutate.py``: mutants whose effect reaches the tests other than through a call of the
mutated function — a constant another module imported by value (under its own name or an alias,
through a relative import), a function that only ran while the module was imported, a function
run in a thread — are killed, as they are when the mutant is written to the file."""

from __future__ import annotations

import json
from pathlib import Path

from scripts import mutate

CALC = '''from pkg.registry import register

PHASES = ("float", "quant")
LIMIT = 10


def _index(names):
    return {name: i + 1 for i, name in enumerate(names)}


ORDER = _index(["a", "b"])


def rank(name):
    return ORDER[name]


def _double(x):
    return 2 * x


def total(xs):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        return sum(pool.map(_double, xs))


@register
class Step:
    needs = ("a",)
'''
USER = '''from .calc import LIMIT as CAP, PHASES


def check(phase):
    if phase not in PHASES:
        raise ValueError(phase)
    return phase


def small(x):
    return x < CAP
'''
REGISTRY = '''PASSES = {}


def register(cls):
    PASSES[cls.__name__] = cls
    return cls
'''
TESTS = '''import pytest

from pkg import user
from pkg.calc import rank, total


def test_rank():
    assert rank("b") == 2


def test_check():
    assert user.check("quant") == "quant"
    with pytest.raises(ValueError):
        user.check("int")


def test_small():
    assert user.small(9) and not user.small(10)


def test_total():
    assert total([1, 2]) == 6


def test_needs():
    from pkg.registry import PASSES

    assert getattr(PASSES["Step"], "needs", ()) == ("a",)
'''


def _reach_toy(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "calc.py").write_text(CALC)
    (root / "pkg" / "user.py").write_text(USER)
    (root / "pkg" / "registry.py").write_text(REGISTRY)
    (root / "tests").mkdir()
    (root / "tests" / "test_pkg.py").write_text(TESTS)
    return root / "pkg" / "calc.py"


def test_mutants_reaching_tests_through_imports_threads_and_import_time_are_killed(tmp_path: Path) -> None:
    """Each of these survived the runner before (the first four as survivors, the import-time
    ones as ``no coverage``) although the test named kills it when written to the file:

    * deleting ``PHASES``, which ``pkg.user`` imported by value (``cimc.train.layer.PHASES``
      read by ``cimc.train.module``): the deletion reaches ``user`` (``test_check``);
    * ``LIMIT`` ± 1, imported as ``CAP`` by a relative import: rebound there (``test_small``);
    * ``_index``'s ``i + 1`` → ``i − 1``, ``1`` → ``2``, ``1`` → ``0``: ``_index`` runs only
      while the module is imported (``ORDER``), so the module is re-executed with the mutant
      and every test of the module runs (``test_rank``);
    * ``_double`` runs in a worker thread: traced there too (``test_total``);
    * deleting the class attribute ``Step.needs``, read through a registry
      (``registry.get(name).needs``) (``test_needs``)."""
    path = _reach_toy(tmp_path / "repo")
    report = tmp_path / "r.json"
    mutate.main(["--root", str(tmp_path / "repo"), str(path), "--jobs", "2", "--report", str(report),
                 "--tests", "tests/test_pkg.py"])
    got = {(o["line"], o["description"]): o for o in json.loads(report.read_text())["modules"]["pkg.calc"]["outcomes"]}
    expect = {(3, "delete Assign"): "tests/test_pkg.py::test_check",
              (4, "10 → 11"): "tests/test_pkg.py::test_small",
              (4, "10 → 9"): "tests/test_pkg.py::test_small",
              (8, "Add → Sub"): "tests/test_pkg.py::test_rank",
              (8, "1 → 2"): "tests/test_pkg.py::test_rank",
              (8, "1 → 0"): "tests/test_pkg.py::test_rank",
              (19, "Mult → Div"): "tests/test_pkg.py::test_total",
              (31, "delete Assign"): "tests/test_pkg.py::test_needs"}
    assert {key: (got[key]["status"], got[key]["detail"]) for key in expect} == \
        {key: ("killed", test) for key, test in expect.items()}
    assert {got[key]["level"] for key in [(8, "Add → Sub"), (8, "1 → 2")]} == {"import"}
    assert path.read_text() == CALC
