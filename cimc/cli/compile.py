"""``cimc compile``: ONNX file or zoo model → build directory, with a console report.

    cimc compile vgg9 --bl 4096                               # the default pipeline
    cimc compile vgg9 --disable quantize --disable scale-to-shift   # mapping only (float build)
    cimc compile vgg9 --stop-after place-bitlines             # no power-of-two shift
    cimc compile vgg9 --passes fold-batchnorm,select-cim,tile-wordlines,place-bitlines

The passes (``cimc passes``) and the pipeline, when it differs from the default one, are
recorded in the manifest's ``options.passes``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cimc.cli.common import State, echo, guarded, parse_shapes
from cimc.cli.morph import morph_options, structure_morph
from cimc.cli.options import MAPPING, declared
from cimc.cli.quant import pop_quant, print_quant, quant_options

if TYPE_CHECKING:
    from cimc.cost.model import ModelCost


@click.command("compile")
@click.argument("source")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=Path("build"),
              show_default=True, help="Build directory to write (replaced atomically).")
@declared("bitline_budget", *MAPPING, "input_shapes")
@click.option("--max-model-bytes", type=click.IntRange(min=1), default=2 * 1024**3, show_default=True)
@click.option("--dump-ir", type=click.Path(file_okay=False, path_type=Path), help="Write the IR after each pass.")
@click.option("--force", is_flag=True, help="Replace an output folder that cimc did not create.")
@click.option("--allow-external-data-outside", is_flag=True,
              help="Trust external weight files outside the model's folder (absolute, '..', links).")
@declared("passes", "disable", "stop_after")
@morph_options
@quant_options
@click.pass_obj
@guarded
def compile_cmd(state: State, source: str, output: Path, bitline_budget: int | None, macro: str, tiling: str,
                placement: str, map_fc: bool, input_shape: tuple[str, ...], max_model_bytes: int,
                dump_ir: Path | None, force: bool, allow_external_data_outside: bool, passes: tuple[str, ...],
                disable: tuple[str, ...], stop_after: str | None, **morph: Any) -> None:
    """Compile SOURCE (an ONNX file or a zoo model name) for CIM macros."""
    from cimc.api import CompileOptions, compile_model

    quant = pop_quant(morph)
    options = CompileOptions(**quant, bitline_budget=bitline_budget, macro=macro, tiling=tiling, placement=placement,
                             map_fc=map_fc, input_shapes=parse_shapes(input_shape),
                             max_model_bytes=max_model_bytes, dump_ir=dump_ir, force=force,
                             allow_external_data_outside=allow_external_data_outside,
                             morph=structure_morph(bitline_budget, **morph), passes=passes or None,
                             disable=disable, stop_after=stop_after)
    if state.as_json:
        result = compile_model(source, output, options)
        echo(json.dumps({"output": str(result.out_dir), "totals": result.report["totals"],
                               "accuracy": result.report.get("accuracy")}, sort_keys=True))
        return
    from rich.console import Console

    console = Console(stderr=True)
    with console.status("compiling") as status:
        options.progress = lambda name: status.update(f"running {name}")
        result = compile_model(source, output, options)
    print_report(result.report, result.cost)
    print_quant(result.report)
    echo(f"wrote {result.out_dir}/")


def print_report(report: dict[str, Any], cost: ModelCost) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from cimc.backend.report import COLUMNS, layer_rows
    from cimc.safe_text import safe_name

    table = Table(title=escape(f"{safe_name(report['model'])} on macro '{report['macro']['name']}'"))
    for _, header in COLUMNS:
        table.add_column(header, justify="left" if header == "layer" else "right")
    rows = layer_rows(cost)
    for row in rows[:-1]:
        table.add_row(escape(safe_name(row[0])), *row[1:])  # layer names come from the model
    table.add_row(*rows[-1], style="bold")
    console = Console(width=max(150, Console().width))
    console.print(table)
    for note in report["notes"]:
        console.print(f"• {note}")
