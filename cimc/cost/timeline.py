"""The cycle timeline: placement's macros on the chip's physical macros over time.

The bitline budget holds ``N = max(1, floor(budget / BL))`` physical macros (*slots*). Every
CIM layer, in execution order, runs as *passes*: a pass is a set of whole segments (consecutive,
greedily as many as fit) whose placed macros all sit in slots at once, at most ``N`` of them (a
segment needing more macros than that is cut into chunks of its macros). A layer with more than
one pass keeps each output's partial sum between its passes in a buffer of ``psum_buffer``
entries (one output channel at one pixel each): the batch's ``B·P`` output pixels are then cut
into *tiles* of ``floor(psum_buffer / Cout)`` pixels, and every tile runs every pass (odd tiles
in reverse order, so the last pass's macros serve the next tile without a reload). A *phase*
is one pass over one tile (the whole ``B·P`` pixels for a one-pass layer).

Per pixel, a phase takes ``T · Σ_(s,g) (ceil(c_sg / A) + 1)`` cycles over the (segment ``s``,
group ``g``) pairs it holds ``c_sg`` digit columns of: one DAC cycle plus one per round of
``A`` ADCs, for each input digit (``T = a_slices``) — the cost model's
``P · T · S · G · (ceil(Cout_g · Sw / A) + 1)`` summed over whole segments, so a layer whose
segments are never cut computes in exactly the cost model's cycles. It converts ``T`` times
each of its columns and drives ``T · Σ rows_s`` wordlines per pixel (each pair's rows).

Events, scheduled in phase order (list scheduling, no reordering):

* a **load** brings a placed macro into a slot in ``load_cycles``; at most ``concurrent_loads``
  run at once. The slot is one whose macro the phase does not need: an empty one, else the one
  whose macro is needed again latest (never, for a monotone placement), ties to the slot free
  earliest. A load starts when a load channel and the slot are free (the slot's macro has
  finished its last phase so far);
* a **compute** phase starts when the previous phase has ended (layers run in execution order,
  which honours every dependency) and all its macros are loaded.

Timing models: ``paper`` — additionally no load starts before the previous phase has ended
(load, then compute: the paper's counting; with one load at a time a model that loads every
macro once takes ``macros · L + computing cycles``); ``overlap`` — loads run whenever a slot is
free (double buffering), and a layer needing more than ``N`` macros uses passes of ``N // 2``
macros when that cuts no segment and its pixels need one tile, so one half loads while the
other computes. With the same passes, every event of ``overlap`` starts no later than under
``paper`` (its constraints are a subset); the half passes add no compute cycle and no load
for a placement whose layers use ascending macros (every placer's), and the tests check
``overlap ≤ paper`` on random layer stacks and the zoo models.

Conversion models (``--conversion``): ``serial`` (default, the paper's count above: a pass's
(segment, group) pairs convert one after the other, each in rounds of one macro's ``A`` ADCs,
even when its columns spread over several macros); ``macro-parallel`` — every physical macro
has its own ``A`` ADCs and DACs, so the macros of a pass work at once, each on its own
columns: per pixel a phase takes ``T · max_m Σ_(s,g) (ceil(c_msg / A) + 1)`` cycles, ``c_msg``
the digit columns of pair ``(s, g)`` on macro ``m`` (a macro still runs its own pairs one after
the other: they share its wordlines). It never takes more cycles than ``serial``: for every
macro ``m``, ``c_msg ≤ c_sg``, so its sum is at most the sum over all pairs. Conversions and
wordline drives are counted as under ``serial``, so the energy is the same; only the compute
cycles (and with them latency and stalls) change.

With ``resident`` (no load ever replaced a macro: the model fits) the weights stay for the
next batch: a batch then takes its compute cycles; otherwise every batch repeats the whole
timeline. Digital ops take no cycles here (as in the cost model).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Literal

import numpy as np

from cimc.cost.model import precision
from cimc.errors import ResourceLimitError, UsageError
from cimc.ir.annotations import BitlinePlacement, CimLayer, WordlineTiling
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.limits import TIMELINE_PHASES
from cimc.macro import MacroSpec
from cimc.mapping.select import cim_nodes

Timing = Literal["paper", "overlap"]
Conversion = Literal["serial", "macro-parallel"]


@dataclass(frozen=True, eq=False)
class LayerWork:
    """What the timeline needs of one CIM layer: per column (layer-column order) its segment,
    group, output channel and placed macro; per segment its rows."""

    name: str
    params: int
    pixels: int
    a_slices: int
    cout: int
    groups: int
    segment_rows: tuple[int, ...]
    column_segment: np.ndarray
    column_group: np.ndarray
    column_channel: np.ndarray
    column_macro: np.ndarray


@dataclass(frozen=True)
class Pass:
    """A set of a layer's columns on at most ``N`` macros, with its per-pixel figures."""

    segments: tuple[int, ...]
    macros: tuple[int, ...]
    columns: int
    cycles: int
    conversions: int
    drives: int
    channels: int


