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
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cimc.cli.common import State, echo, guarded, parse_shapes
from cimc.cli.morph import morph_options, structure_morph
from cimc.cli.options import LIMITS, MAPPING, POOL, declared
from cimc.cli.quant import pop_quant, print_quant, quant_options

if TYPE_CHECKING:
    from cimc.cost.model import ModelCost
    from cimc.ir.graph import Graph


@click.command("compile")
@click.argument("source")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=Path("build"),
              show_default=True, help="Build directory to write (replaced atomically).")
@declared("bitline_budget", *MAPPING, "input_shapes", *LIMITS, "max_data_bytes")
@click.option("--dump-ir", type=click.Path(file_okay=False, path_type=Path), help="Write the IR after each pass.")
@click.option("--force", is_flag=True, help="Replace an output folder that cimc did not create.")
@click.option("--wide", is_flag=True, help="Console tables with every column and whole layer names (else 100 columns).")
@click.option("--allow-external-data-outside", is_flag=True,
              help="Trust external weight files outside the model's folder (absolute, '..', links).")
@declared("passes", "disable", "stop_after", "timing", "infer_batch", "conversion")
@morph_options
@quant_options
@declared(*POOL)
@click.pass_obj
@guarded
def compile_cmd(state: State, source: str, output: Path, bitline_budget: int | None, macro: str, tiling: str,
                placement: str, map_fc: bool, input_shape: tuple[str, ...], max_model_bytes: int,
                max_tensor_bytes: int, max_data_bytes: int, dump_ir: Path | None, force: bool, wide: bool,
                allow_external_data_outside: bool, passes: tuple[str, ...], disable: tuple[str, ...],
                stop_after: str | None, timing: str, infer_batch: int, conversion: str, **morph: Any) -> None:
    """Compile SOURCE (an ONNX file or a zoo model name) for CIM macros."""
    from cimc.cli import heap

    settle = heap.owns_process()  # process-wide settings: only in the cimc command's own process
    if settle:
        heap.collect_young_less_often()
    from cimc.api import CompileOptions, compile_model

    if settle:
        heap.settle_imports()
        heap.keep_freed_memory()

    quant = pop_quant(morph)
    pool = {name: morph.pop(name) for name in POOL}
    options = CompileOptions(**quant, **pool, bitline_budget=bitline_budget, macro=macro, tiling=tiling,
                             placement=placement,
                             map_fc=map_fc, input_shapes=parse_shapes(input_shape),
                             max_model_bytes=max_model_bytes, max_tensor_bytes=max_tensor_bytes,
                             max_data_bytes=max_data_bytes, dump_ir=dump_ir, force=force,
                             allow_external_data_outside=allow_external_data_outside,
                             morph=structure_morph(bitline_budget, **morph), passes=passes or None,
                             disable=disable, stop_after=stop_after, timing=timing, infer_batch=infer_batch,
                             conversion=conversion)
    from cimc.progress import Progress

    with Progress(enabled=not state.as_json) as progress:
        options.progress = progress
        result = compile_model(source, output, options)
    if state.as_json:
        accuracy = result.report.get("accuracy")
        echo(json.dumps({"output": str(result.out_dir), "totals": result.report["totals"],
                         "accuracy": accuracy, "accuracy_unknown": result.report.get("accuracy_unknown")},
                        sort_keys=True))
        if accuracy is not None and accuracy.get("warning"):
            echo(f"warning: {accuracy['warning']}", err=True)  # never missed, even under --json
        return
    modules = module_paths(result.graph)
    print_report(result.report, result.cost, wide, modules)
    print_quant(result.report, wide, modules)
    echo(f"wrote {result.out_dir}/")


#: Columns of the layer table left out of a 100-column console (``--wide`` shows them).
NARROW_DROP = frozenset({"segments", "act. WL", "ADC conv.", "psums", "load cyc."})


def module_paths(graph: Graph) -> dict[str, str]:
    """``{node name: torch module path}`` of the nodes imported with one (``ir.annotations.ModulePath``)."""
    from cimc.ir.annotations import ModulePath

    return {n.name: m.path for n in graph.nodes if (m := n.ann.get_ann(ModulePath)) is not None}


def print_report(report: dict[str, Any], cost: ModelCost, wide: bool = False,
                 modules: Mapping[str, str] | None = None) -> None:
    from rich.markup import escape

    from cimc.backend.report import COLUMNS, layer_rows
    from cimc.cli.tables import console, print_table
    from cimc.safe_text import safe_name

    out = console(wide)
    print_table(out, f"{safe_name(report['model'])} on macro '{report['macro']['name']}'",
                [header for _, header in COLUMNS], layer_rows(cost), wide=wide, narrow_drop=NARROW_DROP,
                bold_last=True, modules=modules)
    for note in report["notes"]:
        out.print(f"• {escape(note)}")
    if "latency" in report and "energy" in report and "system" in report:
        from cimc.backend.report import timeline_notes
        from cimc.documents.report import EnergyReport, Latency, System

        for note in timeline_notes(Latency(**report["latency"]), EnergyReport(**report["energy"]),
                                   System(**report["system"])):
            out.print(f"• {escape(note)}")
