"""A small mutation-testing runner over the AST: does the default test suite notice a change?

    python3 scripts/mutate.py cimc/quant/slicing.py cimc/cost/model.py   # every mutant
    python3 scripts/mutate.py --sample 20 --seed 1 cimc/quant/slicing.py # a bounded random sample
    python3 scripts/mutate.py --report out.json ...                      # also write the records
    python3 scripts/mutate.py --all --equivalents docs/mutation_equivalents.json  # skip documented equivalents

Mutation operators (one change per mutant, at one AST node):

* ``arith``: ``+`` ↔ ``−``, ``*`` ↔ ``/``, ``//`` → ``*``, ``<<`` ↔ ``>>``;
* ``compare``: ``<`` ↔ ``<=``, ``>`` ↔ ``>=``, ``==`` ↔ ``!=``;
* ``constant``: an integer literal ``c`` → ``c + 1`` and ``c − 1`` (booleans excluded);
* ``bool``: ``and`` ↔ ``or``, ``not x`` → ``x``;
* ``delete``: a statement (assignment, augmented assignment, expression, ``raise``,
  ``assert``) replaced by ``pass``.

Docstrings, ``__all__`` and ``TYPE_CHECKING`` blocks are not mutated. The tests of a module are
the test files that import it (naming ``cimc.quant.slicing`` or ``from cimc.quant import
slicing``; ``--tests`` overrides); ``scripts/mutation_worker.py`` runs them once traced (which
test executes which line) and then each mutant, patched in memory in a forked child, against the
passing tests that execute its lines (``pytest -m "not slow"``) under a timeout (``--timeout``,
default 3× their clean time + 10 s); the working tree is never written. A mutant is *killed*
when a test fails or times out, *survives* when they pass, has *no coverage* when no test
executes its lines. The report gives the score per module (killed / all), the CPU time of the
run and of each mutant's child, and every survivor with its line, for ``docs/`` to explain
(equivalent) or for a test to kill. ``--equivalents FILE`` reports the survivors that ``docs/``
explains as equivalent (``scripts/mutation_equivalents.py``) without re-running them; they
still count as survivors.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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


def mutated_tree(path: Path, mutant: Mutant, source: str | None = None) -> ast.Module:
    """The module's AST (of ``source``, default the file's text) with ``mutant`` applied; every
    node keeps its source position, so the code compiled from it equals the module's own code
    everywhere but at the change."""
    tree = ast.parse(path.read_text(encoding="utf-8") if source is None else source)
    sites = list(_sites(tree))
    node, operator, _, change = sites[mutant.index]
    out = _Apply(node, operator, change).visit(tree)
    return ast.fix_missing_locations(out)


def mutated_source(path: Path, mutant: Mutant) -> str:
    """The module's source with ``mutant`` applied (``ast.unparse``: formatting is not kept)."""
    return ast.unparse(mutated_tree(path, mutant))


def module_name(path: Path, root: Path) -> str:
    return ".".join(path.resolve().relative_to(root).with_suffix("").parts)


def _names(module: str) -> re.Pattern[str]:
    """Text that imports ``module``: its dotted name, ``from pkg import name``, or its package's
    own ``from pkg import …`` / ``import pkg`` (a package re-exports its modules)."""
    package, _, name = module.rpartition(".")
    pkg = re.escape(package)
    return re.compile(rf"(\b{re.escape(module)}\b)|(from {pkg} import [^\n]*\b{name}\b)"
                      rf"|(from {pkg} import )|(import {pkg}\s*$)", re.MULTILINE)


def tests_for(module: str, root: Path) -> list[str]:
    """Default test files that import ``module`` (``_names``), directly or through a helper
    module of ``tests/`` (``tests/cim_helpers.py``) that does."""
    pattern = _names(module)
    helpers = [p.stem for p in (root / "tests").glob("*.py")
               if not p.name.startswith("test_") and pattern.search(p.read_text(encoding="utf-8"))]
    via = re.compile(rf"\b(tests\.)?({'|'.join(map(re.escape, helpers))})\b import|import (tests\.)?"
                     rf"({'|'.join(map(re.escape, helpers))})\b") if helpers else None
    out = []
    for p in sorted((root / "tests").glob("test_*.py")):
        text = p.read_text(encoding="utf-8")
        if pattern.search(text) or (via is not None and via.search(text)):
            out.append(str(p.relative_to(root)))
    return out


