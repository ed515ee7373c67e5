"""Report and schedule checks of ``cimc validate``: every figure recomputed from the layout.

The layout alone determines each CIM layer's geometry (``CimLayer``), segments
(``WordlineTiling``) and columns (``BitlinePlacement``, read from the bitline owners in
layer-column order ``(s·Cout + o)·w_slices + j``); ``quant.json``, when the build has one,
gives each layer's bits (``QuantParams`` with the macro's cell/DAC widths, hence the
weight and input slices the cost model multiplies by). A
stand-in graph of those layers goes through ``cost_model.model_cost`` — the same formulas
the compiler uses, fed from the build's layout instead of the compiler's state — and
every per-layer and total figure of ``report.json``, the table rows and notes of
``report.md`` and the CIM steps of ``schedule.json`` must equal the recomputed values.

The schedule must also be an execution order of ``graph.txt`` (else ``graph.json``): each
node once, with its op, after the producers of all its inputs, CIM steps exactly the
layout's layers in the layout's order, each converting at most ``A`` columns per round
(``rounds = ceil(Cout_g · w_slices / A)``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np

from cimc.backend.report import COLUMNS, budget_notes, layer_rows
from cimc.build.graph_text import TextNode, parse_graph_text
from cimc.build.reader import BuildDir
from cimc.check.violations import Validation, Violation
from cimc.cost.model import ModelCost, conversion_rounds, model_cost
from cimc.documents import Document
from cimc.documents.parse import parse
from cimc.documents.report import Report
from cimc.documents.schedule import CimStep, DigitalStep, InitialLoad, Schedule, Step
from cimc.ir.annotations import BitlinePlacement, CimLayer, QuantParams, WordlineTiling
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.safe_text import printable


def layout_graph(build: BuildDir) -> Graph:
    """A chain of the layout's CIM layers carrying the annotations the cost model reads."""
    own = build.owners
    graph = Graph(build.name)
    quant = _quant_layers(build)
    for i, entry in enumerate(build.layout.layers):
        node = Node(entry.node, entry.op, (f"t{i}",), (f"t{i + 1}",))
        node.ann.put(CimLayer(entry.kind, entry.groups, entry.rows, entry.cout, (entry.kernel[0], entry.kernel[1]),
                              entry.out_pixels))
        bounds = [s.row_start for s in entry.segments] + [entry.segments[-1].row_stop]
        node.ann.put(WordlineTiling(entry.tiling, build.macro.wordlines, tuple(bounds)))
        m, b = np.nonzero(own.used & (own.layer == i))
        key = (own.segment[m, b] * entry.cout + own.out_channel[m, b]) * entry.w_slices
        order = np.argsort(key + own.slices[m, b], kind="stable")
        node.ann.put(BitlinePlacement(entry.first_column, m[order], b[order], own.start[m, b][order]))
        if entry.node in quant:
            node.ann.put(quant[entry.node])
        graph.add_node(node)
    return graph


def _quant_layers(build: BuildDir) -> dict[str, QuantParams]:
    """Bits of each layer from ``quant.json`` (steps are not needed by the cost model)."""
    doc = build.optional_json("quant.json")
    one = np.ones(1, dtype=np.float32)
    macro = build.macro
    return {x["node"]: QuantParams(int(x["w_bits"]), int(x["a_bits"]), int(x["adc_bits"]), one, 1.0, one,
                                   cell_bits=macro.cell_bits, dac_bits=macro.dac_bits)
            for x in (doc or {}).get("layers", []) if isinstance(x, dict)}


def recomputed_cost(build: BuildDir) -> ModelCost:
    return model_cost(layout_graph(build), build.macro, build.manifest.get("bitline_budget"))


def check_report(build: BuildDir, result: Validation) -> Iterator[Violation]:
    cost = recomputed_cost(build)
    if build.report is None:
        yield Violation("report", "report.json", "missing")
    else:
        yield from _check_report_json(parse(Report, "report.json", build.report), cost)
    markdown = build.text("report.md")
    if markdown is None:
        yield Violation("report", "report.md", "missing")
    else:
        yield from _check_markdown(markdown, cost, build)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-12)
    return bool(a == b) and type(a) is type(b)


