"""``cimc search``: per-layer weight/input bits under an accuracy constraint.

    cimc search model.onnx --data digits --objective latency --max-acc-drop 0.5 --strategy greedy -o search/

Prints the Pareto set (objective vs accuracy) and writes ``search.json``, ``bits.json`` (for
``cimc compile --bits``) and ``pareto.png`` to ``-o DIR`` (``cimc.search.result``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cimc.cli.common import State, echo, guarded, parse_shapes
from cimc.cli.options import LIMITS, MAPPING, PREPROCESS, declared
from cimc.cost.objective import OBJECTIVES

if TYPE_CHECKING:
    from cimc.search.result import SearchResult


@click.command("search")
@click.argument("model")
@click.option("--data", "data_name", required=True,
              help="Accuracy data: digits, cifar10, mnist, synthetic (agreement), an image folder (DIR/<class>/*.png;"
                   " scored on val/ when split into train/, val/, test/) or an .npz with x and y.")
@declared("data_root", *PREPROCESS)
@click.option("--objective", type=click.Choice(list(OBJECTIVES)), default="latency", show_default=True,
              help="The figure minimised: " + "; ".join(f"{o.name}: {o.help}" for o in OBJECTIVES.values()) + ".")
@declared("max_acc_drop", default=0.5, help="Largest accuracy drop against the float model, in percentage points.")
@click.option("--strategy", type=click.Choice(["rl", "greedy"]), default="greedy", show_default=True)
@click.option("--agent", type=click.Choice(["ddpg", "ppo"]), default="ddpg", show_default=True, help="RL agent.")
@click.option("--episodes", type=click.IntRange(min=1), default=40, show_default=True, help="RL episodes.")
@click.option("--max-evals", type=click.IntRange(min=1), help="Stop the greedy search after this many evaluations.")
@click.option("--seed", default=0, show_default=True)
@click.option("--w-choices", default="2,3,4,5,6,8", show_default=True, help="Candidate weight bits.")
@click.option("--a-choices", default="2,3,4,6,8", show_default=True, help="Candidate input bits.")
@click.option("--adc-choices", help="Candidate ADC bits (default: the macro's alone, not searched).")
@declared("eval_size", help="Held-out samples per evaluation (default 256).")
@declared("calib", default=None, show_default=False, help="Calibration data (default: --data's train split).")
@declared("calib_size", default=64)
@declared(*MAPPING, "bitline_budget", "input_shapes", *LIMITS)
@declared("timing", "infer_batch", "conversion")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), help="Folder for the results.")
@click.pass_obj
@guarded
def search_cmd(state: State, model: str, data_name: str, data_root: str | None, image_size: int | None,
               mean: str | None, std: str | None, objective: str, max_acc_drop: float,
               strategy: str, agent: str, episodes: int, max_evals: int | None, seed: int, w_choices: str,
               a_choices: str, adc_choices: str | None, eval_size: int | None, calib: str | None, calib_size: int,
               macro: str, tiling: str, placement: str, map_fc: bool, bitline_budget: int | None,
               input_shape: tuple[str, ...], max_model_bytes: int, max_tensor_bytes: int,
               timing: str, infer_batch: int, conversion: str, output: Path | None) -> None:
    """Search per-layer bits of MODEL (ONNX file or zoo name) under an accuracy constraint."""
    from cimc.api import CompileOptions
    from cimc.search import ProblemSpec, build_problem, collect, greedy_search, rl_search, write_outputs
    from cimc.search.space import parse_choices

    options = CompileOptions(macro=macro, tiling=tiling, placement=placement, map_fc=map_fc,
                             bitline_budget=bitline_budget, input_shapes=parse_shapes(input_shape),
                             calib_size=calib_size, data_root=data_root, image_size=image_size,
                             mean=mean, std=std, max_model_bytes=max_model_bytes,
                             max_tensor_bytes=max_tensor_bytes, timing=timing, infer_batch=infer_batch,
                             conversion=conversion)
    spec = ProblemSpec(data=data_name, objective=objective, max_drop=max_acc_drop,
                       w_choices=parse_choices(w_choices, "weight"), a_choices=parse_choices(a_choices, "input"),
                       adc_choices=parse_choices(adc_choices, "ADC") if adc_choices else None,
                       eval_size=eval_size or 256, calib=calib, options=options)
    from cimc.progress import Progress

    with Progress(enabled=not state.as_json) as progress:
        progress.phase("preparing (import, tile, calibration inputs)")
        problem = build_problem(model, spec)
        progress.phase(f"{strategy} search: configurations evaluated")
        problem.progress = lambda point: progress.advance(
            detail=f"last {point.origin}, {point.latency:,} ({100 * point.metric:.2f}%)")
        if strategy == "rl":
            rl_search(problem, episodes=episodes, seed=seed, agent=agent)
        else:
            greedy_search(problem, max_evals=max_evals)
        progress.phase("held-out test split, Pareto set")
        result = collect(problem, strategy)
    files = write_outputs(result, output) if output is not None else []
    if state.as_json:
        doc = result.to_json()
        echo(json.dumps({"chosen": doc["chosen"], "pareto": doc["pareto"], "uniform": doc["uniform"],
                               "evaluations": len(result.points), "feasible_found": doc["feasible_found"],
                               "test": doc["test"], "files": [str(f) for f in files]}, sort_keys=True))
        return
    print_result(result)
    for f in files:
        echo(f"wrote {f}")


def print_result(result: SearchResult) -> None:
    from rich.markup import escape
    from rich.table import Table

    from cimc.safe_text import safe_console as Console
    from cimc.safe_text import safe_name

    widest = result.uniform.get("8-bit")
    table = Table(title=f"Pareto set ({result.strategy}, {len(result.points)} configurations evaluated)")
    for header in (result.objective, "vs uniform 8-bit", result.metric, "drop (pp)", "feasible", "w_bits", "a_bits"):
        table.add_column(header, justify="right")
    for p in result.pareto:
        ratio = f"{p.latency / widest.latency:.3f}×" if widest else "-"
        table.add_row(f"{p.latency:,}", ratio, f"{100 * p.metric:.2f}%", f"{p.drop:+.2f}",
                      "yes" if p.feasible else "no", *(",".join(str(b[d]) for b in p.config) for d in (0, 1)))
    console = Console(width=max(120, Console().width))
    console.print(table)
    chosen = result.chosen
    label = "chosen" if result.best is not None else "no feasible configuration; least drop"
    console.print(f"• float {result.metric}: {100 * result.reference:.2f}%; "
                  f"constraint: drop ≤ {result.max_drop:.2f} pp")
    console.print(f"• {label}: {result.objective} {chosen.latency:,}, {result.metric} {100 * chosen.metric:.2f}% "
                  "(val split)")
    if result.test is not None:
        test = result.test
        value = test["accuracy"] if result.metric == "accuracy" else test["agreement"]
        console.print(f"• held-out test split ({test['samples']:,} samples): {result.metric} {100 * value:.2f}%, "
                      f"drop {test['drop_pp']:+.2f} pp")
    for name, bits in zip(result.layers, chosen.config, strict=True):
        console.print(f"    {escape(safe_name(name))}: w {bits[0]}, a {bits[1]}, adc {bits[2]}")
