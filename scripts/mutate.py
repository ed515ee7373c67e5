"""A small mutation-testing runner over the AST: does the default test suite notice a change?

    python3 scripts/mutate.py cimc/quant/slicing.py cimc/cost/model.py   # every mutant
    python3 scripts/mutate.py --sample 20 --seed 1 cimc/quant/slicing.py # a bounded random sample
    python3 scripts/mutate.py --report out.json ...                      # also write the records

Mutation operators (one change per mutant, at one AST node):

* ``arith``: ``+`` ↔ ``−``, ``*`` ↔ ``/``, ``//`` → ``*``, ``<<`` ↔ ``>>``;
* ``compare``: ``<`` ↔ ``<=``, ``>`` ↔ ``>=``, ``==`` ↔ ``!=``;
* ``constant``: an integer literal ``c`` → ``c + 1`` and ``c − 1`` (booleans excluded);
* ``bool``: ``and`` ↔ ``or``, ``not x`` → ``x``;
* ``delete``: a statement (assignment, augmented assignment, expression, ``raise``,
  ``assert``) replaced by ``pass``.

Docstrings, ``__all__`` and ``TYPE_CHECKING`` blocks are not mutated. Each mutant's module is
written into a private copy of the repository (the working tree is never touched) and the
tests that import the module (test files naming it: ``cimc.quant.slicing`` or ``from
cimc.quant import slicing``; ``--tests`` overrides) run there with ``pytest -x -q -m "not
slow"`` under a timeout (``--timeout``, default 3× the unmutated run + 10 s). A mutant is
*killed* when the tests fail or time out, *survives* when they pass. The report gives the
score per module (killed / all) and every survivor with its line, for ``docs/`` to explain
(equivalent) or for a test to kill.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SWAP_BIN = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Mult,
            ast.LShift: ast.RShift, ast.RShift: ast.LShift}
SWAP_CMP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}
DELETABLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Raise, ast.Assert)


@dataclass(frozen=True)
class Mutant:
    """One change: the ``index``-th mutation site of ``module`` (stable for a given source)."""

    module: str
    index: int
    line: int
    operator: str
    description: str


@dataclass(frozen=True)
class Outcome:
    mutant: Mutant
    status: str  # "killed", "survived", "timeout"
    seconds: float


def _skipped(tree: ast.Module) -> set[int]:
    """ids of nodes never mutated: docstrings, ``__all__``, ``if TYPE_CHECKING:`` blocks."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            skip.update(id(n) for n in ast.walk(first))
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            skip.update(id(n) for n in ast.walk(node))
    return skip


def _sites(tree: ast.Module) -> Iterator[tuple[ast.AST, str, str, object]]:
    """``(node, operator, description, change)`` for every mutation site, in ``ast.walk`` order."""
    skip = _skipped(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.BinOp) and type(node.op) in SWAP_BIN:
            new = SWAP_BIN[type(node.op)]
            yield node, "arith", f"{type(node.op).__name__} → {new.__name__}", new
        elif isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                new_cmp = SWAP_CMP.get(type(op))
                if new_cmp is not None:
                    yield node, "compare", f"{type(op).__name__} → {new_cmp.__name__}", (i, new_cmp)
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            for delta in (1, -1):
                yield node, "constant", f"{node.value} → {node.value + delta}", delta
        elif isinstance(node, ast.BoolOp):
            flip: type[ast.boolop] = ast.Or if isinstance(node.op, ast.And) else ast.And
            yield node, "bool", f"{type(node.op).__name__} → {flip.__name__}", flip
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield node, "bool", "not x → x", None
        if isinstance(node, DELETABLE) and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            yield node, "delete", f"delete {type(node).__name__}", None


def mutants(path: Path, module: str) -> list[Mutant]:
    """Every mutant of the module at ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [Mutant(module, i, getattr(node, "lineno", 0), op, desc)
            for i, (node, op, desc, _) in enumerate(_sites(tree))]


class _Apply(ast.NodeTransformer):
    """Rewrites the one node chosen (matched by identity in a deep copy)."""

    def __init__(self, target: ast.AST, operator: str, change: Any) -> None:
        self.target, self.operator, self.change = target, operator, change

    def visit(self, node: Any) -> Any:
        if node is not self.target:
            return super().visit(node)
        return self._change(node)

    def _change(self, node: Any) -> Any:
        if self.operator in ("arith", "bool") and not isinstance(node, ast.UnaryOp):
            node.op = self.change()
        elif self.operator == "compare":
            i, new = self.change
            node.ops[i] = new()
        elif self.operator == "constant":
            node.value += self.change
        elif self.operator == "bool":
            return node.operand
        elif self.operator == "delete":
            return ast.copy_location(ast.Pass(), node)
        return node


def mutated_source(path: Path, mutant: Mutant) -> str:
    """The module's source with ``mutant`` applied (``ast.unparse``: formatting is not kept)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    work = copy.deepcopy(tree)
    sites = list(_sites(work))
    node, operator, _, change = sites[mutant.index]
    out = _Apply(node, operator, change).visit(work)
    return ast.unparse(ast.fix_missing_locations(out))


def module_name(path: Path, root: Path) -> str:
    return ".".join(path.resolve().relative_to(root).with_suffix("").parts)


