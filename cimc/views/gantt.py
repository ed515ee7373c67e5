"""The timeline as a Gantt chart (PNG / SVG, matplotlib): one row per physical macro (slot),
loads as grey hatched bars, compute phases in their layer's colour (``views.palette``), time
in cycles on the x axis. Rows shrink with the slot count so 16 and 240 physical macros both
fit one readable figure (tick labels every ``ceil(slots / 40)`` rows).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cimc.build.reader import BuildDir
from cimc.documents.parse import parse
from cimc.documents.schedule import Schedule, Timeline
from cimc.errors import BuildError
from cimc.views.palette import layer_color
from cimc.views.placement_map import _new_figure, save

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LOAD = "#9a9a9a"


def gantt_figure(timeline: Timeline, layer_names: list[str]) -> Figure:
    """Loads and compute phases per physical macro over time."""
    slots = timeline.slots
    fig = _new_figure(12.0, min(2.5 + 0.18 * slots, 24.0))
    ax = fig.add_axes((0.07, 0.08, 0.7, 0.84))
    loads: dict[int, list[tuple[int, int]]] = {}
    for ld in timeline.loads:
        loads.setdefault(ld.slot, []).append((ld.start, ld.end - ld.start))
    for slot, bars in loads.items():
        ax.broken_barh(bars, (slot - 0.4, 0.8), facecolors=LOAD, hatch="//", edgecolor="#606060", linewidth=0.3)
    computes: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for ph in timeline.phases:
        for slot in ph.slots:
            computes.setdefault((ph.layer, slot), []).append((ph.start, ph.end - ph.start))
    for (layer, slot), bars in computes.items():
        ax.broken_barh(bars, (slot - 0.4, 0.8), facecolors=layer_color(layer), linewidth=0)
    ax.set_ylim(slots - 0.5, -0.5)
    step = -(-slots // 40)
    ax.set_yticks(range(0, slots, step))
    ax.tick_params(labelsize=7)
    ax.set_xlabel("cycle")
    ax.set_ylabel("physical macro")
    end = max([p.end for p in timeline.phases] + [ld.end for ld in timeline.loads], default=1)
    ax.set_xlim(0, end)
    ax.set_title(f"timeline ({timeline.timing}, batch {timeline.batch:,}): {len(timeline.loads):,} loads, "
                 f"{len(timeline.phases):,} compute phases, {end:,} cycles", fontsize=9)
    from matplotlib.patches import Patch

    used = sorted({ph.layer for ph in timeline.phases})
    handles = [Patch(facecolor=LOAD, hatch="//", edgecolor="#606060", label="load")]
    handles += [Patch(facecolor=layer_color(i), label=f"{i}: {layer_names[i] if i < len(layer_names) else i}")
                for i in used]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.78, 0.92), fontsize=7, frameon=False,
               ncols=1 if len(handles) <= 30 else 2)
    return fig


def write_gantt(build: BuildDir, out_dir: str | Path, formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """``timeline.<fmt>`` of the build's ``schedule.json``."""
    if build.schedule is None:
        raise BuildError("schedule.json is missing: no timeline to draw")
    timeline = parse(Schedule, "schedule.json", build.schedule).timeline
    fig = gantt_figure(timeline, [m or n for n, m in zip(build.layer_names, build.layer_modules, strict=True)])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [save(fig, out / f"timeline.{fmt}") for fmt in formats]
