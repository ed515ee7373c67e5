"""Latency and energy per inference of a zoo model's timeline (``cimc.cost.timeline``,
``cimc.cost.energy``): ``paper`` against ``overlap`` at several batch sizes, on one bitline
budget, as markdown table rows (the README's "The timeline and the energy").

    python3 scripts/timeline_figures.py                      # VGG9, --bl 4096, batches 1, 8, 64
    python3 scripts/timeline_figures.py --model resnet18 --bl 8192 --gantt out/

The model is mapped without quantization (fold-batchnorm and the mapping passes: the timeline
needs only the placement and the bits, 4/4 by default as in the paper). ``--gantt DIR`` also
draws the Gantt chart of each timing model at batch 1 (``DIR/timeline_<timing>.png``). Against
the bitline budget, with the morphed models: ``scripts/timeline_budget.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cimc.api import CompileOptions, compile_graph, load_source
from cimc.backend.schedule import timeline_document
from cimc.cost.energy import energy
from cimc.cost.timeline import Timing, timeline
from cimc.mapping.select import cim_nodes
from cimc.passes.pipelines import MAPPING

TIMINGS: tuple[Timing, ...] = ("paper", "overlap")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg9")
    parser.add_argument("--bl", type=int, default=4096)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--gantt", type=Path)
    args = parser.parse_args()
    options = CompileOptions(passes=("fold-batchnorm", *MAPPING))
    graph, _ = load_source(args.model, options)
    graph, ctx = compile_graph(graph, options)
    macro = ctx.macro
    for timing in TIMINGS:
        for batch in args.batch:
            r = timeline(graph, macro, args.bl, timing, batch)
            e = energy(r, macro)
            print(f"| {timing} | {batch} | {r.steady_batch_cycles / batch:,.1f} | {r.load_cycles:,} / "
                  f"{r.compute_cycles:,} / {r.overlap_cycles:,} / {r.makespan - r.compute_cycles:,} | "
                  f"{e.total:,.0f} (ADC {e.adc:,.0f}, DAC {e.dac:,.0f}, shift-add {e.adder:,.0f}, psum "
                  f"{e.psum_buffer:,.0f}, off-chip {e.offchip:,.0f}, cell write {e.cell_write:,.0f}) | "
                  f"{e.tops_per_w:.1f} |")
        if args.gantt is not None:
            from cimc.views.gantt import gantt_figure
            from cimc.views.placement_map import save

            args.gantt.mkdir(parents=True, exist_ok=True)
            doc = timeline_document(timeline(graph, macro, args.bl, timing, 1), macro)
            save(gantt_figure(doc, [n.name for n in cim_nodes(graph)]), args.gantt / f"timeline_{timing}.png")


if __name__ == "__main__":
    main()
