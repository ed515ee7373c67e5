"""The macro backend: turns a placed graph into the files of a build directory.

Files (names are fixed; nothing is named after the model's contents):
``layout.json``, ``weights.safetensors`` (``macro_0000`` … one ``(WL, BL)`` array each),
``schedule.json``, ``report.json``, ``report.md``, ``graph.txt`` (the final IR), and
``manifest.json`` (written last, with every file's sha256). A quantized graph stores cell
codes and adds ``quant.json``, ``graph.json``, ``digital.safetensors`` and ``model.cim.onnx``
(``cim_build``); a graph compiled with ``--weight-pool`` adds ``weight_pool.safetensors``
(``cimc.backend.pool_file``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from cimc import __version__
from cimc.backend.layout import layout_document, macro_arrays
from cimc.backend.pool_file import pool_files, pool_markdown
from cimc.backend.quant_part import code_arrays, is_quantized, quantized_files
from cimc.backend.quant_report import quantization_markdown, quantization_section
from cimc.backend.report import report_document, report_markdown
from cimc.backend.schedule import schedule_document
from cimc.build.file_parts import FileData, file_bytes
from cimc.build.weights_file import macro_weights_bytes
from cimc.cost.energy import energy
from cimc.cost.model import ModelCost, model_cost
from cimc.cost.pool import graph_pool_cost
from cimc.cost.timeline import Conversion, Timing, timeline
from cimc.documents import dumps
from cimc.documents.macro import MacroDoc
from cimc.documents.manifest import SCHEMA_VERSION, Manifest, Source
from cimc.documents.report import Accuracy, DigitalOp, Report, WeightPoolSection
from cimc.ir.annotations import CimLayer
from cimc.ir.graph import Graph
from cimc.ir.printer import format_graph
from cimc.macro import MacroSpec
from cimc.mapping.select import cim_nodes
from cimc.options import validate

#: ``report.json["accuracy_unknown"]`` of a quantized build compiled without evaluation data.
UNKNOWN = ("no evaluation data: the compiled model's accuracy was not measured (compile with --eval DATA for "
           "float vs compiled top-1 and each layer's loss)")


@dataclass(frozen=True)
class BuildOutput:
    files: dict[str, FileData]
    """Each file's bytes, or its pieces (``cimc.build.file_parts``: the large weights of
    ``model.cim.onnx`` and ``digital.safetensors`` are the graph's arrays, written without a copy)."""
    manifest: Manifest
    cost: ModelCost
    report: Report


def build_files(graph: Graph, macro: MacroSpec, bitline_budget: int | None,
                source: dict[str, Any], options: dict[str, Any], quant: dict[str, Any] | None = None,
                evaluate: Callable[[bytes, Graph], Accuracy] | None = None,
                timing: str = "paper", batch: int = 1, conversion: str = "serial") -> BuildOutput:
    """All files of a build (manifest separate: its file hashes are added when written).
    A quantized graph also gets the files of ``cim_build`` (``quant``: the compile's
    calibration facts; ``evaluate``: the accuracy of ``model.cim.onnx`` and of ``graph``'s
    layers for the report; without it the report says the accuracy is unknown; ``timing``: the
    timeline's model, ``batch`` its batch size, ``conversion`` its conversion model)."""
    cost = model_cost(graph, macro, bitline_budget)
    result = timeline(graph, macro, cost.bitline_budget, cast(Timing, validate("timing", timing)),
                      validate("infer_batch", batch), cast(Conversion, validate("conversion", conversion)))
    nodes = cim_nodes(graph)
    quantized = is_quantized(nodes)
    arrays = (code_arrays if quantized else macro_arrays)(graph, nodes, macro, cost.macros)
    extra = quantized_files(graph, nodes) if quantized else {}
    digital = [DigitalOp(node=n.name, op=n.op) for n in graph.topo_order() if CimLayer not in n.ann]
    report = report_document(graph, cost, macro, digital, result, energy(result, macro))
    if quantized:
        sections: dict[str, Any] = {"quantization": quantization_section(graph, nodes, quant or {})}
        if evaluate is not None:
            sections["accuracy"] = evaluate(file_bytes(extra["model.cim.onnx"]), graph)
        else:
            sections["accuracy_unknown"] = UNKNOWN
        report = report.model_copy(update=sections)
    pool = graph_pool_cost(graph, macro)
    if pool is not None:
        report = report.model_copy(update={"weight_pool": WeightPoolSection(**pool.to_dict())})
    files: dict[str, FileData] = {
        "layout.json": dumps(layout_document(graph, nodes, macro, cost.macros), compact=True),
        "weights.safetensors": _weights(arrays),
        "schedule.json": dumps(schedule_document(graph, cost, macro, result)),
        "report.json": dumps(report),
        "report.md": (report_markdown(report, cost) + quantization_markdown(report) + pool_markdown(report)).encode(),
        "graph.txt": format_graph(graph).encode(),
        **extra,
        **pool_files(nodes),
    }
    manifest = Manifest(schema_version=SCHEMA_VERSION, tool="cimc", tool_version=__version__,
                        macro=MacroDoc(**macro.to_dict()), bitline_budget=cost.bitline_budget,
                        input=Source(**source), options=options, files={})
    return BuildOutput(files, manifest, cost, report)


def _weights(arrays: np.ndarray) -> bytes:
    """One ``(WL, BL)`` array per macro. safetensors orders metadata keys by hash, so a
    single key keeps the file byte-deterministic."""
    return macro_weights_bytes(arrays, {"format": "cimc-macro-weights/wordline-by-bitline"})
