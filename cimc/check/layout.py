"""Layout checks of ``cimc validate``: segments, coverage, spans, conv geometry
(``check.geometry``) and the placement policy.

For layer ``ℓ`` with ``Cout`` outputs, kernel ``kh×kw`` (``k = kh·kw``), ``rows = C·k``
per group and segment bounds ``0 = r_0 < … < r_S = rows``:

* the bounds are ``segment_bounds(C, k, WL, mode)`` (``WL`` = the pool's vector length ``L``
  for a layer with ``pool_vector_length``, whose tiling must be dense) and ``r_{s+1} − r_s ≤ WL`` (wordline
  limit); wordline ``t`` of segment ``s`` holds row ``r = r_s + t``, i.e. input channel
  ``r // k`` and kernel position ``((r mod k) // kw, r mod kw)``;
* with ``D = w_slices`` weight digits (bit-slicing; 1 when unsliced) the bitlines owned by
  ``ℓ`` carry the keys ``(s·Cout + o)·D + j`` of ``{0…S−1}×{0…Cout−1}×{0…D−1}``, each
  exactly once, so its ``S·Cout·D`` columns — ``rows·Cout`` weights, ``D`` cells each — are
  all placed and none twice; each span ``[w0, w0 + r_{s+1} − r_s)`` lies inside ``[0, WL)``;
  each ``(macro, bitline)`` has one owner entry, so no cell is claimed twice;
* the ``D`` digit columns of one (segment, channel) are adjacent: the bitline holding digit
  ``j > 0`` follows, on the same macro, the one holding digit ``j − 1`` of the same column;
* a macro never has more bitlines in use than its ADCs can read (``A · bitlines/ADC``);
* with placement ``packed`` (``aligned``) layer ``ℓ`` starts where the previous one ended
  (rounded up to a multiple of ``BL``) and its columns sit where
  ``place_bitlines.slice_columns`` puts them — ``(f_ℓ + k) // BL``, ``(f_ℓ + k) mod BL``
  when unsliced — from wordline 0.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from cimc.build.cell_map import Owners
from cimc.build.reader import BuildDir
from cimc.check.geometry import check_geometry
from cimc.check.violations import Validation, Violation
from cimc.documents.layout import Layer, Segment
from cimc.mapping.columns import slice_columns
from cimc.mapping.tiling import MODES, segment_bounds
from cimc.options import OPTIONS

POLICIES = OPTIONS["placement"].choices
EXAMPLES = 3


def check_layout(build: BuildDir, result: Validation) -> Iterator[Violation]:
    macro = build.macro
    indices = [m.index for m in build.layout.macros]
    if indices != list(range(len(indices))):
        yield Violation("layout", "layout.json", "macro entries must be numbered 0, 1, … once each "
                        "(a repeated macro would claim its cells twice)")
    for i, layer in enumerate(build.layout.layers):
        yield from _check_segments(i, layer, macro.wordlines)
    yield from check_geometry(build)
    own = build.owners
    yield from _check_spans(own)
    yield from _check_coverage(build, own)
    yield from _check_adjacent_digits(build, own)
    per_macro = own.used.sum(axis=1)
    limit = macro.adcs * macro.bitlines_per_adc
    for m in np.flatnonzero(per_macro > limit).tolist():
        yield Violation("layout", f"macro {m}", f"{int(per_macro[m])} bitlines in use but its {macro.adcs} "
                        f"ADCs × {macro.bitlines_per_adc} bitlines each read only {limit}")


def _check_segments(i: int, layer: Layer, wordlines: int) -> Iterator[Violation]:
    where = f"layer {i} ({layer.node})"
    if layer.index != i:
        yield Violation("layout", where, f"index {layer.index} at position {i}")
    kh, kw = layer.kernel
    k, rows, segs = kh * kw, layer.rows, layer.segments
    starts = np.array([s.row_start for s in segs])
    stops = np.array([s.row_stop for s in segs])
    if [s.index for s in segs] != list(range(len(segs))) or rows % k or layer.cout % layer.groups:
        yield Violation("layout", where, "segments not numbered 0…S−1, or rows/outputs not divisible "
                        "by the kernel size/groups")
        return
    if starts[0] != 0 or stops[-1] != rows or (starts[1:] != stops[:-1]).any() or (stops <= starts).any():
        yield Violation("layout", where, f"segments do not partition rows 0…{rows} in order")
        return
    yield from _check_bounds(where, layer, np.append(starts, rows), rows // k, k, wordlines)
    digits = layer.w_slices
    if layer.columns != len(segs) * layer.cout * digits:
        yield Violation("layout", where, f"{layer.columns} columns recorded, S·Cout·w_slices = "
                        f"{len(segs) * layer.cout * digits}")
    yield from _check_wordline_maps(where, segs, rows, kw, k)


def _check_bounds(where: str, layer: Layer, bounds: np.ndarray, channels: int, k: int,
                  wordlines: int) -> Iterator[Violation]:
    tall = np.flatnonzero(np.diff(bounds) > wordlines)
    if tall.size:
        yield Violation("layout", where, f"segment {int(tall[0])} activates {int(np.diff(bounds)[tall[0]])} "
                        f"wordlines, the macro has {wordlines} ({tall.size} segment(s) over the limit)")
    length = layer.pool_vector_length  # a pooled layer: dense runs of the pool's vector length
    if length is not None and (layer.tiling != "dense" or length > wordlines):
        yield Violation("layout", where, f"a pooled layer needs dense tiling and a vector length of at most "
                        f"{wordlines} wordlines (tiling {layer.tiling}, length {length})")
    if layer.tiling in MODES:
        expected = segment_bounds(channels, k, length or wordlines, layer.tiling)
        if not np.array_equal(expected, bounds):
            yield Violation("layout", where, f"segment bounds {bounds.tolist()[:6]}… differ from "
                            f"{layer.tiling} tiling's {expected.tolist()[:6]}…")


def _check_wordline_maps(where: str, segs: list[Segment], rows: int, kw: int, k: int) -> Iterator[Violation]:
    channel = np.concatenate([np.asarray(s.wordline_channel, dtype=np.int64) for s in segs])
    pos = np.concatenate([np.asarray(s.wordline_kernel_pos, dtype=np.int64).reshape(-1, 2) for s in segs])
    r = np.arange(rows)
    if channel.shape != (rows,) or pos.shape != (rows, 2):
        yield Violation("layout", where, "wordline maps do not list one entry per row")
        return
    bad = (channel != r // k) | (pos[:, 0] != (r % k) // kw) | (pos[:, 1] != r % kw)
    if bad.any():
        row = int(np.argmax(bad))
        yield Violation("layout", where, f"{int(bad.sum())} wordline map entries wrong, first at row {row}: "
                        f"channel {int(channel[row])}, kernel {pos[row].tolist()}; expected "
                        f"{row // k}, {[(row % k) // kw, row % kw]}")


def _check_spans(own: Owners) -> Iterator[Violation]:
    bad = own.used & ((own.start < 0) | (own.stop > own.wordlines))
    for m, b in list(zip(*np.nonzero(bad), strict=True))[:EXAMPLES]:
        yield Violation("layout", f"macro {m}", f"bitline {b} holds wordlines {own.start[m, b]}…"
                        f"{own.stop[m, b] - 1}, outside 0…{own.wordlines - 1}")
    if int(bad.sum()) > EXAMPLES:
        yield Violation("layout", "macros", f"{int(bad.sum()) - EXAMPLES} more bitlines outside the array")


def _check_coverage(build: BuildDir, own: Owners) -> Iterator[Violation]:
    """Each layer's keys ``(s·Cout + o)·D + j`` exactly once; cells = rows·Cout·D; macro lists."""
    for i, layer in enumerate(build.layout.layers):
        where = f"layer {i} ({layer.node})"
        m, b = np.nonzero(own.used & (own.layer == i))
        seg, out, digit = own.segment[m, b], own.out_channel[m, b], own.slices[m, b]
        cout, segments, d = layer.cout, len(layer.segments), layer.w_slices
        if ((out < 0) | (out >= cout)).any():
            yield Violation("layout", where, f"a bitline names output channel {int(out[(out < 0) | (out >= cout)][0])}"
                            f" of a layer with {cout}")
        if ((digit < 0) | (digit >= d)).any():
            yield Violation("layout", where, f"a bitline names weight slice {int(digit[(digit < 0) | (digit >= d)][0])}"
                            f", the layer has w_slices = {d}")
        keys = (seg * cout + out) * d + digit
        unique, counts = np.unique(keys, return_counts=True)
        missing = segments * cout * d - int(((unique >= 0) & (unique < segments * cout * d)).sum())
        twice = int((counts > 1).sum())
        if missing or twice:
            yield Violation("layout", where, f"{missing} column(s) (segment, output channel, slice) not placed, "
                            f"{twice} placed more than once" + _first_twice(unique, counts, cout, d))
        cells = int((own.stop - own.start)[m, b].sum())
        if cells != layer.rows * cout * d:
            yield Violation("layout", where, f"{cells} cells hold its weights, it has rows·Cout·w_slices = "
                            f"{layer.rows * cout * d}")
        macros = np.unique(m).tolist()
        if layer.macros != macros:
            yield Violation("layout", where, f"lists macros {_short(layer.macros)}, its bitlines are on "
                            f"{_short(macros)}")


