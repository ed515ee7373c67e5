"""``schedule.json``: the order in which the macro executes the model, compact (not per pixel).

Every node appears in topological order. A CIM layer step lists its macros, how many
(re)loads it needs, its segments, its conversion rounds per segment
(``ceil(Cout_g · w_slices / ADCs)``), its bit-slicing (``w_slices`` digit columns per output
channel, ``a_slices`` DAC cycles per input vector) and its computing cycles (see
``cost_model``); a digital op is
listed with its output shape. When the model does not fit the on-chip budget, macros
are loaded in placement order during inference: each CIM step then carries the load
cycles of the macros it is first to use.
"""

from __future__ import annotations

from cimc.cost.model import ModelCost, conversion_rounds
from cimc.documents.schedule import CimStep, DigitalStep, InitialLoad, Schedule, Step
from cimc.ir.annotations import BitlinePlacement, CimLayer
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec


def schedule_document(graph: Graph, cost: ModelCost, macro: MacroSpec) -> Schedule:
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
    )
