"""The macro backend: turns a placed graph into the files of a build directory.

Files (names are fixed; nothing is named after the model's contents):
``layout.json``, ``weights.safetensors`` (``macro_0000`` … one ``(WL, BL)`` array each),
``schedule.json``, ``report.json``, ``report.md``, ``graph.txt`` (the final IR), and
``manifest.json`` (written last, with every file's sha256).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from cimc.backends.build_dir import dumps
from cimc.backends.cost_model import ModelCost, model_cost
from cimc.backends.layout import layout_document, macro_arrays
from cimc.backends.report import report_document, report_markdown
from cimc.backends.schedule import schedule_document
from cimc.passes.place_bitlines import cim_nodes
from safetensors.numpy import save as save_safetensors

from cimc import __version__
from cimc.ir.annotations import CimLayer
from cimc.ir.graph import Graph
from cimc.ir.printer import format_graph
from cimc.macro import MacroSpec

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class BuildOutput:
    files: dict[str, bytes]
    manifest: dict[str, Any]
    cost: ModelCost
    report: dict[str, Any]


def build_files(graph: Graph, macro: MacroSpec, bitline_budget: int | None,
                source: dict[str, Any], options: dict[str, Any]) -> BuildOutput:
    """All files of a build (manifest separate: its file hashes are added when written)."""
    cost = model_cost(graph, macro, bitline_budget)
    nodes = cim_nodes(graph)
    arrays = macro_arrays(graph, nodes, macro, cost.macros)
    digital = [{"node": n.name, "op": n.op} for n in graph.topo_order() if CimLayer not in n.ann]
    report = report_document(graph, cost, macro, digital)
    files = {
        "layout.json": dumps(layout_document(graph, nodes, macro, cost.macros), compact=True),
        "weights.safetensors": _weights(arrays),
        "schedule.json": dumps(schedule_document(graph, cost, macro)),
        "report.json": dumps(report),
        "report.md": report_markdown(report, cost).encode(),
        "graph.txt": format_graph(graph).encode(),
    }
    manifest = {"schema_version": SCHEMA_VERSION, "tool": "cimc", "tool_version": __version__,
                "macro": macro.to_dict(), "bitline_budget": cost.bitline_budget, "input": source,
                "options": options}
    return BuildOutput(files, manifest, cost, report)


def _weights(arrays: np.ndarray) -> bytes:
    """One ``(WL, BL)`` array per macro. safetensors orders metadata keys by hash, so a
    single key keeps the file byte-deterministic."""
    tensors = {f"macro_{m:04d}": np.ascontiguousarray(arrays[m]) for m in range(arrays.shape[0])}
    return bytes(save_safetensors(tensors, metadata={"format": "cimc-macro-weights/wordline-by-bitline"}))