def _first_twice(unique: np.ndarray, counts: np.ndarray, cout: int, digits: int) -> str:
    if not (counts > 1).any():
        return ""
    group, j = divmod(int(unique[counts > 1][0]), digits)
    s, o = divmod(group, cout)
    return f" (e.g. segment {s}, output channel {o}" + (f", slice {j})" if digits > 1 else ")")


def _check_adjacent_digits(build: BuildDir, own: Owners) -> Iterator[Violation]:
    """Digit ``j > 0`` of a (layer, segment, channel) sits right after digit ``j − 1``."""
    digit = own.slices
    upper = own.used & (digit > 0)
    prev = np.zeros_like(upper)
    prev[:, 1:] = ((own.layer[:, :-1] == own.layer[:, 1:]) & (own.segment[:, :-1] == own.segment[:, 1:])
                   & (own.out_channel[:, :-1] == own.out_channel[:, 1:]) & (digit[:, :-1] == digit[:, 1:] - 1)
                   & (own.start[:, :-1] == own.start[:, 1:]))
    bad = upper & ~prev
    for m, b in list(zip(*np.nonzero(bad), strict=True))[:EXAMPLES]:
        layer = build.layout.layers[int(own.layer[m, b])]
        yield Violation("layout", f"macro {m}", f"bitline {b} holds slice {int(digit[m, b])} of layer "
                        f"{layer.node} segment {int(own.segment[m, b])} output channel "
                        f"{int(own.out_channel[m, b])}, but bitline {b - 1} does not hold its slice "
                        f"{int(digit[m, b]) - 1}: the digit columns of a channel must be adjacent")
    if int(bad.sum()) > EXAMPLES:
        yield Violation("layout", "macros", f"{int(bad.sum()) - EXAMPLES} more digit columns not adjacent")