@dataclass(frozen=True)
class Phase:
    """One pass of one layer over the output pixels ``[first_pixel, first_pixel + pixels)`` of
    the batch, with its events' counts (psum: partial-sum buffer reads, writes, and the entries
    reserved for the tile until its last pass: ``pixels · Cout`` while passes remain, else 0)."""

    layer: int
    node: str
    segments: tuple[int, ...]
    macros: tuple[int, ...]
    columns: int
    first_pixel: int
    pixels: int
    cycles: int
    conversions: int
    drives: int
    psum_reads: int
    psum_writes: int
    psum_entries: int


@dataclass(frozen=True)
class Load:
    macro: int
    slot: int
    start: int
    end: int
    phase: int


@dataclass(frozen=True)
class Placed:
    """A phase placed in time on its slots (``slots[i]`` holds ``phase.macros[i]``)."""

    phase: Phase
    slots: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class TimelineResult:
    timing: Timing
    batch: int
    slots: int
    phases: tuple[Placed, ...]
    loads: tuple[Load, ...]
    macs: int
    """Multiply-accumulates of one inference: ``Σ params · out_pixels`` (weights, not cells)."""
    conversion: Conversion = "serial"

    @property
    def makespan(self) -> int:
        return max([p.end for p in self.phases] + [ld.end for ld in self.loads], default=0)

    @property
    def compute_cycles(self) -> int:
        return sum(p.end - p.start for p in self.phases)

    @property
    def load_cycles(self) -> int:
        return sum(ld.end - ld.start for ld in self.loads)

    @property
    def resident(self) -> bool:
        """No load replaced a macro: the weights stay on chip for the next batch."""
        return len({ld.slot for ld in self.loads}) == len(self.loads)

    @property
    def steady_batch_cycles(self) -> int:
        return self.compute_cycles if self.resident else self.makespan

    @property
    def overlap_cycles(self) -> int:
        """Cycles in which some load runs while a phase computes."""
        return _intersection(_union([(ld.start, ld.end) for ld in self.loads]),
                             [(p.start, p.end) for p in self.phases])


