"""The in-process half of ``scripts/mutate.py``: one pytest session runs every mutant of a plan.

    python3 scripts/mutation_worker.py PLAN.json RESULT.json     (started by scripts/mutate.py)

1. pytest collects the plan's test files once (the modules under test are imported then).
2. *Coverage*: a forked child runs every collected test once, unmutated, under ``sys.settrace``
   restricted to the modules under test, and records which tests execute each line, how long
   each test takes and whether it passes.
3. *Mutants*: per mutant, a forked child (copy-on-write: no interpreter start, no import, no
   collection; the mutated module compiled once, by the parent) patches the module in memory
   and runs, fastest first and stopping at the first failure, only the passing tests that
   execute the mutated lines. A change inside a function
   body replaces the ``__code__`` of the live function objects compiled from that body (found
   by code equality, so ``from m import f`` elsewhere sees the change too); a change at module
   or class level (a constant, a field, a default) re-executes the mutated module in a fresh
   namespace and merges it: functions and classes are patched in place (or, where that cannot
   be done, replaced wherever a module holds them), changed values rebound, also where another
   module bound them by ``from m import NAME [as alias]`` (relative imports and re-exports
   followed); a name the mutant deletes is deleted there too (a fresh import would fail). A
   change inside a function that ran while the module was imported (collection is traced too)
   is applied the same way, so the values the module computed with it are recomputed. Such a
   mutant runs the tests that execute any line of the module or of a module importing names
   from it. A mutant whose lines no test executes is ``no coverage``; its child never starts.

A child that fails a test *kills* the mutant, one that outlives its timeout is ``timeout``
(killed too), one whose tests all pass *survives*. Limits: code that tests run in another
interpreter (a subprocess, a spawned worker) runs the unmutated files; values a test module
computes at import time were computed before the mutation, and so were values another project
module derived at its import from a constant of the mutated one (``B = m.LIMIT * 2``).
"""

from __future__ import annotations

import ast
import builtins
import functools
import gc
import inspect
import json
import marshal
import os
import pickle
import shutil
import signal
import sys
import tempfile
import time
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

sys.path.append(str(Path(__file__).resolve().parents[1]))

import contextlib

import pytest

from scripts.mutate import Mutant, _sites, mutated_tree

MISSING = object()
SPECIAL = {"__dict__", "__weakref__", "__doc__", "__module__", "__qualname__", "__slots__"}


# ---------------------------------------------------------------- patching a loaded module


def _nested(code: types.CodeType) -> list[types.CodeType]:
    return [c for c in code.co_consts if isinstance(c, types.CodeType)]


def _shallow(code: types.CodeType) -> types.CodeType:
    """``code`` with its nested code objects blanked: equal iff the scope itself is unchanged."""
    return code.replace(co_consts=tuple(None if isinstance(c, types.CodeType) else c for c in code.co_consts))


def _is_function(code: types.CodeType) -> bool:
    return bool(code.co_flags & inspect.CO_NEWLOCALS)


def changed_scopes(old: types.CodeType, new: types.CodeType) -> list[tuple[types.CodeType, types.CodeType, bool]]:
    """``(old, new, scope itself changed)`` for every code object that differs, outermost first."""
    if old == new:
        return []
    a, b = _nested(old), _nested(new)
    same_shape = len(a) == len(b)
    out = [(old, new, not same_shape or _shallow(old) != _shallow(new))]
    if same_shape:
        for x, y in zip(a, b, strict=True):
            out += changed_scopes(x, y)
    return out


def live_functions(filenames: set[str]) -> dict[types.CodeType, list[types.FunctionType]]:
    """Every function object alive now whose code comes from one of ``filenames``, by code.
    (``type(obj) is``, not ``isinstance``: a ``weakref.proxy`` whose referent died, as numba
    leaves some, raises ``ReferenceError`` when ``isinstance`` asks it for its class.)"""
    index: dict[types.CodeType, list[types.FunctionType]] = {}
    with warnings.catch_warnings():  # some lazy module attributes warn when looked at
        warnings.simplefilter("ignore")
        objects = gc.get_objects()
    for obj in objects:
        if type(obj) is types.FunctionType and obj.__code__.co_filename in filenames:
            index.setdefault(obj.__code__, []).append(obj)
    return index