def _short(values: list[int]) -> str:
    return str(values) if len(values) <= 6 else f"[{values[0]}…{values[-1]}] ({len(values)})"


def expected_columns(layers: list[Layer], policy: str, bitlines: int
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(macro, bitline)`` of every column of each layer under ``policy``, in layer-column
    order (the place-bitlines pass's layout, module docstring)."""
    out, column = [], 0
    for layer in layers:
        if policy == "aligned":
            column = -(-column // bitlines) * bitlines
        macro, bitline = slice_columns(column, len(layer.segments) * layer.cout, layer.w_slices, bitlines)
        out.append((macro, bitline))
        column = int(macro[-1]) * bitlines + int(bitline[-1]) + 1 if macro.size else column
    return out


def check_placement_policy(build: BuildDir, result: Validation) -> Iterator[Violation]:
    policy = build.manifest.get("options", {}).get("placement")
    if policy not in POLICIES:
        result.notes.append(f"placement policy {policy!r} unknown to this validator: columns not re-placed")
        return
    own, bl = build.owners, build.macro.bitlines
    layers = build.layout.layers
    expected = expected_columns(layers, policy, bl)
    for i, (layer, (em, eb)) in enumerate(zip(layers, expected, strict=True)):
        where = f"layer {i} ({layer.node})"
        first = int(em[0] * bl + eb[0])
        if layer.first_column != first:
            yield Violation("placement", where, f"first column {layer.first_column}, {policy} placement "
                            f"gives {first}")
        m, b = np.nonzero(own.used & (own.layer == i))
        k = (own.segment[m, b] * layer.cout + own.out_channel[m, b]) * layer.w_slices + own.slices[m, b]
        k = np.clip(k, 0, em.size - 1)  # out-of-range keys are the coverage check's to report
        wrong = (m != em[k]) | (b != eb[k]) | (own.start[m, b] != 0)
        if wrong.any():
            j = np.flatnonzero(wrong)[:EXAMPLES]
            shown = "; ".join(f"column {k[x]} on macro {m[x]} bitline {b[x]} wordline {own.start[m[x], b[x]]}, "
                              f"expected macro {em[k[x]]} bitline {eb[k[x]]} wordline 0"
                              for x in j)
            yield Violation("placement", where, f"{int(wrong.sum())} column(s) not where {policy} placement puts "
                            f"them: {shown}")
