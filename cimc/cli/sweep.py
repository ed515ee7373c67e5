"""``cimc sweep``: design-space sweeps on a process pool or Ray, resumable JSONL, Pareto report.

    cimc sweep examples/sweep.toml -o sweep.jsonl                 # process pool
    cimc sweep examples/sweep.toml -o sweep.jsonl --engine ray    # local Ray, or --address ADDR
    cimc sweep --report sweep.jsonl                               # table + plot of a results file
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, cast

import click

from cimc.cli.common import State, echo, guarded
from cimc.cost.objective import OBJECTIVES
from cimc.errors import UsageError


@click.command("sweep")
@click.argument("config", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("sweep.jsonl"),
              show_default=True, help="Results file (JSON lines); reruns skip the points already in it.")
@click.option("--engine", type=click.Choice(["pool", "ray", "serial"]), default="pool", show_default=True)
@click.option("--workers", type=click.IntRange(min=1), help="Processes / Ray CPUs (default: min(cpus, points)).")
@click.option("--address", help="With --engine ray: the cluster to join (default: a local instance).")
@click.option("--train", is_flag=True, help="Train each point (see the config's [training] table).")
@click.option("--keep-builds", type=click.Path(file_okay=False, path_type=Path),
              help="Also write each point's build folder to DIR/<key>.")
@click.option("--retry-failed", is_flag=True, help="Run points recorded with an error again.")
@click.option("--report", "report_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Only report an existing results file (no CONFIG).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Plot file (default: pareto.png beside the results file).")
@click.option("--no-plot", is_flag=True, help="Do not write the plot.")
@click.option("--objective", type=click.Choice(list(OBJECTIVES)),
              help="What the Pareto set minimises (default: the config's objective, else latency).")
@click.pass_obj
@guarded
def sweep_cmd(state: State, config: Path | None, output: Path, report_file: Path | None, **kw: Any) -> None:
    """Sweep the design space of CONFIG (TOML); see docs/sweep.md."""
    if (config is None) == (report_file is None):
        raise UsageError("give a CONFIG to run, or --report RESULTS.jsonl (not both)")
    if report_file is not None:
        _report(state, report_file, None, kw, None)
        return
    from cimc.extras import require
    from cimc.sweep.run import plan_sweep

    if kw["train"]:
        require("train", "cimc sweep --train")
    plan = plan_sweep(cast(Path, config), train=kw["train"], keep_builds=kw["keep_builds"])
    summary = _run(state, plan, output, kw)
    kw["config_objective"] = plan.config.objective
    _report(state, output, {t.key for t in plan.tasks}, kw, summary)
    if summary.bugs:
        click.echo(f"cimc: error: {summary.bugs} point(s) hit an internal error, a bug in cimc (status \"bug\" "
                   f"in {output}, with the traceback): please report it", err=True)
        sys.exit(1)


def _run(state: State, plan: Any, output: Path, kw: dict[str, Any]) -> Any:
    from cimc.progress import Progress
    from cimc.sweep.run import run_sweep

    options = {"engine": kw["engine"], "workers": kw["workers"], "address": kw["address"],
               "retry_failed": kw["retry_failed"]}
    with Progress(enabled=not state.as_json) as progress:
        progress.phase("sweep points", total=len(plan.tasks))
        progress.advance(len(plan.tasks) - _todo(plan, output, kw["retry_failed"]), detail="already done")
        return run_sweep(plan, output, **options,
                         on_record=lambda record: progress.advance(detail=f"{record['key'][:10]} {record['status']}"))


def _todo(plan: Any, output: Path, retry_failed: bool) -> int:
    from cimc.sweep.store import done_keys

    done = done_keys(output, retry_failed)
    return sum(t.key not in done for t in plan.tasks)


def _report(state: State, results: Path, keys: set[str] | None, kw: dict[str, Any], run: Any) -> None:
    from cimc.sweep.report import plot, print_table
    from cimc.sweep.run import summarise

    objective = kw["objective"] or kw.get("config_objective") or "latency"
    summary = summarise(results, keys, objective)
    plot_path = None
    if not kw["no_plot"] and summary.ok:
        target = kw["plot_path"] or results.with_name("pareto.png")
        plot_path = plot(summary.ok, summary.front, summary.objectives, target)
    if state.as_json:
        doc = {"output": str(results), "plot": str(plot_path) if plot_path else None,
               "objectives": [list(o) for o in summary.objectives], "ok": len(summary.ok), "failed": summary.failed,
               "pareto": summary.front, **({"run": vars(run)} if run is not None else {})}
        echo(json.dumps(doc, sort_keys=True))
        return
    if run is not None:
        echo(f"{run.points:,} points: {run.skipped:,} already done, {run.evaluated:,} evaluated "
                   f"({run.failed:,} failed) in {run.wall_s:.1f} s", err=True)
    print_table(summary.ok, summary.front, summary.objectives, summary.failed)
    echo(f"results: {results}" + (f"; plot: {plot_path}" if plot_path else ""))