def _draw(todo: list[Mutant], args: argparse.Namespace, module: str) -> list[Mutant]:
    """The mutants on ``--lines`` (all without it), of which ``--sample`` drawn at random."""
    if getattr(args, "lines", None):
        todo = [m for m in todo if m.line in args.lines]
    if args.sample is None or args.sample >= len(todo):
        return todo
    return sorted(random.Random(f"{args.seed}:{module}").sample(todo, args.sample), key=lambda m: m.index)


def _equivalents_module() -> Any:
    """``scripts/mutation_equivalents.py`` (imported late: it imports this module)."""
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))
    from scripts import mutation_equivalents

    return mutation_equivalents


def _known_equivalents(source: str, found: list[Mutant], drawn: list[Mutant],
                       file: Path | None) -> tuple[list[Mutant], list[Mutant]]:
    """``drawn`` split into the mutants to run and those ``--equivalents FILE`` documents as
    equivalent (their key unchanged: ``scripts/mutation_equivalents.py``), which are not re-run."""
    if file is None:
        return drawn, []
    eq = _equivalents_module()
    known, by_index = eq.load(file), eq.keys(source, found)
    return ([m for m in drawn if by_index[m.index] not in known], [m for m in drawn if by_index[m.index] in known])


def plan(root: Path, paths: list[Path], args: argparse.Namespace,
         declared: dict[Path, list[str]] | None = None) -> dict[str, Any]:
    """What the worker runs: the union of the modules' test files, and every mutant drawn. A
    module's test files are ``--tests``, else its ``declared`` list (default: ``CORE``'s), else
    those importing it (``tests_for``); its mutants run only tests of its own files."""
    if declared is None:  # CORE's lists
        declared = {(root / p).resolve(): list(t) for p, t in CORE.items()}
    modules, tests = [], set(args.tests or [])
    for path in paths:
        module = module_name(path, root)
        own = args.tests or declared.get(path) or tests_for(module, root)
        if not own:
            raise SystemExit(f"no test file imports {module}: pass --tests")
        tests.update(own)
        source = path.read_text(encoding="utf-8")
        drawn, known = _known_equivalents(source, mutants(path, module), _draw(mutants(path, module), args, module),
                                          getattr(args, "equivalents", None))
        modules.append({"module": module, "path": str(path), "tests": own, "source": source,
                        "mutants": [asdict(m) for m in drawn], "known": [asdict(m) for m in known]})
    return {"root": str(root), "tests": sorted(tests), "modules": modules, "jobs": args.jobs,
            "timeout": args.timeout}


def _exit_on_signal(signum: int, frame: Any) -> None:
    """Stop the runner (``run_plan`` then waits for the worker's report of what ran); later
    SIGTERMs are ignored (``timeout`` signals the process group, then the worker is signalled)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(128 + signum)


def run_plan(root: Path, job: dict[str, Any]) -> dict[str, Any]:
    """Run the worker (``scripts/mutation_worker.py``) on ``job`` in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.setdefault(var, "1")  # one thread per job: --jobs processes share the cores
    if any(spec["module"] in INTERPRETED for spec in job["modules"]):
        env["NUMBA_DISABLE_JIT"] = "1"
    with tempfile.TemporaryDirectory(prefix="cimc-mutate-plan-") as tmp:
        plan_file, result = Path(tmp) / "plan.json", Path(tmp) / "result.json"
        plan_file.write_text(json.dumps(job), encoding="utf-8")
        worker = Path(__file__).resolve().with_name("mutation_worker.py")
        proc = subprocess.Popen([sys.executable, str(worker), str(plan_file), str(result)], cwd=root, env=env)
        signal.signal(signal.SIGTERM, _exit_on_signal)
        stop: BaseException | None = None
        try:
            proc.wait()
        except (SystemExit, KeyboardInterrupt) as exc:  # stopped: the report keeps what ran
            stop = exc
        finally:
            if proc.poll() is None:  # the worker ends its own children and writes what ran
                proc.terminate()
                proc.wait()
        if not result.exists():
            if stop is not None:
                raise stop
            raise SystemExit("the mutation worker wrote no result (see its output above)")
        out: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
    if stop is not None:
        out["stopped"] = True
    if "error" in out and not out.get("stopped"):
        raise SystemExit(f"mutation run failed: {out['error']}")
    return out