def _patch_function(old: types.FunctionType, new: types.FunctionType) -> bool:
    if old.__code__ != new.__code__:
        try:
            old.__code__ = new.__code__
        except ValueError:  # another set of free variables
            return False
    old.__defaults__, old.__kwdefaults__ = new.__defaults__, new.__kwdefaults__
    return True


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:
        return False


def _patch_member(old: Any, new: Any, module: str) -> bool | None:
    """Patch class member ``old`` from ``new``; None when it is a plain value (rebind it)."""
    if isinstance(old, types.FunctionType) and isinstance(new, types.FunctionType):
        return _patch_function(old, new)
    if isinstance(old, staticmethod | classmethod) and type(old) is type(new):
        return _patch_function(cast(types.FunctionType, old.__func__), cast(types.FunctionType, new.__func__))
    if isinstance(old, property) and isinstance(new, property):
        parts = [(getattr(old, n), getattr(new, n)) for n in ("fget", "fset", "fdel")]
        return all((o is None and n is None) or (o is not None and n is not None and _patch_function(o, n))
                   for o, n in parts)
    if isinstance(old, type) and isinstance(new, type) and new.__module__ == module:
        return _patch_class(old, new, module)
    return None


def _patch_class(old: type, new: type, module: str) -> bool:
    """Give class ``old`` the members of ``new`` (same identity: instances and subclasses follow)."""
    for name, value in new.__dict__.items():
        if name in SPECIAL:
            continue
        mine = old.__dict__.get(name, MISSING)
        done = None if mine is MISSING else _patch_member(mine, value, module)
        if done is False:
            return False
        if done is None and not _same(mine, value):
            try:
                setattr(old, name, value)
            except (AttributeError, TypeError):
                return False
    for name in [n for n in old.__dict__ if n not in new.__dict__ and n not in SPECIAL]:
        delattr(old, name)
    return True


def _project_modules(root: Path, skip: str) -> list[types.ModuleType]:
    out = []
    for name, mod in list(sys.modules.items()):
        file = getattr(mod, "__file__", None)
        if name != skip and file and Path(file).resolve().is_relative_to(root):
            out.append(mod)
    return out


def _rebind(modules: list[types.ModuleType], old: Any, new: Any, name: str | None) -> None:
    """Every module global holding ``old`` (by the same name when ``name`` is given) now holds ``new``."""
    for mod in modules:
        space = vars(mod)
        for key in [k for k, v in space.items() if v is old and (name is None or k == name)]:
            space[key] = new


#: ``target module -> [(dependent module, name in target, local name)]`` for every
#: ``from target import name [as local]`` of a loaded project module (``import_bindings``).
BINDINGS: dict[str, list[tuple[types.ModuleType, str, str]]] = {}