def _check_report_json(report: Report, cost: ModelCost) -> Iterator[Violation]:
    expected = cost.to_dict()
    if [layer.name for layer in report.layers] != [layer["name"] for layer in expected["layers"]]:
        yield Violation("report", "report.json", "layers are not the layout's CIM layers in order")
    for got, want in zip(report.layers, expected["layers"], strict=False):
        for key, value in want.items():
            if not _same(getattr(got, key), value):
                yield Violation("report", f"report.json layer {want['name']}",
                                f"{key} is {getattr(got, key)!r}, recomputed from the layout: {value!r}")
    for key, value in expected.items():
        if key != "layers" and not _same(getattr(report.totals, key), value):
            yield Violation("report", "report.json totals",
                            f"{key} is {getattr(report.totals, key)!r}, recomputed: {value!r}")


def _check_markdown(text: str, cost: ModelCost, build: BuildDir) -> Iterator[Violation]:
    header = "| " + " | ".join(h for _, h in COLUMNS) + " |"
    lines = text.splitlines()
    if header not in lines:
        yield Violation("report", "report.md", "no per-layer table")
        return
    start = lines.index(header) + 2
    stop = next((j for j in range(start, len(lines)) if not lines[j].startswith("|")), len(lines))
    rows = [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in lines[start:stop]]
    expected = layer_rows(cost)
    if len(rows) != len(expected):
        yield Violation("report", "report.md", f"table has {len(rows)} rows, expected {len(expected)}")
    for got, want in zip(rows, expected, strict=False):
        for (_, head), g, w in zip(COLUMNS, got, want, strict=False):
            if g != w:
                yield Violation("report", f"report.md row {want[0]}", f"{head} is {g!r}, recomputed: {w!r}")
    bullets = {line[2:] for line in lines if line.startswith("- ")}
    for note in budget_notes(cost, build.macro):
        if note not in bullets:
            yield Violation("report", "report.md", f"missing or altered note: {note!r}")


def check_schedule(build: BuildDir, result: Validation) -> Iterator[Violation]:
    if build.schedule is None:
        yield Violation("schedule", "schedule.json", "missing")
        return
    schedule = parse(Schedule, "schedule.json", build.schedule)
    nodes, source, errors = _graph_nodes(build)
    yield from (Violation("schedule", source, e) for e in errors)
    if nodes is not None:
        yield from _check_order(schedule.steps, nodes, build)
    yield from _check_cim_steps(schedule, recomputed_cost(build), build)


def _graph_nodes(build: BuildDir) -> tuple[list[TextNode] | None, str, list[str]]:
    """The graph's nodes from ``graph.txt``, else from ``graph.json`` (no shapes there)."""
    text = build.text("graph.txt")
    if text is not None:
        nodes, errors = parse_graph_text(text)
        return nodes, "graph.txt", errors
    doc = build.optional_json("graph.json")
    if not isinstance(doc, dict):
        return None, "graph.txt", ["graph.txt and graph.json missing: the execution order cannot be checked"]
    return [TextNode(printable(str(n["name"])), str(n["op"]), tuple(map(printable, n["inputs"])),
                     tuple(map(printable, n["outputs"])), None, n.get("cim_layer") is not None)
            for n in doc.get("nodes", [])], "graph.json", []