KILLED = ("killed", "timeout")
NOT_RERUN = "documented equivalent, not re-run"  # the detail of a survivor --equivalents did not run


def summary(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per status, the score (killed or timed out / all) and the survivors."""
    counts = {s: sum(o["status"] == s for o in outcomes) for s in ("killed", "timeout", "survived",
                                                                    "no coverage", "error")}
    killed = counts["killed"] + counts["timeout"]
    return {"mutants": len(outcomes), "killed": killed, **{k.replace(" ", "_"): v for k, v in counts.items()},
            "score": round(killed / len(outcomes), 4) if outcomes else None,
            "seconds": round(sum(o["seconds"] for o in outcomes), 1),
            "cpu_s": round(sum(o.get("cpu", 0.0) for o in outcomes), 1),
            "survivors": [{k: o[k] for k in ("index", "line", "operator", "description", "status", "detail")}
                          for o in outcomes if o["status"] not in KILLED]}


def markdown(report: dict[str, Any]) -> str:
    """The per-module table, then every survivor by module and line."""
    rows = ["| module | mutants | killed | timeout | survived | no coverage | error | score | child time (s) |"
            " child CPU (s) |", "|---|---|---|---|---|---|---|---|---|---|"]
    rest = []
    for module, r in report["modules"].items():
        planned = r.get("planned", r["mutants"])
        count = f"{r['mutants']}" if r["mutants"] == planned else f"{r['mutants']} of {planned}"
        score = "–" if r["score"] is None else f"{r['score']:.1%}"
        rows.append(f"| `{module}` | {count} | {r['killed'] - r['timeout']} | {r['timeout']} | {r['survived']}"
                    f" | {r['no_coverage']} | {r['error']} | {score} | {r['seconds']}"
                    f" | {r.get('cpu_s', '')} |")
        rest += [f"* `{module}:{s['line']}` {s['operator']} {s['description']}: {s['status']}"
                 + (f" ({s['detail']})" if s["status"] == "error" or s["detail"] == NOT_RERUN else "")
                 for s in r["survivors"]]
    cov = report["coverage"]
    head = (f"Wall time {report['wall_s']} s, CPU time {report['cpu_s']} s (--jobs {report['jobs']}, load average "
            f"{report['load'][0]} at the start, {report['load'][1]} at the end); coverage run: "
            f"{cov.get('tests', '?')} tests in {cov.get('seconds', '?')} s ({cov.get('cpu_s', '?')} s CPU)."
            + (" **Stopped** before every mutant ran: the scores count those that did."
               if report.get("stopped") else ""))
    return "\n".join([head, "", *rows, "", "Survivors:", "", *(rest or ["(none)"])]) + "\n"


def _files(*stems: str) -> tuple[str, ...]:
    return tuple(f"tests/{stem}.py" for stem in stems)


#: The layout and numerics modules' tests (the list of the session-5 runs).
_LAYOUT_TESTS = _files("test_tiling_placement", "test_tiling_bounds", "test_tile_wordlines_pass",
                       "test_placement_violations", "test_placement_policies", "test_fold_batchnorm",
                       "test_fold_batchnorm_edges", "test_slicing_ranges", "test_sliced_bounds", "test_cost_model",
                       "test_cost_sliced", "test_numerics_contract", "test_reference_executors",
                       "test_signed_one_bit", "test_interpreter", "test_pass_registry")
_EMULATOR_TESTS = _files("test_emulator", "test_emulator_memory", "test_sliced_exact", "test_batching",
                         "test_layout_geometry", "test_batch_inputs", "test_emulator_blocks", "test_emulator_inputs",
                         "test_emulator_parts", "test_emulator_run_mutants", "test_emulator_scratch",
                         "test_emulator_product", "test_emulator_lanes", "test_emulator_kernels")
_QAT_TESTS = _files("test_train_quant", "test_train_quant_grad", "test_train_step_grad")

#: Modules of numba-compiled loops: their mutants run with the JIT off (``NUMBA_DISABLE_JIT``),
#: as Python, or the tracer would see none of their lines and numba would load the unmutated
#: machine code from its cache (keyed by the file on disk, which a mutant never changes). Their
#: tests must be ones that run on small arrays (``CORE``'s list).
INTERPRETED = frozenset({"cimc.emulator.kernels"})

#: The numerical core that ``--all`` runs (issue 17), declared once: each module with the test
#: files its mutants run (``--tests`` overrides). The default selection (every test file
#: importing the module) makes a survivor of a module that every compile executes cost minutes;
#: these are the files of the per-module runs in ``docs/mutation.md``.
CORE: dict[str, tuple[str, ...]] = {
    "cimc/quant/numerics.py": _LAYOUT_TESTS,
    "cimc/quant/reference.py": _files("test_reference_executors", "test_bitexact", "test_digital_exact",
                                      "test_lrn_even", "test_batch_inputs", "test_signed_one_bit",
                                      "test_shift_remainders", "test_cim_onnx", "test_sliced_exact",
                                      "test_sliced_mapping", "test_qat_sliced", "test_numerics_contract",
                                      "test_conv_workspace", "test_batching", "test_fast_paths"),
    "cimc/ir/interpreter.py": _LAYOUT_TESTS,
    "cimc/quant/slicing.py": (*_LAYOUT_TESTS, *_files("test_slicing", "test_offset_digits", "test_sliced_exact")),
    "cimc/cost/model.py": _LAYOUT_TESTS,
    "cimc/mapping/tiling.py": _LAYOUT_TESTS,
    "cimc/passes/tile_wordlines.py": _LAYOUT_TESTS,
    "cimc/passes/place_bitlines.py": _LAYOUT_TESTS,
    "cimc/passes/fold_batchnorm.py": _LAYOUT_TESTS,
    "cimc/passes/scale_to_shift.py": _files("test_scale_to_shift", "test_scale_to_shift_choices",
                                            "test_scale_to_shift_clip", "test_scale_to_shift_targets",
                                            "test_scale_to_shift_options", "test_shift_remainders",
                                            "test_scale_to_shift_lut", "test_scale_to_shift_streams",
                                            "test_offset_digits", "test_pass_registry"),
    "cimc/passes/shift_streams.py": _files("test_scale_to_shift_streams"),
    "cimc/quant/adc_output.py": _files("test_adc_output"),
    "cimc/passes/quantize.py": _files("test_quantize", "test_quantize_parts", "test_quantize_edges",
                                      "test_quantize_paths", "test_calibration_streaming", "test_shift_remainders",
                                      "test_signed_one_bit", "test_sliced_bounds", "test_pass_registry",
                                      "test_adaround", "test_ptq_remedies", "test_weight_pool", "test_qdq_import",
                                      "test_equalize"),
    "cimc/emulator/run.py": _EMULATOR_TESTS,
    "cimc/emulator/product.py": _EMULATOR_TESTS,
    "cimc/emulator/lanes.py": _files("test_emulator_lanes"),
    "cimc/emulator/kernels.py": _files("test_emulator_kernels"),
    "cimc/emulator/layers.py": (*_EMULATOR_TESTS, *_files("test_emulator_macro_columns")),
    "cimc/emulator/slices.py": _files("test_emulator", "test_sliced_exact", "test_sliced_mapping",
                                      "test_emulator_memory"),
    "cimc/train/quant.py": _QAT_TESTS,
    "cimc/train/layer.py": (*_QAT_TESTS, *_files("test_qat_sliced", "test_sliced_bounds", "test_train_module",
                                                 "test_train_pool", "test_signed_one_bit")),
    "cimc/train/phase2.py": (*_QAT_TESTS, *_files("test_qat_sliced", "test_sliced_bounds", "test_signed_one_bit",
                                                  "test_phase2_mutants")),
    "cimc/train/sliced.py": (*_QAT_TESTS, *_files("test_qat_sliced", "test_sliced_bounds")),
    "cimc/morph/expand.py": _files("test_morph_expand_by_hand", "test_morph_expand", "test_morph_expand_edges"),
}


def selection(root: Path, args: argparse.Namespace) -> tuple[list[Path], dict[Path, list[str]]]:
    """The module files to mutate (``CORE`` under ``--all``, else the files named) and the test
    files ``CORE`` declares for those of its modules (a module run alone scores as in ``--all``)."""
    declared = {(root / p).resolve(): list(t) for p, t in CORE.items()}
    paths = list(declared) if args.all else [(p if p.is_absolute() else root / p).resolve() for p in args.modules]
    return paths, {p: declared[p] for p in paths if p in declared}


def cli_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", type=Path, help="module files (cimc/…/x.py)")
    parser.add_argument("--all", action="store_true", help="every module of the numerical core (CORE)")
    parser.add_argument("--tests", nargs="*", help="test files to run (default: the list CORE declares for "
                                                        "the module, else the files importing it)")
    parser.add_argument("--sample", type=int, help="at most this many mutants per module, drawn at random")
    parser.add_argument("--lines", type=int, nargs="*", help="only the mutants on these lines (re-checking "
                                                                 "survivors after a test is added)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=max(1, os.cpu_count() or 1))
    parser.add_argument("--timeout", type=float, help="seconds per mutant (default: 3× its tests' clean time + 10)")
    parser.add_argument("--report", type=Path, help="write every outcome and the summaries as JSON, and a "
                                                    "Markdown table beside it (.md)")
    parser.add_argument("--equivalents", type=Path, help="a file of documented equivalent mutants "
                        "(scripts/mutation_equivalents.py): those whose line is unchanged are reported survived "
                        "without running (they still count as survivors)")
    parser.add_argument("--remember", type=Path, metavar="REPORT", help="add REPORT's survivors on --lines of "
                        "the modules named to --equivalents, and exit")
    parser.add_argument("--min-score", type=float, default=0.0, help="exit 1 when a module scores below this")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    return parser


def _remember(root: Path, paths: list[Path], args: argparse.Namespace) -> int:
    """``--remember REPORT``: add the report's survivors on ``--lines`` to ``--equivalents``."""
    if not (args.equivalents and args.lines):
        raise SystemExit("--remember needs --equivalents FILE and --lines")
    names = {module_name(p, root): p for p in paths}
    sources = {n: p.read_text(encoding="utf-8") for n, p in names.items()}
    found = {n: mutants(p, n) for n, p in names.items()}
    report = json.loads(args.remember.read_text(encoding="utf-8"))
    added = _equivalents_module().remember(args.equivalents, report, sources, found, set(args.lines))
    print(f"{added} documented equivalents added to {args.equivalents}")
    return 0


def main(argv: list[str] | None = None) -> int:
    cli = cli_parser()
    args = cli.parse_args(argv)
    root = args.root.resolve()
    paths, declared = selection(root, args)
    if not paths:
        cli.error("name module files or pass --all")
    if args.remember:
        return _remember(root, paths, args)
    start, load = time.perf_counter(), os.getloadavg()[0]
    job = plan(root, paths, args, declared)
    got = run_plan(root, job)
    used = resource.getrusage(resource.RUSAGE_CHILDREN)  # the worker and every child it reaped
    report: dict[str, Any] = {"wall_s": 0.0, "cpu_s": round(used.ru_utime + used.ru_stime, 1), "jobs": args.jobs,
                              "load": [round(load, 1), round(os.getloadavg()[0], 1)],
                              "coverage": got.get("coverage", {}), "modules": {},
                              "stopped": bool(got.get("stopped"))}
    failed = False
    for spec in job["modules"]:
        module = spec["module"]
        known = [_equivalents_module().not_rerun(m) for m in spec["known"]]
        outcomes = sorted([*(o for o in got.get("outcomes", []) if o["module"] == module), *known],
                          key=lambda o: o["index"])
        summ = summary(outcomes)
        planned = len(spec["mutants"]) + len(known)
        report["modules"][module] = {**summ, "planned": planned, "not_rerun": len(known), "tests": spec["tests"],
                                     **got.get("modules", {}).get(module, {}), "outcomes": outcomes}
        ran = "" if len(outcomes) == planned else f" of the {planned} drawn (stopped)"
        print(f"{module}: {summ['killed']}/{summ['mutants']} killed{ran} (score {summ['score']})")
        for s in summ["survivors"]:
            note = f" ({s['detail']})" if s["detail"] == NOT_RERUN else ""
            print(f"  {s['status']}: line {s['line']}: {s['operator']} {s['description']}{note}")
        failed |= summ["score"] is not None and summ["score"] < args.min_score
    report["wall_s"] = round(time.perf_counter() - start, 1)
    print(f"wall time {report['wall_s']} s, CPU time {report['cpu_s']} s, load {report['load']}")
    if args.report:
        args.report.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        args.report.with_suffix(".md").write_text(markdown(report), encoding="utf-8")
    if report["stopped"]:
        print("stopped before every mutant ran: the scores above count the mutants that did", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