def _absolute(mod: types.ModuleType, node: ast.ImportFrom) -> str:
    """The module a ``from … import`` of ``mod`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = (mod.__package__ or "").split(".")
    base = ".".join(package[: len(package) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def import_bindings(modules: list[types.ModuleType], target: str) -> list[tuple[types.ModuleType, str, str]]:
    """``(module, name, local)`` for every ``from target import name as local`` in the source of
    ``modules`` (anywhere in the file: a function's own import reads the attribute when it runs,
    so holding a stale binding there is harmless). Cached per target in ``BINDINGS``."""
    if target in BINDINGS:
        return BINDINGS[target]
    out = []
    for mod in modules:
        try:
            tree = ast.parse(Path(str(mod.__file__)).read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and _absolute(mod, node) == target:
                out += [(mod, a.name, a.asname or a.name) for a in node.names if a.name != "*"]
    BINDINGS[target] = out
    return out


def _propagate(others: list[types.ModuleType], target: str, name: str, old: Any, new: Any) -> None:
    """What a fresh import of the modules that did ``from target import name`` would bind: the
    new value, or nothing when ``target`` lost ``name`` (their use of it then fails, as their
    import would have); followed through re-exports (a package ``__init__`` importing it)."""
    todo, seen = [(target, name, old)], set()
    while todo:
        where, key, was = todo.pop()
        for mod, got, local in import_bindings(others, where):
            space = vars(mod)
            if got != key or space.get(local, MISSING) is not was or (mod.__name__, local) in seen:
                continue
            seen.add((mod.__name__, local))
            if new is MISSING:
                del space[local]
            else:
                space[local] = new
            todo.append((mod.__name__, local, was))


def _registries(modules: list[types.ModuleType], module: str) -> list[tuple[dict[Any, Any], Any, Any]]:
    """``(dict, key, value)`` of module-level dicts holding functions or classes of ``module``."""
    out = []
    for mod in modules:
        for value in list(vars(mod).values()):
            if isinstance(value, dict):
                out += [(value, k, v) for k, v in list(value.items())
                        if isinstance(v, type | types.FunctionType) and getattr(v, "__module__", None) == module]
    return out


def reexecute(mod: types.ModuleType, code: types.CodeType, root: Path) -> None:
    """Run the mutated module ``code`` in a fresh namespace and merge it into ``mod``."""
    name = mod.__name__
    others = _project_modules(root, name)
    held = _registries(others, name)
    for box, key, _ in held:
        box.pop(key, None)  # a registry refuses a second class of a name
    space: dict[str, Any] = {k: getattr(mod, k) for k in ("__name__", "__file__", "__package__", "__spec__",
                                                           "__loader__") if hasattr(mod, k)}
    space["__builtins__"] = builtins
    replaced: dict[int, Any] = {}
    try:
        exec(code, space)
        mine = vars(mod)
        for key, new in space.items():
            old = mine.get(key, MISSING)
            if key.startswith("__") or old is new:
                continue
            ours = isinstance(new, type | types.FunctionType) and getattr(new, "__module__", None) == name
            if ours and old is not MISSING and type(old) is type(new):
                fn = isinstance(new, types.FunctionType)
                done = _patch_function(old, new) if fn else _patch_class(old, new, name)
                if not done:
                    mine[key] = new
                    _rebind(others, old, new, None)
                    replaced[id(old)] = new
            elif old is MISSING or not _same(old, new):
                mine[key] = new
                if old is not MISSING:
                    _propagate(others, name, key, old, new)
                _rebind(others, old, new, key)
        for key in [k for k in mine if k not in space and not k.startswith("__")]:
            _propagate(others, name, key, mine.pop(key), MISSING)
    finally:
        for box, key, value in held:
            box[key] = replaced.get(id(value), value)


def mutant_code(file: str, mutant: Mutant, source: str) -> types.CodeType:
    """The mutated module compiled with the original's positions (so unchanged scopes compare equal)."""
    return compile(mutated_tree(Path(file), mutant, source), file, "exec", dont_inherit=True)


def apply_mutant(mod: types.ModuleType, code: types.CodeType, original: types.CodeType,
                 live: dict[types.CodeType, list[types.FunctionType]], root: Path, reimport: bool = False) -> str:
    """Put the mutated module ``code`` into the loaded module ``mod``: ``"function"`` or
    ``"module"`` (how it was applied); raises RuntimeError when it cannot be. ``reimport``
    re-executes the module even for a change inside a function (one that ran at import time:
    the values the module computed with it are recomputed)."""
    scopes = changed_scopes(original, code)
    if not scopes:
        raise RuntimeError("the mutant compiles to the same code")
    if reimport or any(changed and not _is_function(old) for old, _, changed in scopes):
        reexecute(mod, code, root)
        return "module"
    patched = 0
    for old, new, _ in scopes:
        for fn in live.get(old, []):
            try:
                fn.__code__ = new
            except ValueError as exc:
                raise RuntimeError(f"cannot patch {fn.__qualname__}: its free variables change") from exc
            patched += 1
    if not patched:
        raise RuntimeError("no live function holds the mutated code")
    return "function"