def slot_count(budget: int, macro: MacroSpec) -> int:
    """``N = max(1, floor(budget / BL))`` physical macros."""
    return max(1, budget // macro.bitlines)


def layer_work(node: Node) -> LayerWork:
    """The ``LayerWork`` of a placed CIM layer (columns ``q = (s·Cout + o)·Sw + j``)."""
    layer, tiling, placement = node.ann[CimLayer], node.ann[WordlineTiling], node.ann[BitlinePlacement]
    bits = precision(node)
    sw = int(bits["w_slices"])
    q = np.arange(placement.num_columns, dtype=np.int64)
    channel = (q // sw) % layer.cout
    return LayerWork(node.name, layer.params, layer.out_pixels, int(bits["a_slices"]), layer.cout, layer.groups,
                     tuple(int(r) for r in tiling.segment_rows()), q // (layer.cout * sw),
                     channel // layer.cout_per_group, channel, np.asarray(placement.macro, dtype=np.int64))


def _figures(work: LayerWork, mask: np.ndarray, adcs: int,
             conversion: Conversion = "serial") -> tuple[int, int, int, int]:
    """Per pixel: cycles, conversions, wordline drives of the columns in ``mask``; channels held."""
    key = work.column_segment[mask] * work.groups + work.column_group[mask]
    pairs, counts = np.unique(key, return_counts=True)
    rows = np.asarray(work.segment_rows, dtype=np.int64)[pairs // work.groups]
    t = work.a_slices
    if conversion == "macro-parallel":
        cycles = t * _parallel_cycles(work.column_macro[mask], key, adcs)
    else:
        cycles = t * int(np.sum(-(-counts // adcs) + 1))
    return cycles, t * int(counts.sum()), t * int(rows.sum()), int(np.unique(work.column_channel[mask]).size)


def _parallel_cycles(macro: np.ndarray, key: np.ndarray, adcs: int) -> int:
    """``max_m Σ_(s,g) (ceil(c_msg / A) + 1)`` over the columns' macros ``m`` and pairs ``key``."""
    if macro.size == 0:
        return 0
    triples, counts = np.unique(np.stack([macro, key], axis=1), axis=0, return_counts=True)
    _, which = np.unique(triples[:, 0], return_inverse=True)
    return int(np.bincount(which, weights=-(-counts // adcs) + 1).max())


def plan_passes(work: LayerWork, limit: int, adcs: int, conversion: Conversion = "serial") -> list[Pass]:
    """Consecutive whole segments while their macros fit ``limit`` slots (module doc)."""
    seg, mac = work.column_segment, work.column_macro
    pairs = np.unique(np.stack([seg, mac], axis=1), axis=0)  # (segment, macro), sorted
    starts = np.flatnonzero(np.r_[True, np.diff(pairs[:, 0]) > 0])
    segment_ids, per_segment = pairs[starts, 0].tolist(), np.split(pairs[:, 1], starts[1:])
    groups: list[tuple[list[int], set[int], bool]] = []  # (segments, macros, a chunk of one segment)
    for s, macros in zip(segment_ids, per_segment, strict=True):
        wanted = {int(m) for m in macros}
        if len(wanted) > limit:  # one segment on more macros than slots: chunks of its macros
            ordered = sorted(wanted)
            groups += [([s], set(ordered[i:i + limit]), True) for i in range(0, len(ordered), limit)]
        elif groups and not groups[-1][2] and len(groups[-1][1] | wanted) <= limit:
            groups[-1][0].append(s)
            groups[-1][1].update(wanted)
        else:
            groups.append(([s], wanted, False))
    passes = []
    for segments, chosen, _ in groups:
        mask = np.isin(seg, segments) & np.isin(mac, sorted(chosen))
        cycles, conversions, drives, channels = _figures(work, mask, adcs, conversion)
        passes.append(Pass(tuple(segments), tuple(sorted(chosen)), int(mask.sum()), cycles, conversions, drives,
                           channels))
    return passes


def layer_phases(index: int, work: LayerWork, passes: list[Pass], batch: int, psum_buffer: int) -> list[Phase]:
    """The phases of one layer: every pass over every tile of the batch's pixels (module doc)."""
    total = batch * work.pixels
    if len(passes) == 1:
        tile = total
    else:
        if psum_buffer < work.cout:
            raise UsageError(f"layer {work.name} runs in {len(passes)} passes and keeps {work.cout} partial sums per "
                             f"pixel between them, but the macro's psum_buffer holds {psum_buffer}",
                             hint="raise psum_buffer in the macro spec, or the bitline budget (--bl)")
        tile = psum_buffer // work.cout
    phases = []
    for k, first in enumerate(range(0, total, tile)):
        pixels = min(tile, total - first)
        order = passes if k % 2 == 0 else passes[::-1]
        for i, p in enumerate(order):
            last = i == len(order) - 1
            phases.append(Phase(index, work.name, p.segments, p.macros, p.columns, first, pixels, pixels * p.cycles,
                                pixels * p.conversions, pixels * p.drives, pixels * p.channels if i else 0,
                                0 if last else pixels * p.channels, 0 if last else pixels * work.cout))
    return phases


def _tiles(work: LayerWork, passes: list[Pass], batch: int, psum_buffer: int) -> int:
    if len(passes) == 1:
        return 1
    return -(-batch * work.pixels // max(1, psum_buffer // work.cout))


def _limit(work: LayerWork, slots: int, timing: Timing, macro: MacroSpec, batch: int,
           conversion: Conversion = "serial") -> list[Pass]:
    """The passes of a layer: ``N`` slots, or ``N // 2`` under ``overlap`` where that helps (module doc)."""
    full = plan_passes(work, slots, macro.adcs, conversion)
    if timing != "overlap" or len(full) == 1 or slots < 2:
        return full
    half = plan_passes(work, slots // 2, macro.adcs, conversion)
    same_work = sum(p.cycles for p in half) == sum(p.cycles for p in full)
    return half if same_work and _tiles(work, half, batch, macro.psum_buffer) == 1 else full


def model_phases(works: list[LayerWork], slots: int, macro: MacroSpec, timing: Timing, batch: int,
                 conversion: Conversion = "serial") -> list[Phase]:
    """Every layer's phases in order; a ``ResourceLimitError`` past ``TIMELINE_PHASES``, counted before
    any is made."""
    plans = [(i, w, _limit(w, slots, timing, macro, batch, conversion)) for i, w in enumerate(works)
             if w.column_macro.size]
    count = sum(len(p) * _tiles(w, p, batch, macro.psum_buffer) for _, w, p in plans)
    if count > TIMELINE_PHASES:
        raise ResourceLimitError(f"the timeline would have {count:,} compute phases (limit {TIMELINE_PHASES:,}): "
                                 "layers split over passes keep too few partial sums per tile",
                                 hint="raise psum_buffer in the macro spec or the bitline budget (--bl), or lower "
                                 "--infer-batch")
    phases: list[Phase] = []
    for i, work, passes in plans:
        phases += layer_phases(i, work, passes, batch, macro.psum_buffer)
    return phases


def schedule(phases: list[Phase], slots: int, macro: MacroSpec, timing: Timing) -> tuple[list[Placed], list[Load]]:
    """Loads and compute phases in time (module doc)."""
    uses: dict[int, list[int]] = {}
    for p, phase in enumerate(phases):
        for m in phase.macros:
            uses.setdefault(m, []).append(p)
    cursor = dict.fromkeys(uses, 0)
    occupant, free_at = [-1] * slots, [0] * slots
    where: dict[int, int] = {}
    ready: dict[int, int] = {}
    channels = [0] * macro.concurrent_loads
    placed: list[Placed] = []
    loads: list[Load] = []
    compute_end = 0
    for p, phase in enumerate(phases):
        needed = set(phase.macros)
        floor = compute_end if timing == "paper" else 0
        for m in phase.macros:
            if m in where:
                continue
            s = _victim(occupant, free_at, needed, uses, cursor, p)
            if occupant[s] >= 0:
                del where[occupant[s]]
            channel = heapq.heappop(channels)
            start = max(channel, free_at[s], floor)
            heapq.heappush(channels, start + macro.load_cycles)
            occupant[s], where[m], ready[m] = m, s, start + macro.load_cycles
            loads.append(Load(m, s, start, start + macro.load_cycles, p))
        start = max([compute_end] + [ready[m] for m in phase.macros])
        compute_end = start + phase.cycles
        for m in phase.macros:
            free_at[where[m]] = compute_end
            while cursor[m] < len(uses[m]) and uses[m][cursor[m]] <= p:
                cursor[m] += 1
        placed.append(Placed(phase, tuple(where[m] for m in phase.macros), start, compute_end))
    return placed, loads


def _victim(occupant: list[int], free_at: list[int], needed: set[int], uses: dict[int, list[int]],
            cursor: dict[int, int], p: int) -> int:
    """The slot to load into: its macro needed latest (empty: never), then free earliest, then lowest.
    (The least ``(−next use, free at, slot)``, compared as tuples without a key function: this
    runs once per load over every slot.)"""
    never = -float("inf")
    return min((never if m < 0 or cursor[m] >= len(uses[m]) else -float(uses[m][cursor[m]]), free_at[s], s)
               for s, m in enumerate(occupant) if m not in needed)[2]


def timeline(graph: Graph, macro: MacroSpec, budget: int, timing: Timing = "paper", batch: int = 1,
             conversion: Conversion = "serial") -> TimelineResult:
    """The timeline of a placed graph on ``slot_count(budget)`` physical macros."""
    return timeline_of([layer_work(n) for n in cim_nodes(graph)], macro, budget, timing, batch, conversion)


def timeline_of(works: list[LayerWork], macro: MacroSpec, budget: int, timing: Timing = "paper",
                batch: int = 1, conversion: Conversion = "serial") -> TimelineResult:
    slots = slot_count(budget, macro)
    phases = model_phases(works, slots, macro, timing, batch, conversion)
    placed, loads = schedule(phases, slots, macro, timing)
    macs = sum(w.params * w.pixels for w in works)
    return TimelineResult(timing, batch, slots, tuple(placed), tuple(loads), macs, conversion)


def _union(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _intersection(xs: list[tuple[int, int]], ys: list[tuple[int, int]]) -> int:
    """Length of the intersection of two sorted lists of disjoint intervals."""
    total, i, j = 0, 0, 0
    while i < len(xs) and j < len(ys):
        lo, hi = max(xs[i][0], ys[j][0]), min(xs[i][1], ys[j][1])
        total += max(0, hi - lo)
        if xs[i][1] < ys[j][1]:
            i += 1
        else:
            j += 1
    return total
