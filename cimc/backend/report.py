"""Reports of a compile: ``report.json`` (all figures), ``report.md`` and a console table.

Every layer row carries its precision and bit-slicing (``w_bits, a_bits, adc_bits,
w_slices, a_slices``; bits ``null`` in a mapping-only compile); the tables show them in one
column ``bits w/a/adc`` as ``4/4/5``, or ``8/4/5 ×2×1`` for a sliced layer (two digit
columns per output channel, one DAC cycle per input).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from cimc.cost.area import chip_area
from cimc.cost.energy import Energy
from cimc.cost.model import LayerCost, ModelCost
from cimc.cost.timeline import TimelineResult
from cimc.documents.macro import MacroDoc
from cimc.documents.report import DigitalOp, EnergyReport, Latency, LayerRow, Report, System, Totals
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.safe_text import printable

COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "layer"), ("params", "params"), ("bitlines", "bitlines"), ("segments", "segments"),
    ("activated_wordlines", "act. WL"), ("adc_conversions", "ADC conv."), ("partial_sums", "psums"),
    ("macros", "macros"), ("macro_usage", "usage"), ("loading_cycles", "load cyc."),
    ("computing_cycles", "compute cyc."), ("bits", "bits w/a/adc"),
)


def report_document(graph: Graph, cost: ModelCost, macro: MacroSpec, digital: list[DigitalOp],
                    result: TimelineResult, energy: Energy) -> Report:
    """``report.json`` without its quantization and accuracy sections (``quant_report``)."""
    totals = Totals(**{k: v for k, v in cost.to_dict().items() if k != "layers"})
    return Report(model=graph.name, macro=MacroDoc(**macro.to_dict()), totals=totals,
                  layers=[LayerRow(**vars(layer)) for layer in cost.layers], digital_ops=digital,
                  notes=budget_notes(cost, macro) + slicing_notes(cost, macro),
                  latency=latency_document(result), energy=EnergyReport(**energy.to_dict()),
                  system=system_document(macro, result.slots))


def system_document(macro: MacroSpec, slots: int) -> System:
    """``report.json``'s ``system``: the chip's area (``cimc.cost.area``)."""
    return System(**chip_area(macro, slots).to_dict())


def latency_document(result: TimelineResult) -> Latency:
    """``report.json``'s ``latency``: the timeline's batch figures and their steady-state rates."""
    steady = result.steady_batch_cycles
    return Latency(timing=result.timing, batch=result.batch, slots=result.slots, first_batch_cycles=result.makespan,
                   steady_batch_cycles=steady, cycles_per_inference=steady / result.batch,
                   inferences_per_mcycle=1e6 * result.batch / steady if steady else 0.0,
                   load_cycles=result.load_cycles, compute_cycles=result.compute_cycles,
                   overlap_cycles=result.overlap_cycles, stall_cycles=result.makespan - result.compute_cycles,
                   loads=len(result.loads), resident=result.resident,
                   **({} if result.conversion == "serial" else {"conversion": result.conversion}))


def timeline_notes(latency: Latency, energy: EnergyReport, system: System) -> list[str]:
    """``report.md``'s lines on the timeline, the energy and the area."""
    parts = ", ".join(f"{name} {getattr(energy, key):,.1f}" for key, name in ENERGY_NAMES)
    conversion = f", {latency.conversion} conversion" if latency.conversion else ""
    return [f"timeline ({latency.timing}{conversion}, batch {latency.batch:,}, {latency.slots:,} physical macros): "
            f"{latency.cycles_per_inference:,.1f} cycles per inference; per batch {latency.first_batch_cycles:,} "
            f"cycles from an empty chip (load {latency.load_cycles:,}, compute {latency.compute_cycles:,}, "
            f"overlap {latency.overlap_cycles:,}, stall {latency.stall_cycles:,}), then "
            f"{latency.steady_batch_cycles:,} per batch" + (" (weights stay on chip)" if latency.resident else ""),
            f"energy per inference: {energy.total:,.1f} pJ ({parts}); {energy.tops_per_w:,.2f} TOPS/W"
            + (f"; one-time weight load {energy.initial_load:,.1f} pJ" if energy.initial_load else ""),
            f"area: {system.total / 1e6:,.3f} mm² = {system.slots:,} physical macros × {system.macro:,.0f} µm² "
            f"(cells {system.cells:,.0f}, ADC {system.adc:,.0f}, DAC {system.dac:,.0f}, shift-add "
            f"{system.adder:,.0f}) + partial-sum buffer {system.psum_buffer:,.0f} µm²"]