def tests_for(module: str, root: Path) -> list[str]:
    """Default test files that import ``module`` by its dotted name or ``from pkg import name``."""
    package, _, name = module.rpartition(".")
    pattern = re.compile(rf"(\b{re.escape(module)}\b)|(from {re.escape(package)} import [^\n]*\b{name}\b)")
    return sorted(str(p.relative_to(root)) for p in (root / "tests").glob("test_*.py")
                  if pattern.search(p.read_text(encoding="utf-8")))


def run_tests(copy_root: Path, tests: list[str], timeout: float) -> tuple[str, float]:
    """``("passed" | "failed" | "timeout", seconds)`` of the tests in the copy."""
    env = {**os.environ, "PYTHONPATH": str(copy_root), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not slow", *tests]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=copy_root, env=env, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - start
    return ("passed" if proc.returncode == 0 else "failed"), time.perf_counter() - start


def _copy_repo(root: Path, dest: Path) -> Path:
    target = dest / "repo"
    ignore = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".venv", "build", "dist", "*.egg-info",
                                    ".mypy_cache", ".ruff_cache", ".pytest_cache", "benchmarks")
    shutil.copytree(root, target, ignore=ignore)
    return target


def evaluate(root: Path, source: Path, batch: list[Mutant], tests: list[str], timeout: float,
             workdir: Path) -> list[Outcome]:
    """Run ``batch`` (mutants of one module) one after another in one private copy."""
    copy_root = _copy_repo(root, workdir)
    target = copy_root / source.relative_to(root)
    original = target.read_text(encoding="utf-8")
    out = []
    try:
        for mutant in batch:
            target.write_text(mutated_source(source, mutant), encoding="utf-8")
            status, seconds = run_tests(copy_root, tests, timeout)
            out.append(Outcome(mutant, {"passed": "survived", "failed": "killed"}.get(status, status), seconds))
    finally:
        target.write_text(original, encoding="utf-8")
    return out


def _chunks(items: list[Mutant], n: int) -> list[list[Mutant]]:
    return [items[i::n] for i in range(n) if items[i::n]]


def run_module(root: Path, path: Path, args: argparse.Namespace) -> tuple[list[Outcome], list[str], float]:
    module = module_name(path, root)
    tests = args.tests or tests_for(module, root)
    if not tests:
        raise SystemExit(f"no test file imports {module}: pass --tests")
    todo = mutants(path, module)
    if args.sample is not None and args.sample < len(todo):
        todo = sorted(random.Random(f"{args.seed}:{module}").sample(todo, args.sample), key=lambda m: m.index)
    with tempfile.TemporaryDirectory(prefix="cimc-mutate-") as tmp:
        base, seconds = run_tests(_copy_repo(root, Path(tmp) / "base"), tests, 1800)
    if base != "passed":
        raise SystemExit(f"the tests of {module} fail without a mutant: {' '.join(tests)}")
    timeout = args.timeout or 3 * seconds + 10
    with tempfile.TemporaryDirectory(prefix="cimc-mutate-") as tmp, ThreadPoolExecutor(args.jobs) as pool:
        batches = _chunks(todo, args.jobs)
        dirs = [Path(tmp) / str(i) for i in range(len(batches))]
        for d in dirs:
            d.mkdir()
        results = pool.map(lambda bd: evaluate(root, path, bd[0], tests, timeout, bd[1]),
                           zip(batches, dirs, strict=True))
        outcomes = sorted((o for r in results for o in r), key=lambda o: o.mutant.index)
    return outcomes, tests, seconds


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    killed = sum(o.status != "survived" for o in outcomes)
    return {"mutants": len(outcomes), "killed": killed,
            "score": round(killed / len(outcomes), 4) if outcomes else None,
            "survivors": [asdict(o.mutant) for o in outcomes if o.status == "survived"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="+", type=Path, help="module files (cimc/…/x.py)")
    parser.add_argument("--tests", nargs="*", help="test files to run (default: those importing the module)")
    parser.add_argument("--sample", type=int, help="at most this many mutants per module, drawn at random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--timeout", type=float, help="seconds per mutant (default: 3× the clean run + 10)")
    parser.add_argument("--report", type=Path, help="write every outcome and the summaries as JSON")
    parser.add_argument("--min-score", type=float, default=0.0, help="exit 1 when a module scores below this")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = args.root.resolve()
    report: dict[str, object] = {}
    failed = False
    for path in args.modules:
        path = (root / path).resolve() if not path.is_absolute() else path
        outcomes, tests, seconds = run_module(root, path, args)
        module = module_name(path, root)
        summ: dict[str, Any] = summary(outcomes)
        report[module] = {**summ, "tests": tests, "clean_run_s": round(seconds, 2),
                          "outcomes": [{**asdict(o.mutant), "status": o.status, "seconds": round(o.seconds, 2)}
                                       for o in outcomes]}
        print(f"{module}: {summ['killed']}/{summ['mutants']} killed (score {summ['score']})")
        for s in summ["survivors"]:
            print(f"  survived: line {s['line']}: {s['operator']} {s['description']}")
        failed |= summ["score"] is not None and summ["score"] < args.min_score
    if args.report:
        args.report.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
