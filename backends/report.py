"""Reports of a compile: ``report.json`` (all figures), ``report.md`` and a console table."""

from __future__ import annotations

from typing import Any

from cimc.backends.cost_model import LayerCost, ModelCost
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec

COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "layer"), ("params", "params"), ("bitlines", "bitlines"), ("segments", "segments"),
    ("activated_wordlines", "act. WL"), ("adc_conversions", "ADC conv."), ("partial_sums", "psums"),
    ("macros", "macros"), ("macro_usage", "usage"), ("loading_cycles", "load cyc."),
    ("computing_cycles", "compute cyc."),
)


def report_document(graph: Graph, cost: ModelCost, macro: MacroSpec, digital: list[dict[str, Any]]) -> dict[str, Any]:
    totals = {k: v for k, v in cost.to_dict().items() if k != "layers"}
    return {"model": graph.name, "macro": macro.to_dict(), "totals": totals,
            "layers": [dict(vars(layer)) for layer in cost.layers], "digital_ops": digital,
            "notes": budget_notes(cost, macro)}


def budget_notes(cost: ModelCost, macro: MacroSpec) -> list[str]:
    if cost.fits_on_chip:
        return [f"all {cost.macros} macros fit the budget of {cost.bitline_budget} bitlines: "
                f"weights load once ({cost.loading_cycles} cycles)"]
    return [f"the model needs {cost.macros} macros ({cost.min_budget_without_reload} bitlines) but the budget is "
            f"{cost.bitline_budget} bitlines: every inference reloads the weights "
            f"({cost.reload_cycles_per_inference} extra cycles); --bl {cost.min_budget_without_reload} avoids it"]


def _cell(key: str, value: Any) -> str:
    if key == "macro_usage":
        return f"{100 * value:.2f}%"
    return f"{value:,}" if isinstance(value, int) else str(value)


def layer_rows(cost: ModelCost) -> list[list[str]]:
    rows = [[_cell(k, getattr(layer, k)) for k, _ in COLUMNS] for layer in cost.layers]
    total = LayerCost("total", "", cost.params, cost.bitlines, cost.segments, cost.activated_wordlines,
                      cost.adc_conversions, cost.partial_sum_storage, cost.computing_cycles, cost.macros,
                      cost.loading_cycles, cost.macro_usage)
    return [*rows, [_cell(k, getattr(total, k)) for k, _ in COLUMNS]]


def report_markdown(doc: dict[str, Any], cost: ModelCost) -> str:
    m = doc["macro"]
    lines = [f"# cimc report: {doc['model']}", "",
             f"Macro `{m['name']}`: {m['wordlines']}×{m['bitlines']} cells of {m['cell_bits']} bits, "
             f"{m['adcs']} ADCs of {m['adc_bits']} bits, {m['load_cycles']} cycles per macro load.", "",
             "| " + " | ".join(h for _, h in COLUMNS) + " |",
             "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in layer_rows(cost)]
    lines += ["", "The total row's partial sums are the largest layer's (buffers are reused).", ""]
    lines += [f"- {note}" for note in doc["notes"]]
    if doc["digital_ops"]:
        ops = sorted({d["op"] for d in doc["digital_ops"]})
        lines += [f"- digital ops ({len(doc['digital_ops'])} nodes): {', '.join(ops)}"]
    return "\n".join(lines) + "\n"
