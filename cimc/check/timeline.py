"""Timeline checks of ``cimc validate``: ``schedule.json``'s ``timeline`` as a schedule, then
recomputed.

As a schedule, from its own events (``timeline_violations``): every load takes the macro's
``load_cycles`` into an existing slot, loads into one slot never overlap and at most
``concurrent_loads`` run at once; phases run one after the other in layer order (every
dependency of a layer is an earlier layer: ``layout.json``'s order is an execution order);
**load before use** — each macro a phase computes on is the last one loaded into its slot,
done before the phase starts; **no slot double-booked** — no load into that slot starts before
the phase ends; the partial sums a phase keeps fit ``psum_buffer``; and the totals are
re-derived from the events. Then recomputed: the timeline of the layout's layers
(``check.cost.layout_graph``) under the document's timing model and batch must equal the
document, and ``report.json``'s ``latency``, ``energy`` and ``system`` (area) and ``report.md``'s
timeline lines must equal those recomputed from it.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterator
from itertools import pairwise

from cimc.backend.report import latency_document, system_document, timeline_notes
from cimc.backend.schedule import timeline_document
from cimc.build.reader import BuildDir
from cimc.check.cost import layout_graph, recomputed_cost
from cimc.check.violations import Validation, Violation
from cimc.cost.energy import energy
from cimc.cost.timeline import timeline
from cimc.documents.parse import parse
from cimc.documents.report import EnergyReport, Report
from cimc.documents.schedule import Schedule, Timeline, TimelineTotals


def check_timeline(build: BuildDir, result: Validation) -> Iterator[Violation]:
    if build.schedule is None:
        return  # the schedule check reports it missing
    doc = parse(Schedule, "schedule.json", build.schedule).timeline
    yield from (Violation("timeline", "schedule.json timeline", m) for m in timeline_violations(doc))
    options = build.manifest.get("options", {})
    conversion = doc.conversion or "serial"
    recorded = {"timing": options.get("timing", doc.timing), "infer_batch": options.get("infer_batch", doc.batch),
                "conversion": options.get("conversion", "serial")}  # recorded only when not serial
    for key, option, value in (("timing", "timing", doc.timing), ("batch", "infer_batch", doc.batch),
                               ("conversion", "conversion", conversion)):
        if recorded[option] != value:
            yield Violation("timeline", "schedule.json timeline", f"{key} is {value!r}, the manifest "
                            f"says {option} = {recorded[option]!r}")
    macro, cost = build.macro, recomputed_cost(build)
    again = timeline(layout_graph(build), macro, cost.bitline_budget, doc.timing, doc.batch, conversion)
    want = timeline_document(again, macro)
    if want != doc:
        yield Violation("timeline", "schedule.json timeline", f"differs from the timeline recomputed from the layout "
                        f"({_first_difference(doc, want)})")
    if build.report is not None:
        report = parse(Report, "report.json", build.report)
        latency, joules = latency_document(again), EnergyReport(**energy(again, macro).to_dict())
        system = system_document(macro, again.slots)
        for name, got, expected in (("latency", report.latency, latency), ("energy", report.energy, joules),
                                    ("system", report.system, system)):
            if got != expected:
                yield Violation("timeline", f"report.json {name}", f"{got.to_json()} differs from the recomputed "
                                f"{expected.to_json()}")
        text = build.text("report.md") or ""
        bullets = {line[2:] for line in text.splitlines() if line.startswith("- ")}
        for note in timeline_notes(latency, joules, system):
            if note not in bullets:
                yield Violation("timeline", "report.md", f"missing or altered line: {note!r}")


def _first_difference(got: Timeline, want: Timeline) -> str:
    for key in ("timing", "conversion", "batch", "slots", "load_cycles", "concurrent_loads", "psum_buffer", "totals"):
        if getattr(got, key) != getattr(want, key):
            return f"{key}: {getattr(got, key)!r}, recomputed {getattr(want, key)!r}"
    for key in ("phases", "loads"):
        a, b = getattr(got, key), getattr(want, key)
        if len(a) != len(b):
            return f"{len(a)} {key}, recomputed {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return f"{key}[{i}]: {x.to_json()}, recomputed {y.to_json()}"
    return "equal"


def timeline_violations(doc: Timeline) -> list[str]:
    """What is wrong with a timeline as a schedule (module doc); empty when nothing is."""
    return [*_load_violations(doc), *_phase_violations(doc), *_total_violations(doc)]


def _load_violations(doc: Timeline) -> Iterator[str]:
    per_slot: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for i, ld in enumerate(doc.loads):
        if ld.end - ld.start != doc.load_cycles:
            yield f"load {i} takes {ld.end - ld.start} cycles, a macro load takes {doc.load_cycles}"
        if ld.slot >= doc.slots:
            yield f"load {i} goes to slot {ld.slot} of {doc.slots}"
        if ld.phase >= len(doc.phases) or ld.macro not in doc.phases[ld.phase].macros:
            yield f"load {i} of macro {ld.macro} is for phase {ld.phase}, which does not compute on it"
        per_slot[ld.slot].append((ld.start, ld.end))
    for slot, spans in per_slot.items():
        spans.sort()
        for (_, end), (start, _) in pairwise(spans):
            if start < end:
                yield f"slot {slot} is loaded twice at once (a load starts at {start}, before {end})"
    edges = sorted([(ld.start, 1) for ld in doc.loads] + [(ld.end, -1) for ld in doc.loads])
    running = peak = 0
    for _, step in edges:  # ends sort before starts at the same cycle
        running += step
        peak = max(peak, running)
    if peak > doc.concurrent_loads:
        yield f"{peak} loads run at once, the macro allows {doc.concurrent_loads}"


def _phase_violations(doc: Timeline) -> Iterator[str]:
    starts: dict[int, list[int]] = defaultdict(list)  # slot -> sorted load starts
    loaded: dict[int, list[tuple[int, int, int]]] = defaultdict(list)  # slot -> (start, end, macro)
    for ld in sorted(doc.loads, key=lambda x: x.start):
        starts[ld.slot].append(ld.start)
        loaded[ld.slot].append((ld.start, ld.end, ld.macro))
    previous_end, previous_layer = 0, 0
    for i, ph in enumerate(doc.phases):
        where = f"phase {i} (layer {ph.layer})"
        if ph.phase != i:
            yield f"{where} is numbered {ph.phase}"
        if ph.start < previous_end or ph.layer < previous_layer or ph.end < ph.start:
            yield f"{where} runs at [{ph.start}, {ph.end}), before the phase it depends on ends ({previous_end})"
        previous_end, previous_layer = max(previous_end, ph.end), max(previous_layer, ph.layer)
        if len(ph.slots) != len(ph.macros):
            yield f"{where} lists {len(ph.macros)} macros on {len(ph.slots)} slots"
        if ph.psum_entries > doc.psum_buffer:
            yield f"{where} keeps {ph.psum_entries} partial sums, the buffer holds {doc.psum_buffer}"
        for m, s in zip(ph.macros, ph.slots, strict=False):
            k = bisect.bisect_right(starts[s], ph.start) - 1
            if k < 0 or loaded[s][k][2] != m or loaded[s][k][1] > ph.start:
                yield f"{where} computes on macro {m} in slot {s}, which is not loaded there before it starts"
            elif k + 1 < len(starts[s]) and starts[s][k + 1] < ph.end:
                yield (f"{where} computes on slot {s} until {ph.end}, but a load into it starts at "
                       f"{starts[s][k + 1]} (slot double-booked)")


def _total_violations(doc: Timeline) -> Iterator[str]:
    compute = sum(p.end - p.start for p in doc.phases)
    makespan = max([p.end for p in doc.phases] + [ld.end for ld in doc.loads], default=0)
    spans = sorted((ld.start, ld.end) for ld in doc.loads)
    merged: list[list[int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    overlap = sum(max(0, min(b, p.end) - max(a, p.start)) for a, b in merged for p in doc.phases)
    resident = len({ld.slot for ld in doc.loads}) == len(doc.loads)
    want = TimelineTotals(makespan=makespan, compute_cycles=compute, loads=len(doc.loads),
                          load_cycles=sum(ld.end - ld.start for ld in doc.loads), overlap_cycles=overlap,
                          stall_cycles=makespan - compute, resident=resident,
                          steady_batch_cycles=compute if resident else makespan)
    for key, value in want.to_json().items():
        if getattr(doc.totals, key) != value:
            yield f"totals: {key} is {getattr(doc.totals, key)!r}, re-derived from the events: {value!r}"