# ---------------------------------------------------------------- running tests in a child


def _run_items(session: pytest.Session, items: list[pytest.Item], first_failure: bool,
               each: Callable[[int, bool, float], None] | None = None) -> str | None:
    """Run ``items`` through pytest's protocol; the node id of the first failing one."""
    failed = None
    for i, item in enumerate(items):
        before, start = session.testsfailed, time.perf_counter()
        item.config.hook.pytest_runtest_protocol(item=item, nextitem=items[i + 1] if i + 1 < len(items) else None)
        bad = session.testsfailed > before
        if each is not None:
            each(i, not bad, time.perf_counter() - start)
        if bad:
            failed = failed or item.nodeid
            if first_failure:
                break
    return failed


def _quiet(session: pytest.Session, basetemp: Path) -> None:
    """In a child: no output, its own temporary folder, its own process group."""
    os.setpgrp()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    basetemp.mkdir(parents=True, exist_ok=True)
    session.config._tmp_path_factory._basetemp = basetemp.resolve()  # type: ignore[attr-defined]


CHILDREN: set[int] = set()  # the process groups to end when the worker is stopped


def _stop(signum: int, frame: Any) -> None:
    """End the children and stop the run (the outcomes so far are written: ``pytest_runtestloop``).
    Later SIGTERMs are ignored: ``timeout`` signals the whole process group and the runner
    then signals the worker again, which must not interrupt the writing of the report."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for pid in list(CHILDREN):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    raise SystemExit(128 + signum)


def _fork(body: Callable[[], Any], out: Path, session: pytest.Session, basetemp: Path) -> int:
    pid = os.fork()
    if pid:
        CHILDREN.add(pid)
        return pid
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = 0
    try:
        _quiet(session, basetemp)
        result = body()
        out.write_bytes(pickle.dumps(result))
    except BaseException as exc:
        out.write_bytes(pickle.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        code = 3
    os._exit(code)


def _tracer(files: dict[str, set[int]]) -> Callable[..., Any]:
    def local(frame: types.FrameType, event: str, arg: Any, lines: set[int]) -> Any:
        if event == "line":
            lines.add(frame.f_lineno)
        return functools.partial(local, lines=lines)

    def global_(frame: types.FrameType, event: str, arg: Any) -> Any:
        lines = files.get(frame.f_code.co_filename)
        if lines is None:
            return None
        lines.add(frame.f_lineno)
        return functools.partial(local, lines=lines)

    return global_


def coverage(session: pytest.Session, items: list[pytest.Item], chosen: list[int],
             filenames: list[str]) -> dict[str, Any]:
    """In a child: run the items ``chosen`` (indices into ``items``) once under the tracer."""
    lines: dict[str, dict[int, list[int]]] = {f: {} for f in filenames}
    seconds, passed = {}, {}
    hit: dict[str, set[int]] = {f: set() for f in filenames}
    trace = _tracer(hit)

    def each(k: int, ok: bool, took: float) -> None:
        i = chosen[k]
        seconds[i], passed[i] = took, ok
        for f, got in hit.items():
            for line in got:
                lines[f].setdefault(line, []).append(i)
            got.clear()

    import threading

    threading.settrace(trace)
    sys.settrace(trace)
    try:
        _run_items(session, [items[i] for i in chosen], False, each)
    finally:
        sys.settrace(None)
        threading.settrace(None)  # type: ignore[arg-type,unused-ignore]
    return {"lines": lines, "seconds": seconds, "passed": passed}


class MutationPlugin:
    """Takes over pytest's test loop (``pytest_runtestloop``) to run the plan."""

    def __init__(self, plan: dict[str, Any], result: Path) -> None:
        self.plan, self.result = plan, result
        self.root = Path(plan["root"]).resolve()
        #: lines of the modules under test executed while the test files were collected (their
        #: import, and other modules' import calling into them): the traced test run never sees them
        self.import_lines: dict[str, set[int]] = {str(Path(m["path"]).resolve()): set() for m in plan["modules"]}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_collection(self, session: pytest.Session) -> Any:
        """Collect (and so import the modules under test) under the tracer."""
        sys.settrace(_tracer(self.import_lines))
        try:
            yield
        finally:
            sys.settrace(None)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        out: dict[str, Any] = {"outcomes": [], "modules": {}}
        work = Path(tempfile.mkdtemp(prefix="cimc-mutate-"))
        try:
            if session.testsfailed:
                out["error"] = "collection failed"
                return True
            self._run(session, work, out)
        except BaseException:  # stopped (SIGTERM: ``_stop``; Ctrl-C): the outcomes so far are kept
            out["stopped"] = True
            raise
        finally:
            self.result.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
            shutil.rmtree(work, ignore_errors=True)
        return True

    def _run(self, session: pytest.Session, work: Path, out: dict[str, Any]) -> None:
        items = list(session.items)
        modules = [__import__(m["module"], fromlist=["_"]) for m in self.plan["modules"]]
        files = [str(m.__file__) for m in modules]
        # the modules that import a name of one under test by value (``from m import NAME``): a
        # module-level mutant reaches the tests through them too, so their lines are traced as well
        deps = {file: sorted({str(d.__file__) for d, _, _ in
                              import_bindings(_project_modules(self.root, mod.__name__), mod.__name__)} - {file})
                for mod, file in zip(modules, files, strict=True)}
        traced = list(dict.fromkeys([*files, *(f for fs in deps.values() for f in fs)]))
        start = time.perf_counter()
        cov = self._coverage(session, items, traced, work)
        if "error" in cov:
            out["error"] = f"coverage run: {cov['error']}"
            return
        out["coverage"] = {"tests": len(items), "seconds": round(time.perf_counter() - start, 2), "cpu_s": cov["cpu"],
                           "failing": [items[i].nodeid for i, ok in enumerate(cov["passed"]) if not ok]}
        _log(f"coverage: {len(items)} tests in {out['coverage']['seconds']} s")
        live = live_functions(set(files))
        tasks = []
        for spec, mod, file in zip(self.plan["modules"], modules, files, strict=True):
            named = {str((self.root / t).resolve()) for t in spec["tests"]}
            own = {i for i, item in enumerate(items) if cov["passed"][i] and str(Path(item.path).resolve()) in named}
            tasks += self._tasks(spec, mod, file, cov, deps[file], own)
            out["modules"][spec["module"]] = {"tests_touching": len(self._touching(cov, file))}
        out["outcomes"] = []  # filled as mutants finish: a stopped run still reports those
        self._execute(session, tasks, live, work, out["outcomes"])

    def _coverage(self, session: pytest.Session, items: list[pytest.Item], files: list[str],
                  work: Path) -> dict[str, Any]:
        """The traced run, split by test file into ``4·jobs`` chunks run by ``--jobs`` children at a
        time, largest first (a chunk's cost is unknown before it runs: many small chunks keep every
        core busy to the end); merged."""
        jobs = max(1, int(self.plan.get("jobs", 1)))
        by_file: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            by_file.setdefault(str(item.path), []).append(i)
        chunks: list[list[int]] = [[] for _ in range(min(len(by_file), 4 * jobs))]
        for group in sorted(by_file.values(), key=len, reverse=True):
            min(chunks, key=len).extend(group)
        pending = sorted((c for c in chunks if c), key=len, reverse=True)
        count, running, cpu = len(pending), set[int](), 0.0
        while pending or running:
            while pending and len(running) < jobs:
                j = count - len(pending)
                running.add(_fork(functools.partial(coverage, session, items, sorted(pending.pop(0)), files),
                                  work / f"coverage{j}.pkl", session, work / f"t-coverage{j}"))
            pid, _, usage = os.wait4(-1, 0)
            if pid in running:
                running.discard(pid)
                CHILDREN.discard(pid)
                cpu += usage.ru_utime + usage.ru_stime
        merged: dict[str, Any] = {"lines": {f: {} for f in files}, "seconds": [0.0] * len(items),
                                  "passed": [False] * len(items), "cpu": round(cpu, 2)}
        for j in range(count):
            part = pickle.loads((work / f"coverage{j}.pkl").read_bytes())
            if "error" in part:
                return part
            for f, table in part["lines"].items():
                for line, tests in table.items():
                    merged["lines"][f].setdefault(line, []).extend(tests)
            for i, took in part["seconds"].items():
                merged["seconds"][i], merged["passed"][i] = took, part["passed"][i]
        return merged

    def _touching(self, cov: dict[str, Any], file: str) -> set[int]:
        return {i for tests in cov["lines"][file].values() for i in tests if cov["passed"][i]}

    def _tasks(self, spec: dict[str, Any], mod: types.ModuleType, file: str, cov: dict[str, Any],
               deps: list[str], own: set[int]) -> list[dict[str, Any]]:
        """One task per mutant: the tests to run (fastest first) and its timeout, all of them
        passing tests of the module's own test files (``own``: the other modules' files of the
        run are traced but never chosen). A change at module level, or in a function that ran at
        import time, runs every such test that executes a line of the module or of a module
        importing names from it (``deps``), then, should they all pass, the module's other tests:
        a class attribute or a constant is read without executing a line of its module
        (``registry.get(name).needs``)."""
        source = spec["source"]  # the text of the plan: an edit of the file meanwhile changes nothing
        tree = ast.parse(source)
        original = compile(tree, file, "exec", dont_inherit=True)
        sites = [node for node, *_ in _sites(tree)]
        tasks = []
        for m in spec["mutants"]:
            mutant = Mutant(**m)
            code = mutant_code(file, mutant, source)
            scopes = changed_scopes(original, code)
            module_level = any(ch and not _is_function(o) for o, _, ch in scopes)
            node = sites[mutant.index]
            span = set(range(node.lineno, (node.end_lineno or node.lineno) + 1))  # type: ignore[attr-defined]
            at_import = not module_level and bool(span & self.import_lines.get(file, set()))
            if module_level or at_import:  # a value computed at import may be read anywhere
                chosen = self._touching(cov, file).union(*(self._touching(cov, d) for d in deps)) & own
            else:
                chosen = {i for line in span for i in cov["lines"][file].get(line, []) if i in own}
            order = sorted(chosen, key=lambda i: cov["seconds"][i])
            if module_level or at_import:
                order += sorted(own - chosen, key=lambda i: cov["seconds"][i])
            budget = sum(cov["seconds"][i] for i in order)
            tasks.append({"mutant": m, "module": mod, "file": file, "code": marshal.dumps(code), "original": original,
                          "tests": order,
                          "timeout": self.plan.get("timeout") or 3 * budget + 10,
                          "level": "module" if module_level else "import" if at_import else "function"})
        return tasks

    def _execute(self, session: pytest.Session, tasks: list[dict[str, Any]],
                 live: dict[types.CodeType, list[types.FunctionType]], work: Path,
                 results: list[dict[str, Any]]) -> None:
        """Run every task in forked children, ``jobs`` at a time, appending each outcome to
        ``results`` as it finishes."""
        items = list(session.items)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            caches = [o for o in gc.get_objects() if isinstance(o, functools._lru_cache_wrapper)]
        pending = list(range(len(tasks)))
        running: dict[int, tuple[int, float]] = {}
        jobs = max(1, int(self.plan.get("jobs", 1)))
        done = 0
        while pending or running:
            while pending and len(running) < jobs:
                k = pending.pop(0)
                task = tasks[k]
                if not task["tests"]:
                    results.append(_record(task, "no coverage", 0.0, None))
                    m = task["mutant"]
                    _log(f"no coverage: {m['module']}:{m['line']} {m['operator']} {m['description']}")
                    continue

                def body(task: dict[str, Any] = task) -> dict[str, Any]:
                    code = marshal.loads(task.pop("code"))  # compiled once, by ``_tasks``
                    apply_mutant(task["module"], code, task["original"], live, self.root, task["level"] == "import")
                    for cache in caches:
                        cache.cache_clear()
                    failed = _run_items(session, [items[i] for i in task["tests"]], True)
                    return {"failed": failed}

                pid = _fork(body, work / f"{k}.pkl", session, work / f"t{k}")
                del task["code"]  # the child has its copy
                running[pid] = (k, time.perf_counter())
            if not running:  # the last tasks had no coverage: no child to wait for
                continue
            pid, status, usage = os.wait4(-1, os.WNOHANG)
            now = time.perf_counter()
            if pid == 0:
                for p, (k, began) in list(running.items()):
                    if now - began > tasks[k]["timeout"]:
                        used = _kill(p)
                        del running[p]
                        results.append({**_record(tasks[k], "timeout", now - began, None), "cpu": round(used, 2)})
                        _cleanup(work, k)
                time.sleep(0.02)
                continue
            if pid not in running:
                continue
            k, began = running.pop(pid)
            CHILDREN.discard(pid)
            results.append(_finish(tasks[k], work, k, now - began, status))
            results[-1]["cpu"] = round(usage.ru_utime + usage.ru_stime, 2)
            if results[-1]["status"] not in ("killed", "timeout"):
                r = results[-1]
                _log(f"{r['status']}: {r['module']}:{r['line']} {r['operator']} {r['description']}")
            _cleanup(work, k)
            done += 1
            if done % 25 == 0:
                _log(f"{done} mutants run, {len(pending)} to go")


