"""``schedule.json``: the order in which the macro executes the model, compact (not per pixel).

Every node appears in topological order. A CIM layer step lists its macros, how many
(re)loads it needs, its segments, its conversion rounds per segment
(``ceil(Cout_g · w_slices / ADCs)``), its bit-slicing (``w_slices`` digit columns per output
channel, ``a_slices`` DAC cycles per input vector) and its computing cycles (see
``cost_model``); a digital op is
listed with its output shape. When the model does not fit the on-chip budget, macros
are loaded in placement order during inference: each CIM step then carries the load
cycles of the macros it is first to use.

``timeline`` places those loads and the layers' compute phases on the chip's physical macros
over time (``cimc.cost.timeline``, ``--timing``, ``--batch``).
"""

from __future__ import annotations

from cimc.cost.model import ModelCost, conversion_rounds
from cimc.cost.timeline import TimelineResult
from cimc.documents.schedule import (
    CimStep,
    ComputePhase,
    DigitalStep,
    InitialLoad,
    LoadEvent,
    Schedule,
    Step,
    Timeline,
    TimelineTotals,
)
from cimc.ir.annotations import BitlinePlacement, CimLayer
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec


def schedule_document(graph: Graph, cost: ModelCost, macro: MacroSpec, result: TimelineResult) -> Schedule:
    """``schedule.json`` (module doc)."""
    costs = {layer.name: layer for layer in cost.layers}
    loaded: set[int] = set()
    steps: list[Step] = []
    for node in graph.topo_order():
        if CimLayer not in node.ann:
            steps.append(DigitalStep(step=len(steps), node=node.name, op=node.op, unit="digital",
                                     output_shape=list(graph.shape(node.outputs[0]))))
            continue
        macros = node.ann[BitlinePlacement].macros_used()
        new = [m for m in macros if m not in loaded]
        loaded.update(new)
        layer, c = node.ann[CimLayer], costs[node.name]
        steps.append(CimStep(
            step=len(steps), node=node.name, op=node.op, unit="cim", macros=list(macros),
            loads=len(new) if not cost.fits_on_chip else 0,
            load_cycles=len(new) * macro.load_cycles if not cost.fits_on_chip else 0,
            segments=c.segments, groups=layer.groups,
            conversion_rounds=conversion_rounds(layer.cout_per_group, c.w_slices, macro.adcs),
            w_slices=c.w_slices, a_slices=c.a_slices, out_pixels=layer.out_pixels, cycles=c.computing_cycles,
        ))
    return Schedule(
        initial_load=InitialLoad(macros=cost.macros if cost.fits_on_chip else 0,
                                 cycles=cost.loading_cycles if cost.fits_on_chip else 0),
        steps=steps, total_computing_cycles=cost.computing_cycles,
        reload_cycles_per_inference=cost.reload_cycles_per_inference,
        timeline=timeline_document(result, macro),
    )


def timeline_document(result: TimelineResult, macro: MacroSpec) -> Timeline:
    """``schedule.json``'s ``timeline``: every phase and load of one batch, and their totals."""
    phases = [ComputePhase(
        phase=i, layer=p.phase.layer, node=p.phase.node, segments=list(p.phase.segments), columns=p.phase.columns,
        macros=list(p.phase.macros), slots=list(p.slots), first_pixel=p.phase.first_pixel, pixels=p.phase.pixels,
        start=p.start, end=p.end, conversions=p.phase.conversions, wordline_drives=p.phase.drives,
        psum_reads=p.phase.psum_reads, psum_writes=p.phase.psum_writes, psum_entries=p.phase.psum_entries)
        for i, p in enumerate(result.phases)]
    loads = [LoadEvent(macro=ld.macro, slot=ld.slot, start=ld.start, end=ld.end, phase=ld.phase)
             for ld in result.loads]
    extra = {} if result.conversion == "serial" else {"conversion": result.conversion}
    return Timeline(timing=result.timing, batch=result.batch, slots=result.slots, load_cycles=macro.load_cycles,
                    concurrent_loads=macro.concurrent_loads, psum_buffer=macro.psum_buffer, phases=phases,
                    loads=loads, totals=timeline_totals(result), **extra)


def timeline_totals(result: TimelineResult) -> TimelineTotals:
    return TimelineTotals(makespan=result.makespan, compute_cycles=result.compute_cycles, loads=len(result.loads),
                          load_cycles=result.load_cycles, overlap_cycles=result.overlap_cycles,
                          stall_cycles=result.makespan - result.compute_cycles, resident=result.resident,
                          steady_batch_cycles=result.steady_batch_cycles)