#: The energy components as ``report.md`` names them.
ENERGY_NAMES = (("adc", "ADC"), ("dac", "DAC"), ("adder", "shift-add"), ("psum_buffer", "psum buffer"),
                ("offchip", "off-chip read"), ("cell_write", "cell write"))


def slicing_notes(cost: ModelCost, macro: MacroSpec) -> list[str]:
    """One line per bit-sliced layer: its digit columns and DAC cycles."""
    notes = []
    for layer in cost.layers:
        parts = []
        if layer.w_slices > 1:
            parts.append(f"{layer.w_bits}-bit weights over {layer.w_slices} cells of {macro.cell_bits} bits "
                         f"({layer.w_slices} adjacent columns per output channel)")
        if layer.a_slices > 1:
            parts.append(f"{layer.a_bits}-bit inputs over {layer.a_slices} DAC cycles of {macro.dac_bits} bits")
        if parts:
            notes.append(f"layer {layer.name}: " + "; ".join(parts) + ", recombined by shift-add after the ADCs")
    return notes


def budget_notes(cost: ModelCost, macro: MacroSpec) -> list[str]:
    """Whether the weights load once or every inference (numbers with thousands separators, as in
    every table; the ``--bl`` value as typed)."""
    if cost.fits_on_chip:
        return [f"all {cost.macros:,} macros fit the budget of {cost.bitline_budget:,} bitlines: "
                f"weights load once ({cost.loading_cycles:,} cycles)"]
    return [f"the model needs {cost.macros:,} macros ({cost.min_budget_without_reload:,} bitlines) but the budget "
            f"is {cost.bitline_budget:,} bitlines: every inference reloads the weights "
            f"({cost.reload_cycles_per_inference:,} extra cycles); --bl {cost.min_budget_without_reload} avoids it"]


def precision_text(row: dict[str, Any]) -> str:
    """``4/4/5`` (unsliced), ``8/4/5 ×2×1`` (``w_slices × a_slices``) of a report layer row;
    ``–`` without bits; blank for the total row."""
    if row.get("name") == "total":
        return ""
    bits = [row.get(k) for k in ("w_bits", "a_bits", "adc_bits")]
    text = "/".join(str(b) for b in bits) if all(isinstance(b, int) for b in bits) else "–"
    sw, t = row.get("w_slices", 1), row.get("a_slices", 1)
    return text if sw == t == 1 else f"{text} ×{sw}×{t}"


def cell_text(key: str, row: dict[str, Any]) -> str:
    """The table text of column ``key`` of a report layer row (or the total row)."""
    if key == "bits":
        return precision_text(row)
    value = row.get(key)
    if key == "macro_usage":
        return f"{100 * float(value or 0):.2f}%"
    if isinstance(value, int):
        return f"{value:,}"
    return printable(str(value)).replace("|", "\\|").strip()  # a model's name: one table cell, one line


def layer_rows(cost: ModelCost) -> list[list[str]]:
    total = LayerCost("total", "", cost.params, cost.bitlines, cost.segments, cost.activated_wordlines,
                      cost.adc_conversions, cost.partial_sum_storage, cost.computing_cycles, cost.macros,
                      cost.loading_cycles, cost.macro_usage)
    rows = [asdict(layer) for layer in (*cost.layers, total)]
    return [[cell_text(k, row) for k, _ in COLUMNS] for row in rows]


def report_markdown(doc: Report, cost: ModelCost) -> str:
    m = doc.macro
    lines = [f"# cimc report: {printable(doc.model)}", "",
             f"Macro `{m.name}`: {m.wordlines}×{m.bitlines} cells of {m.cell_bits} bits, "
             f"{m.adcs} ADCs of {m.adc_bits} bits, {m.load_cycles} cycles per macro load.", "",
             "| " + " | ".join(h for _, h in COLUMNS) + " |",
             "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in layer_rows(cost)]
    lines += ["", "The total row's partial sums are the largest layer's (buffers are reused).", ""]
    lines += [f"- {printable(note)}" for note in doc.notes + timeline_notes(doc.latency, doc.energy, doc.system)]
    if doc.digital_ops:
        ops = sorted({d.op for d in doc.digital_ops})
        lines += [f"- digital ops ({len(doc.digital_ops)} nodes): {', '.join(ops)}"]
    return "\n".join(lines) + "\n"