def _kill(pid: int) -> float:
    """End child ``pid`` (its process group); the CPU seconds it used."""
    CHILDREN.discard(pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        usage = os.wait4(pid, 0)[2]
        return usage.ru_utime + usage.ru_stime
    return 0.0


def _cleanup(work: Path, k: int) -> None:
    shutil.rmtree(work / f"t{k}", ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (work / f"{k}.pkl").unlink()


def _finish(task: dict[str, Any], work: Path, k: int, seconds: float, status: int) -> dict[str, Any]:
    try:
        got = pickle.loads((work / f"{k}.pkl").read_bytes())
    except (FileNotFoundError, EOFError, pickle.UnpicklingError):
        got = {"failed": f"child ended with status {status} and no result"}
    if "error" in got:
        message = str(got["error"])
        # a module whose mutated body raises on import fails every test that imports it
        state = "error" if message.startswith("RuntimeError") else "killed"
        return _record(task, state, seconds, message)
    return _record(task, "survived" if got["failed"] is None else "killed", seconds, got["failed"])


def _record(task: dict[str, Any], status: str, seconds: float, detail: str | None) -> dict[str, Any]:
    return {**task["mutant"], "status": status, "seconds": round(seconds, 2), "tests": len(task["tests"]),
            "level": task["level"], "detail": detail, "cpu": 0.0}


def _log(text: str) -> None:
    print(f"[mutate {time.strftime('%H:%M:%S')}] {text}", file=sys.__stderr__, flush=True)


def main(argv: list[str]) -> int:
    plan = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    result = Path(argv[1]).resolve()
    # sys-level capture: a child's output goes to its /dev/null (fd capture would restore the terminal)
    args = ["-q", "-p", "no:cacheprovider", "--capture=sys", "-m", "not slow", *plan["tests"]]
    signal.signal(signal.SIGTERM, _stop)  # `kill` of the worker ends its children and cleans up
    pytest.main(args, plugins=[MutationPlugin(plan, result)])
    return 0 if result.exists() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
