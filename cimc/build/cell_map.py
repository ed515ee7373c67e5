"""Who owns every cell of every macro, computed from ``layout.json`` with numpy only.

``layout.json`` gives, per macro ``m`` and bitline ``b``, the owning layer ``ℓ``, segment
``s``, output channel ``o`` and first wordline ``w0`` (``ℓ = -1``: idle bitline). With
``n(ℓ, s) = row_stop − row_start`` of that segment, bitline ``b`` holds rows
``row_start(ℓ, s) + (w − w0)`` of column ``k = s·Cout + o`` on wordlines
``w0 ≤ w < w0 + n``, so cell ``(m, w, b)`` is owned by ``ℓ`` iff ``w0[m,b] ≤ w < w1[m,b]``
with ``w1 = w0 + n``. Every grid here is that one broadcast comparison over
``(macros, WL, BL)`` — no Python loop over cells, bitlines or columns.

A cell's input channel and kernel position follow from the row order
``r = c·kh·kw + i·kw + j`` (within the output channel's group). In a bit-sliced layer
(``w_slices = S > 1``) the bitline's ``slice`` ``j`` says which weight digit its cells
hold (``w_q = Σ_j 2^(j·cell_bits)·d_j``, ``cimc.quant.slicing``; ``j = 0`` when unsliced).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cimc.documents.layout import Layout
from cimc.errors import BuildError

#: The per-bitline owner lists of a ``layout.json`` macro entry.
FIELDS = ("layer", "segment", "out_channel", "wordline_start", "slice")
Selection = slice | np.ndarray | None


@dataclass(frozen=True)
class Owners:
    """Per macro and bitline ``(M, BL)`` int64 arrays; ``stop`` = first wordline past the span."""

    layer: np.ndarray
    segment: np.ndarray
    out_channel: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    wordlines: int
    digit: np.ndarray | None = None  # weight digit (layout "slice") per bitline; None: all 0

    @property
    def slices(self) -> np.ndarray:
        """``(M, BL)`` weight digit index of every bitline (−1 idle, 0 when unsliced)."""
        return np.where(self.used, 0 if self.digit is None else self.digit, -1)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.layer.shape[0]), int(self.layer.shape[1]))

    @property
    def used(self) -> np.ndarray:
        """``(M, BL)`` bool: bitlines holding a column."""
        return self.layer >= 0

    def cells_used(self) -> np.ndarray:
        """Occupied cells per macro, ``(M,)``."""
        return (self.stop - self.start).sum(axis=1)

    def usage(self) -> np.ndarray:
        """Fraction of each macro's cells that hold a weight, ``(M,)``."""
        return self.cells_used() / float(self.wordlines * self.shape[1])

    def cells_by_layer(self, layers: int) -> np.ndarray:
        """Occupied cells per macro and layer, ``(M, layers)``."""
        out = np.zeros((self.shape[0], max(layers, 1)), dtype=np.int64)
        m, b = np.nonzero(self.used)
        np.add.at(out, (m, self.layer[m, b]), (self.stop - self.start)[m, b])
        return out

    def grid(self, values: np.ndarray, macros: Selection = None, step: int = 1) -> np.ndarray:
        """``(M', WL/step, BL/step)``: ``values[m, b]`` on the cells of each span, ``-1``
        elsewhere; ``step > 1`` samples every ``step``-th wordline and bitline. int16 when
        the values and wordline indices fit (a VGG16 is 15.7 M cells), else int32."""
        sel = slice(None) if macros is None else macros
        small = max(int(values.max(initial=0)), self.wordlines) < np.iinfo(np.int16).max
        dtype: type[np.signedinteger[Any]] = np.int16 if small else np.int32
        w: np.ndarray = np.arange(0, self.wordlines, step, dtype=dtype)[None, :, None]
        start, stop = self.start[sel][:, None, ::step].astype(dtype), self.stop[sel][:, None, ::step].astype(dtype)
        picked = values[sel][:, None, ::step].astype(dtype)
        out = np.broadcast_to(picked, (picked.shape[0], w.shape[1], picked.shape[2])).copy()
        out[(w < start) | (w >= stop)] = -1
        return out

    def layer_grid(self, macros: Selection = None, step: int = 1) -> np.ndarray:
        return self.grid(self.layer, macros, step)

    def shade_grid(self, macros: Selection = None, step: int = 1) -> np.ndarray:
        """Colour codes ``2·layer + (segment mod 2)`` per cell (``-1`` idle): odd segments are
        drawn a shade lighter so segment boundaries stay visible inside a layer."""
        code = np.where(self.used, 2 * self.layer + (self.segment & 1), -1)
        return self.grid(code, macros, step)


