"""A CIM layer as the emulator runs it, rebuilt from the build files only.

The bitline columns of layer ``ℓ`` are read back from the macro arrays: the bitline owning
``(segment s, output channel o, weight slice j)`` holds the digits ``d_j[o, b_s + t]`` on
wordlines ``w0 + t``, ``t < rows of s`` (``layout.json``; an unsliced layer has ``j = 0`` and
the codes themselves). They give ``columns[s, o·S + j, t]`` and with it the grouped
convolution of ``cimc.quant.segments`` (gather ``index`` + ``weight``, ``Seg·G``
groups): digit column ``o·S + j`` stays in channel ``o``'s group. The emulator runs it as one
batched matrix product (``segment_taps``, ``MacroLayer.weight``): per (segment, conv group),
the segment's rows of the layer's im2col matrix times its columns. Steps, bits, slice widths
and counts, scale and bias come from ``quant.json``; strides, pads and dilations from the
layer's ``geometry`` in ``layout.json`` (``check.emulator`` checks that ``graph.json``'s
node says the same).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cimc.build.emulator_files import BuildFiles
from cimc.check.emulator import owner_arrays, segment_rows
from cimc.documents.layout import Geometry, Layer


@dataclass(frozen=True, eq=False)
class SegmentPart:
    """Segments ``segments`` (indices, ascending) of one layer padded to ``R`` wordlines:
    their columns ``weight`` ``(S_k, G, Cout_g·S_w, R)``, the tap ``(c, i, j)`` of each
    wordline, each ``(S_k, G, R)`` (``segment_taps``), and ``channels`` ``(c0, c1)`` when the
    wordlines, in that order, are every tap of channels ``c0 … c1 − 1`` in im2col order
    (``channel_run``: the part's rows are then a slice of the input, no gather)."""

    segments: np.ndarray
    weight: np.ndarray
    taps: tuple[np.ndarray, np.ndarray, np.ndarray]
    channels: tuple[int, int] | None


@dataclass(frozen=True, eq=False)
class MacroLayer:
    """Everything needed to run one CIM layer (module doc)."""

    index: int
    node: str
    kind: str
    cout: int
    segments: int
    groups: int
    kernel: tuple[int, int]
    parts: tuple[SegmentPart, ...]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    dilations: tuple[int, int]
    a_step: float
    a_bits: int
    a_signed: bool
    adc_step: np.ndarray
    adc_bits: int
    scale: np.ndarray
    bias: np.ndarray
    w_bits: int
    cell_bits: int | None
    dac_bits: int | None
    w_slices: int
    a_slices: int
    adc_shift: np.ndarray | None

    @property
    def sliced(self) -> bool:
        return self.w_slices > 1 or self.a_slices > 1

    @property
    def conversions(self) -> int:
        """ADC conversions per output pixel and channel: ``segments · a_slices · w_slices``."""
        return self.segments * self.a_slices * self.w_slices


def macro_columns(macros: np.ndarray, owner: np.ndarray, index: int, layer: Layer, w_slices: int) -> np.ndarray:
    """``(Seg, Cout·S, Rmax)`` digits of layer ``index`` read from the macro arrays (module doc)."""
    rows = segment_rows(layer)
    rmax = int(rows.max())
    m, b = np.nonzero(owner[0] == index)
    seg, ch, w0, sl = owner[1][m, b], owner[2][m, b], owner[3][m, b], owner[4][m, b]
    offset = np.arange(rmax)[None, :]
    wordline = np.minimum(w0[:, None] + offset, macros.shape[1] - 1)
    cells = macros[m[:, None], wordline, b[:, None]].astype(np.float32)
    columns = np.zeros((rows.shape[0], layer.cout * w_slices, rmax), dtype=np.float32)
    columns[seg, ch * w_slices + sl] = np.where(offset < rows[seg][:, None], cells, 0)
    return columns


def segment_taps(starts: np.ndarray, stops: np.ndarray, cin_g: int, groups: int, kernel: tuple[int, int],
                 rmax: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The input channel, kernel row and kernel column ``(c, i, j)``, each ``(S, G, Rmax)``, of
    the wordline ``t`` of the segment of rows ``starts[s] … stops[s] − 1`` in conv group ``g``:
    row ``r = b_s + t`` of the group's ``Cin_g·kh·kw`` rows (``r = (c − g·Cin_g)·kh·kw + i·kw +
    j``). Wordlines past a segment's last row repeat that row; their cells are zero
    (``macro_columns``)."""
    kh, kw = kernel
    row = np.minimum(starts[:, None] + np.arange(rmax)[None, :], stops[:, None] - 1)  # (S, Rmax)
    channel = np.arange(groups)[None, :, None] * cin_g + (row // (kh * kw))[:, None, :]
    tap = np.broadcast_to((row % (kh * kw))[:, None, :], channel.shape)
    return channel, tap // kw, tap % kw


def channel_run(taps: tuple[np.ndarray, np.ndarray, np.ndarray], kernel: tuple[int, int]) -> tuple[int, int] | None:
    """``(c0, c1)`` when the taps ``(c, i, j)``, flattened in their order, are the im2col rows
    ``r = (c·kh + i)·kw + j`` of channels ``c0 … c1 − 1``, whole and in order; else ``None``."""
    (c, i, j), (kh, kw) = taps, kernel
    flat = ((c * kh + i) * kw + j).reshape(-1)
    first, area = int(flat[0]), kh * kw
    if first % area or flat.size % area or not np.array_equal(flat, first + np.arange(flat.size)):
        return None
    return first // area, (first + flat.size) // area


def whole_channels(part: SegmentPart, kernel: tuple[int, int]) -> int | None:
    """``C_s``, the channels each ``(segment, group)`` of the part holds, when the part is a
    channel run (``SegmentPart.channels``) whose every segment holds whole channels (``R_k``
    a multiple of ``kh·kw``); ``None`` otherwise (its wordlines are gathered tap by tap)."""
    area = kernel[0] * kernel[1]
    rows = part.weight.shape[-1]
    return None if part.channels is None or rows % area else rows // area


#: The fewest channels per segment whose im2col rows are copied pixel-major (``pixel_rows``):
#: a thinner run (a depthwise layer's one channel) costs a byte-by-byte scatter there, and its
#: rows are laid out channel-major instead (runs of ``Wo·N`` pixels) and transposed by the
#: product model (MobileNetV2, batch 8, unsplit: the im2col took 0.19 s a run pixel-major,
#: 0.24 s as a compiled loop, 0.027 s channel-major, before the product model's transposition).
MIN_PIXEL_RUN = 8


def pixel_rows(part: SegmentPart, kernel: tuple[int, int]) -> bool:
    """Whether the emulator feeds the part's rows pixel-major, ``(S, G, M, R)``: whole channels
    (``whole_channels``), at least ``MIN_PIXEL_RUN`` per segment; else channel-major ``(S, G,
    R, M)``, transposed inside the product model."""
    channels = whole_channels(part, kernel)
    return channels is not None and channels >= MIN_PIXEL_RUN


def feed_order(part: SegmentPart, kernel: tuple[int, int]) -> np.ndarray:
    """The order the emulator feeds a part's wordlines in: position ``r'`` gets wordline
    ``feed_order[r']``. For pixel-major rows (``pixel_rows``) ``r' = (i·kw + j)·C_s + c``
    for the wordline ``r = (c·kh + i)·kw + j`` (channel innermost: the im2col of pixel-major
    codes copies runs of ``C_s`` channels); else the wordlines' own order. A bitline sum is
    the same integer in any order of its terms."""
    rows = part.weight.shape[-1]
    if not pixel_rows(part, kernel):
        return np.arange(rows)
    return np.arange(rows).reshape(-1, *kernel).transpose(1, 2, 0).reshape(-1)


def segment_parts(columns: np.ndarray, rows: np.ndarray, bounds: np.ndarray, cin_g: int, groups: int,
                  kernel: tuple[int, int]) -> tuple[SegmentPart, ...]:
    """The segments of ``rows == max(rows)`` and, if any, the others, each part padded to its
    own longest segment: ``columns`` ``(Seg, Cout·S, Rmax)`` (zero past a segment's rows) cut
    to ``(S_k, G, Cout_g·S_w, R_k)``."""
    width = columns.shape[1]
    full = rows == rows.max()
    parts = []
    for chosen in (np.flatnonzero(full), np.flatnonzero(~full)):
        if chosen.size:
            r = int(rows[chosen].max())
            weight = np.ascontiguousarray(columns[chosen, :, :r]).reshape(chosen.size, groups, width // groups, r)
            taps = segment_taps(bounds[chosen], bounds[chosen + 1], cin_g, groups, kernel, r)
            parts.append(SegmentPart(chosen, weight, taps, channel_run(taps, kernel)))
    return tuple(parts)


def _geometry(geo: Geometry) -> tuple[tuple[int, int], tuple[int, int, int, int], tuple[int, int]]:
    """Strides, pads and dilations of the layer's conv, from ``layout.json`` (a fully connected
    layer's are 1, 0 and 1: ``backend.geometry``)."""
    (sh, sw), (t, left, b, r), (dh, dw) = geo.strides, geo.pads, geo.dilations
    return (sh, sw), (t, left, b, r), (dh, dw)


def macro_layers(files: BuildFiles) -> list[MacroLayer]:
    """Every CIM layer of the build, in layout order."""
    owner = owner_arrays(files.layout)
    out = []
    for i, (layer, q) in enumerate(zip(files.layout.layers, files.quant.layers, strict=True)):
        kh, kw = layer.kernel
        bounds = np.array([s.row_start for s in layer.segments] + [layer.rows], dtype=np.int64)
        columns = macro_columns(files.macros, owner, i, layer, q.w_slices)
        parts = segment_parts(columns, segment_rows(layer), bounds, layer.rows // (kh * kw), layer.groups, (kh, kw))
        strides, pads, dilations = _geometry(layer.geometry)
        out.append(MacroLayer(i, layer.node, layer.kind, layer.cout, columns.shape[0], layer.groups, (kh, kw), parts,
                              strides, pads, dilations, float(np.float32(q.a_step)), q.a_bits, q.a_signed,
                              np.asarray(q.adc_step, np.float32), q.adc_bits,
                              np.asarray(q.scale, np.float32), np.asarray(q.bias, np.float32),
                              q.w_bits, q.cell_bits, q.dac_bits, q.w_slices, q.a_slices,
                              None if q.adc_shift is None else np.asarray(q.adc_shift, np.int64)))
    return out
