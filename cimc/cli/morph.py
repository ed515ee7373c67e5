"""``cimc morph``: the trained CIM-aware morphing loop; and ``cimc compile --morph`` options.

    cimc morph digits_cnn --bl 256 --data digits --seed-epochs 10 --rounds 3 -o morphed.onnx
    cimc compile vgg9 --bl 4096 --morph          # structure only: no training (warns)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cimc.cli.common import FiniteFloat, State, echo, guarded, parse_shapes
from cimc.cli.options import DATA_HELP, PREPROCESS, declared
from cimc.errors import UsageError

if TYPE_CHECKING:
    from cimc.morph.loop import LoopResult, RoundLog
    from cimc.morph.planning import MorphOptions

F = TypeVar("F", bound=Callable[..., Any])
def morph_options(fn: F) -> F:
    """The ``--morph`` options of ``cimc compile``."""
    fn = click.option("--morph-threshold", type=FiniteFloat(),
                      help="With --morph: prune channels with |γ| <= T instead of the usage search.")(fn)
    fn = click.option("--morph-keep", type=FiniteFloat(0, 1, min_open=True),
                      help="With --morph: keep this fraction of each channel group (by |γ|), no usage search.")(fn)
    return click.option("--morph", is_flag=True,
                        help="Structure-only CIM-aware morph before compiling: prune by |γ|, expand to --bl "
                             "(no training: the weights need fine-tuning).")(fn)


def structure_morph(budget: int | None, *, morph: bool, morph_keep: float | None,
                    morph_threshold: float | None) -> MorphOptions | None:
    """The ``MorphOptions`` of ``cimc compile --morph`` (``None`` without it). The morph pass
    logs a warning that the weights need fine-tuning."""
    if not (morph or morph_keep is not None or morph_threshold is not None):
        return None  # before the import: a compile without a morph does not load the planner
    from cimc.morph.planning import MorphOptions

    if budget is None:
        raise UsageError("--morph needs a bitline budget", hint="add --bl N")
    if morph_keep is None and morph_threshold is None:
        return MorphOptions.usage_search()
    return MorphOptions(keep=morph_keep, threshold=morph_threshold)


@click.command("morph")
@click.argument("source")
@declared("bitline_budget", required=True)
@click.option("--data", "data_name", required=True, help=DATA_HELP)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The morphed, fine-tuned model (ONNX, BatchNormalization kept).")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), help="Shrink and fine-tune epochs per round (both).")
@click.option("--shrink-epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--finetune-epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--seed-epochs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Train the float model first (for an untrained model such as the zoo's).")
@click.option("--lam", type=FiniteFloat(min=0), help="Fixed λ (default: set so that λ·F = --strength).")
@click.option("--strength", type=FiniteFloat(min=0, min_open=True), default=1.0, show_default=True)
@click.option("--cost", type=click.Choice(["params", "bitlines"]), default="params", show_default=True,
              help="Regularizer: MorphNet parameter count (paper Eq. 2) or bitlines stored.")
@click.option("--threshold", type=FiniteFloat(min=0), default=1e-2, show_default=True,
              help="Prune channels whose |γ| is at most this after shrinking.")
@click.option("--trainer", help="Your own trainer, package.module:function (the fit protocol).")
@declared("macro", "tiling", "placement", "data_root", *PREPROCESS)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@declared("input_shapes")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.pass_obj
@guarded
def morph_cmd(state: State, source: str, bitline_budget: int, data_name: str, output: Path, **kw: Any) -> None:
    """Morph SOURCE to BL bitlines: shrink (train with the regularizer), prune, expand, fine-tune."""
    from cimc.extras import require

    require("train", "cimc morph (it trains)")
    from cimc.api import CompileOptions, load_source
    from cimc.data import Preprocess
    from cimc.frontend import save_onnx
    from cimc.macro import load_macro
    from cimc.morph.loop import morph_loop
    from cimc.progress import Progress
    from cimc.train import load_train_data
    from cimc.train.ddp import finish, is_main_process

    main = is_main_process()
    shown = main and not (state.as_json or kw["quiet"])
    with Progress(enabled=shown) as progress:
        progress.phase(f"importing {source}")
        graph, _ = load_source(source, CompileOptions(input_shapes=parse_shapes(kw["input_shape"])))
        progress.phase(f"loading {data_name}")
        data = load_train_data(data_name, root=kw["data_root"], input_shape=graph.shape(graph.inputs[0]),
                               batch_size=kw["batch_size"], seed=kw["seed"],
                               preprocess=Preprocess.from_options(kw["image_size"], kw["mean"], kw["std"]))
        trainer = _trainer(kw["trainer"])
        with progress.beside("training: seed, then shrink, prune, expand, fine-tune per round"):  # its own bars
            graph = _seed_training(graph, data, trainer, kw)
            show = None if state.as_json or not main else _print_round
            result = morph_loop(graph, data, load_macro(kw["macro"]), bitline_budget, _loop_options(kw),
                                trainer=trainer, on_round=show)
        finish()
        if main:
            progress.phase(f"writing {output.name}")
            save_onnx(result.graph, output)
    if not main:  # under torchrun: rank 0 alone writes and prints
        return
    if state.as_json:
        echo(json.dumps({"output": str(output), "initial": result.initial,
                               "rounds": [r.to_dict() for r in result.rounds]}, sort_keys=True))
        return
    print_log(result)
    echo(f"wrote {output}")


def _trainer(spec: str | None) -> Callable[..., dict[str, float]]:
    from cimc.train import fit, load_trainer

    return load_trainer(spec) if spec else fit


def _seed_training(graph: Any, data: Any, trainer: Callable[..., dict[str, float]], kw: dict[str, Any]) -> Any:
    if not kw["seed_epochs"]:
        return graph
    from cimc.train import module_from_graph

    module = module_from_graph(graph)
    trainer(module, data, "float", epochs=kw["seed_epochs"], lr=1e-2, progress=not kw["quiet"], seed=kw["seed"])
    return module.to_graph()


def _loop_options(kw: dict[str, Any]) -> Any:
    from cimc.morph.loop import LoopOptions
    from cimc.morph.planning import MorphOptions

    shrink = kw["epochs"] or kw["shrink_epochs"]
    finetune = kw["epochs"] or kw["finetune_epochs"]
    return LoopOptions(rounds=kw["rounds"], shrink_epochs=shrink, finetune_epochs=finetune, lam=kw["lam"],
                       strength=kw["strength"], cost=kw["cost"], threshold=kw["threshold"],
                       morph=MorphOptions(tiling=kw["tiling"], placement=kw["placement"], seed=kw["seed"]),
                       seed=kw["seed"], progress=not kw["quiet"])


def _print_round(entry: RoundLog) -> None:
    echo(f"round {entry.round}: {entry.params:,} params, {entry.bitlines:,} bitlines, "
               f"usage {100 * entry.usage:.2f}%, accuracy {100 * entry.accuracy:.2f}%", err=True)


def log_rows(result: LoopResult) -> list[list[str]]:
    """The per-round log as table rows (round 0 = the input model)."""
    i = result.initial
    rows = [["0 (input)", "", f"{int(i['params']):,}", "", f"{int(i['bitlines']):,}", f"{100 * i['usage']:.2f}%",
             "", f"{100 * i['accuracy']:.2f}%"]]
    for r in result.rounds:
        rows.append([str(r.round), f"{100 * r.shrink_acc:.2f}%", f"{r.params:,}",
                     f"{r.pruned_bitlines:,} → ×{r.ratio:.3f}" if r.ratio is not None else f"{r.pruned_bitlines:,}",
                     f"{r.bitlines:,}", f"{100 * r.usage:.2f}%", f"{r.lam:.3g}", f"{100 * r.accuracy:.2f}%"])
    return rows


LOG_HEADERS = ["round", "acc. after shrink", "params", "pruned bitlines → R", "bitlines", "macro usage", "λ",
               "accuracy"]


def print_log(result: LoopResult) -> None:
    from rich.table import Table

    from cimc.safe_text import safe_console as Console

    table = Table(title="CIM-aware morphing")
    for header in LOG_HEADERS:
        table.add_column(header, justify="right")
    for row in log_rows(result):
        table.add_row(*row)
    Console(width=max(130, Console().width)).print(table)