def owners(layout: Layout) -> Owners:
    """The bitline owners of a layout; ``BuildError`` when indices point nowhere."""
    macros = layout.macros
    bitlines, wordlines = layout.macro.bitlines, layout.macro.wordlines
    arrays = {}
    for key in FIELDS:
        lists = [np.asarray(getattr(m, key), dtype=np.int64) for m in macros]
        if any(r.shape != (bitlines,) for r in lists):
            raise BuildError(f"layout.json: every macro's '{key}' must list {bitlines} bitlines")
        arrays[key] = np.stack(lists) if lists else np.zeros((0, bitlines), dtype=np.int64)
    layer, segment = arrays["layer"], arrays["segment"]
    table = segment_rows_table(layout)
    used = layer >= 0
    _check_indices(layer[used], segment[used], table)
    rows = np.zeros_like(layer)
    rows[used] = table[layer[used], segment[used]]
    start = np.where(used, arrays["wordline_start"], 0)
    return Owners(layer, segment, arrays["out_channel"], start, start + rows, wordlines, arrays["slice"])


def segment_rows_table(layout: Layout) -> np.ndarray:
    """``(layers, max segments)`` rows per segment, ``-1`` past a layer's last segment."""
    layers = layout.layers
    width = max((len(layer.segments) for layer in layers), default=0)
    table = np.full((len(layers), max(width, 1)), -1, dtype=np.int64)
    for i, layer in enumerate(layers):
        bounds = [(s.row_start, s.row_stop) for s in layer.segments]
        table[i, : len(bounds)] = [hi - lo for lo, hi in bounds]
    return table


def _check_indices(layer: np.ndarray, segment: np.ndarray, table: np.ndarray) -> None:
    bad_layer = layer >= table.shape[0]
    if bad_layer.any():
        raise BuildError(f"layout.json: a bitline names layer {int(layer[bad_layer][0])}, "
                         f"but only {table.shape[0]} layers exist")
    bad_seg = (segment < 0) | (segment >= table.shape[1])
    if not bad_seg.any():
        bad_seg = table[layer, segment] < 0
    if bad_seg.any():
        raise BuildError(f"layout.json: a bitline of layer {int(layer[bad_seg][0])} names segment "
                         f"{int(segment[bad_seg][0])}, which that layer does not have")


def describe_cell(layout: Layout, own: Owners, m: int, w: int, b: int) -> dict[str, Any]:
    """What cell ``(m, w, b)`` holds: layer, segment, output/input channel, kernel position."""
    if not (own.used[m, b] and own.start[m, b] <= w < own.stop[m, b]):
        return {"macro": m, "wordline": w, "bitline": b, "idle": True}
    index = int(own.layer[m, b])
    layer = layout.layers[index]
    seg = layer.segments[int(own.segment[m, b])]
    row = seg.row_start + w - int(own.start[m, b])
    kh, kw = layer.kernel
    o = int(own.out_channel[m, b])
    cin_group = layer.rows // (kh * kw)
    group = o // max(layer.cout // layer.groups, 1)
    c, pos = divmod(row, kh * kw)
    return {"macro": m, "wordline": w, "bitline": b, "idle": False, "layer": layer.node,
            "layer_index": index, "segment": int(own.segment[m, b]), "row": row, "out_channel": o,
            "in_channel": group * cin_group + c, "kernel_pos": [pos // kw, pos % kw],
            "slice": int(own.slices[m, b]), "w_slices": layer.w_slices}


RUN_FIELDS = ("macro", "bitline_start", "bitline_stop", "layer", "segment", "out_channel", "wordline_start",
              "wordline_stop", "slice")


def runs(own: Owners) -> dict[str, np.ndarray]:
    """Maximal runs of neighbouring bitlines of one macro holding consecutive columns
    (output channel, then weight digit) of one (layer, segment) on the same wordlines: one
    rectangle of cells each. Arrays of ``RUN_FIELDS`` (``bitline_stop`` exclusive), idle
    bitlines left out; ``out_channel`` and ``slice`` are those of the run's first bitline (with
    ``S`` digits, bitline ``b`` of the run holds column ``out_channel·S + slice + b − start``)."""
    m, bl = own.shape
    macro = np.repeat(np.arange(m), bl)
    cols = [a.reshape(-1) for a in (own.layer, own.segment, own.out_channel, own.slices, own.start, own.stop)]
    layer, segment, out, digit, start, stop = cols
    follows = (((out[1:] == out[:-1]) & (digit[1:] == digit[:-1] + 1))
               | ((out[1:] == out[:-1] + 1) & (digit[1:] == 0)))
    bitline = np.tile(np.arange(bl), m)
    same = np.zeros(macro.size, dtype=bool)
    same[1:] = ((macro[1:] == macro[:-1]) & (layer[1:] == layer[:-1]) & (segment[1:] == segment[:-1])
                & follows & (start[1:] == start[:-1]) & (stop[1:] == stop[:-1]))
    first = np.flatnonzero(~same)
    last = np.append(first[1:], macro.size) - 1
    keep = layer[first] >= 0
    first, last = first[keep], last[keep]
    return {"macro": macro[first], "bitline_start": bitline[first], "bitline_stop": bitline[last] + 1,
            "layer": layer[first], "segment": segment[first], "out_channel": out[first],
            "wordline_start": start[first], "wordline_stop": stop[first], "slice": digit[first]}