def _check_order(steps: list[Step], nodes: list[TextNode], build: BuildDir) -> Iterator[Violation]:
    """``nodes`` name things as ``graph.txt`` prints them (``printable``), so the schedule's
    names are compared escaped too."""
    by_name = {n.name: n for n in nodes}
    names = [printable(s.node) for s in steps]
    for name in sorted(set(by_name) - set(names)):
        yield Violation("schedule", "schedule.json", f"node {name} of the graph is never executed")
    counts = Counter(names)
    for odd in sorted({n for n in names if counts[n] > 1 or n not in by_name}):
        yield Violation("schedule", "schedule.json", f"node {odd} is not in the graph or runs more than once")
    producer = {t: n.name for n in nodes for t in n.outputs}
    position = {name: i for i, name in enumerate(names)}
    for i, step in enumerate(steps):
        node = by_name.get(names[i])
        if step.step != i:
            yield Violation("schedule", f"step {i}", f"numbered {step.step!r}")
        if node is None:
            continue
        if step.op != node.op or (step.unit == "cim") != node.cim:
            yield Violation("schedule", f"step {i} ({node.name})", f"op/unit {step.op}/{step.unit}, "
                            f"the graph says {node.op}/{'cim' if node.cim else 'digital'}")
        late = [producer[t] for t in node.inputs if t in producer and position.get(producer[t], i + 1) >= i]
        if late:
            yield Violation("schedule", f"step {i} ({node.name})", f"runs before its input's producer {late[0]}")
        if isinstance(step, DigitalStep) and node.shape is not None and tuple(step.output_shape) != node.shape:
            yield Violation("schedule", f"step {i} ({node.name})", f"output shape {step.output_shape}, "
                            f"the graph says {list(node.shape)}")
    cim = [s.node for s in steps if s.unit == "cim"]
    if cim != build.layer_names:
        yield Violation("schedule", "schedule.json", "CIM steps are not the layout's layers in the layout's order")


def _cim_expectations(build: BuildDir, cost: ModelCost) -> dict[str, dict[str, int | list[int]]]:
    """Recomputed fields of each CIM step, keyed by layer name, in layout order."""
    own, macro = build.owners, build.macro
    loaded: set[int] = set()
    out = {}
    for i, (entry, c) in enumerate(zip(build.layout.layers, cost.layers, strict=True)):
        macros = np.unique(np.nonzero(own.used & (own.layer == i))[0]).tolist()
        new = [m for m in macros if m not in loaded]
        loaded.update(new)
        reload = not cost.fits_on_chip
        out[entry.node] = {
            "macros": macros, "loads": len(new) if reload else 0,
            "load_cycles": len(new) * macro.load_cycles if reload else 0, "segments": c.segments,
            "groups": entry.groups,
            "conversion_rounds": conversion_rounds(entry.cout // entry.groups, c.w_slices, macro.adcs),
            "w_slices": c.w_slices, "a_slices": c.a_slices,
            "out_pixels": entry.out_pixels, "cycles": c.computing_cycles}
    return out


def _check_cim_steps(schedule: Schedule, cost: ModelCost, build: BuildDir) -> Iterator[Violation]:
    expected = _cim_expectations(build, cost)
    adcs = build.macro.adcs
    for step in schedule.steps:
        if not isinstance(step, CimStep) or step.node not in expected:
            continue
        want = expected[step.node]
        where = f"step {step.step} ({step.node})"
        for key, value in want.items():
            if getattr(step, key) != value:
                yield Violation("schedule", where, f"{key} is {getattr(step, key)!r}, recomputed: {value!r}")
        needed = want["conversion_rounds"]
        if isinstance(needed, int) and step.conversion_rounds < needed:
            yield Violation("schedule", where, f"{step.conversion_rounds} round(s) of {adcs} ADCs convert fewer "
                            f"columns than one segment has ({needed} rounds needed): over the ADC limit")
    fits = cost.fits_on_chip
    load = InitialLoad(macros=cost.macros if fits else 0, cycles=cost.loading_cycles if fits else 0)
    totals: dict[str, object] = {"initial_load": load, "total_computing_cycles": cost.computing_cycles,
                                 "reload_cycles_per_inference": cost.reload_cycles_per_inference}
    for key, figure in totals.items():
        if getattr(schedule, key) != figure:
            yield Violation("schedule", "schedule.json", f"{key} is {_shown(getattr(schedule, key))}, "
                            f"recomputed: {_shown(figure)}")


def _shown(value: object) -> str:
    """A figure as the JSON shows it (a section as its object)."""
    return repr(value.to_json() if isinstance(value, Document) else value)
