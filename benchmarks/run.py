"""Run cimc's benchmarks: ``python3 -m benchmarks.run [--quick] [--only PATTERN] [--json OUT]``.

Every module ``benchmarks/bench_<topic>.py`` is imported and its ``benchmarks(quick)``
called; each ``Benchmark`` is measured by ``benchmarks.harness`` (set up once, one warm-up,
alternating rounds) and the median ratio ``time(run) / time(reference)`` with its spread is
printed as a table and written, with a description of the machine, to a JSON file
(``benchmarks/results/latest.json``; ``quick.json`` with ``--quick``, ``partial.json``
with ``--only``, so a partial run never replaces the full results).

The exit status is 0 whatever the ratios are — a benchmark never fails on speed — and 1
only when a benchmark module or a benchmark crashed.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import importlib
import json
import logging
import math
import os
import pkgutil
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.harness import Benchmark, Result, Settings, run_safely
from benchmarks.machine import describe, machine_info

log = logging.getLogger("benchmarks")

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def discover(quick: bool) -> tuple[list[tuple[str, Benchmark]], list[Result]]:
    """``(module, benchmark)`` pairs of all ``bench_*`` modules, and a failed ``Result`` per
    module that could not be imported or listed."""
    found: list[tuple[str, Benchmark]] = []
    failed: list[Result] = []
    for info in sorted(pkgutil.iter_modules([str(HERE)]), key=lambda m: m.name):
        if not info.name.startswith("bench_"):
            continue
        try:
            module = importlib.import_module(f"benchmarks.{info.name}")
            found += [(info.name, b) for b in module.benchmarks(quick)]
        except Exception as exc:  # a broken module is reported, the others still run
            log.exception("benchmark module %s failed to load", info.name)
            failed.append(Result(info.name, "-", None, error=f"{type(exc).__name__}: {exc}"))
    return found, failed


def selected(name: str, patterns: Sequence[str]) -> bool:
    """No pattern, or a glob (``compile*``) or substring match of any pattern."""
    return not patterns or any(fnmatch.fnmatch(name, p) or p in name for p in patterns)


def _seconds(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"


def _row(result: Result) -> list[str]:
    if result.error is not None:
        return [result.name, result.reference_name, "[red]crashed[/red]", result.error[:60], "", "", "", ""]
    d = result.to_dict()
    target = "-" if result.target_ratio is None else f"≤ {result.target_ratio:g}"
    verdict = {None: "", True: "[green]met[/green]", False: "[yellow]missed[/yellow]"}[result.met]
    return [result.name, result.reference_name, f"{d['ratio_median']:.2f}",
            f"{d['ratio_q1']:.2f}–{d['ratio_q3']:.2f} ({d['ratio_min']:.2f}–{d['ratio_max']:.2f})",
            _seconds(d["run_median_s"]), _seconds(d["ref_median_s"]), target, verdict]


def print_table(results: list[Result], machine: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="cimc benchmarks: time(run) / time(reference)", caption=describe(machine))
    for header in ("benchmark", "reference", "ratio", "IQR (min–max)", "run", "reference", "target", ""):
        table.add_column(header, justify="left" if header in ("benchmark", "reference") else "right")
    for result in results:
        table.add_row(*_row(result))
    Console(width=max(160, Console().width)).print(table)


def write_json(path: Path, results: list[Result], modules: dict[str, str], meta: dict[str, Any]) -> None:
    doc = {**meta, "results": [{**r.to_dict(), "module": modules.get(r.name)} for r in results]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI mode: small inputs, few rounds (a minute or two)")
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="run benchmarks whose name matches (glob or substring; repeatable)")
    parser.add_argument("--json", type=Path, help="result file (default benchmarks/results/latest.json; "
                        "quick.json with --quick, partial.json with --only)")
    parser.add_argument("--rounds", type=int, help="rounds per benchmark (default 7, 3 with --quick)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every round")
    return parser.parse_args(argv)


@contextlib.contextmanager
def quiet_cimc(verbose: bool) -> Iterator[None]:
    """Silence cimc's warnings (e.g. "calibrating on synthetic data" at every compile) while
    benchmarks run, unless ``verbose``; the logger's level is restored afterwards."""
    logger = logging.getLogger("cimc")
    saved = logger.level
    if not verbose:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(saved)


def run_all(args: argparse.Namespace, settings: Settings) -> int:
    found, failed = discover(args.quick)
    chosen = [(m, b) for m, b in found if selected(b.name, args.only)]
    if args.list:
        for module, bench in chosen:
            print(f"{module}: {bench.name} (vs {bench.reference_name})")
        return 0
    machine, started, clock = machine_info(), datetime.now(UTC).isoformat(timespec="seconds"), time.perf_counter()
    results = failed + [run_safely(b, settings) for _, b in chosen]
    meta = {"machine": machine, "started": started, "duration_s": round(time.perf_counter() - clock, 1),
            "load_average_after": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "quick": args.quick, "settings": vars(settings), "argv": args.argv}
    out = args.json or RESULTS / ("quick.json" if args.quick else "partial.json" if args.only else "latest.json")
    write_json(out, results, {b.name: m for m, b in chosen}, meta)
    print_table(results, machine)
    print(f"results written to {out}")
    return 1 if any(r.error is not None for r in results) else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    settings = Settings.quick() if args.quick else Settings()
    if args.rounds:
        settings.rounds = args.rounds
    with quiet_cimc(args.verbose):
        return run_all(args, settings)


if __name__ == "__main__":
    sys.exit(main())
