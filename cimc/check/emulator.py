"""Consistency checks of a build before the emulator runs it; each failure is a ``BuildError``
naming the layer, macro, wordline or bitline at fault.

* layers: ``quant.json`` and ``layout.json`` describe the same layers in the same order;
  segments tile each layer's rows without gaps and fit the wordlines;
* columns: every column ``(segment s, output channel o, weight slice j)`` of every layer is on
  exactly one bitline, and its span ``[w0, w0 + rows of s)`` lies inside the macro;
* cells: codes inside a column's span are within the range of its digit
  (``cimc.quant.slicing.digit_range``: unsliced, the narrow signed ``|q| ≤ 2^(w_bits−1) − 1``; sliced,
  ``[0, 2^c − 1]`` below the top digit, which is signed); every other cell is 0;
* quantization: steps of length 1 or Cout, one bias per output channel, the scale the
  build applies equal to ``2^−k`` (shifted) or ``S_W·S_ADC·S_A`` (``cimc.quant.numerics``), and
  ``w_slices``/``a_slices`` equal to ``ceil(bits / width)`` in quant.json and layout.json,
  and one ADC step exponent ``adc_shift`` per kind of conversion ``(t, j)``;
* graph: ops known, every tensor defined before use, every CIM layer run by exactly one
  node of the layer's name whose conv attributes are the layout's ``geometry``, constants
  present.
"""

from __future__ import annotations

import numpy as np

from cimc.backend.geometry import attr_or_default, conv_attrs
from cimc.build.emulator_files import BuildFiles
from cimc.documents.graph import GraphDoc, NodeDoc
from cimc.documents.layout import Layer, Layout
from cimc.documents.macro import MacroDoc
from cimc.documents.quant import QuantLayer
from cimc.errors import BuildError
from cimc.ops import find
from cimc.quant import numerics, slicing


def check_build(files: BuildFiles) -> None:
    """Run every check (module doc) or raise the first ``BuildError``."""
    layers, quant = files.layout.layers, files.quant.layers
    _check_layers(files.layout, quant)
    owner = owner_arrays(files.layout)
    heights = [segment_rows(layer) for layer in layers]
    for i, entry in enumerate(quant):
        _check_quant(i, entry, layers[i], files.layout.macro)
    for i, layer in enumerate(layers):
        _check_columns(i, layer, owner, heights[i], files.layout.macro.wordlines, quant[i].w_slices)
    _check_cells(files.macros, owner, heights, quant)
    _check_graph(files.graph, layers, files.constants)


def owner_arrays(layout: Layout) -> np.ndarray:
    """``(5, M, BL)``: layer, segment, output channel, first wordline and weight slice of every
    bitline."""
    bl = layout.macro.bitlines
    if not layout.macros:
        return np.zeros((5, 0, bl), dtype=np.int64)
    keys = ("layer", "segment", "out_channel", "wordline_start", "slice")
    for m in layout.macros:
        if any(len(getattr(m, k)) != bl for k in keys):
            raise BuildError(f"layout.json: macro {m.index} does not list all {bl} bitlines")
    return np.array([[getattr(m, k) for m in layout.macros] for k in keys], dtype=np.int64)


def segment_rows(layer: Layer) -> np.ndarray:
    """Rows (wordlines) of each segment of ``layer``."""
    return np.array([s.row_stop - s.row_start for s in layer.segments], dtype=np.int64)


def _check_layers(layout: Layout, quant: list[QuantLayer]) -> None:
    layers, wl = layout.layers, layout.macro.wordlines
    if len(quant) != len(layers):
        raise BuildError(f"quant.json has {len(quant)} layers, layout.json {len(layers)}")
    for i, (layer, q) in enumerate(zip(layers, quant, strict=True)):
        if layer.index != i or q.index != i or layer.node != q.node:
            raise BuildError(f"layer {i}: layout.json ('{layer.node}') and quant.json ('{q.node}') disagree")
        bounds = [s.row_start for s in layer.segments] + [layer.segments[-1].row_stop]
        stops = [s.row_stop for s in layer.segments]
        if bounds[0] != 0 or bounds[1:] != stops or bounds[-1] != layer.rows or np.any(np.diff(bounds) <= 0):
            raise BuildError(f"layer {i} ('{layer.node}'): segments do not tile rows 0…{layer.rows}")
        if max(np.diff(bounds)) > wl:
            raise BuildError(f"layer {i} ('{layer.node}'): a segment has more rows than the {wl} wordlines")


def _check_columns(i: int, layer: Layer, owner: np.ndarray, rows: np.ndarray, wl: int, w_slices: int) -> None:
    """Every ``(s, o, j)`` on exactly one bitline, its span inside the macro."""
    sel = owner[0] == i
    seg, ch, w0, sl = owner[1][sel], owner[2][sel], owner[3][sel], owner[4][sel]
    s_count, cout, name = rows.shape[0], layer.cout, f"layer {i} ('{layer.node}')"
    bad = (seg < 0) | (seg >= s_count) | (ch < 0) | (ch >= cout) | (sl < 0) | (sl >= w_slices)
    if bad.any():
        raise BuildError(f"{name}: a bitline claims segment {seg[bad][0]}, output channel {ch[bad][0]}, weight "
                         f"slice {sl[bad][0]}, which the layer does not have ({s_count} segments, {cout} channels, "
                         f"{w_slices} slice(s))")
    counts = np.bincount((seg * cout + ch) * w_slices + sl, minlength=s_count * cout * w_slices)
    for problem, where in (("is on no bitline", counts == 0), ("is on several bitlines", counts > 1)):
        if where.any():
            so, j = divmod(int(np.flatnonzero(where)[0]), w_slices)
            s, o = divmod(so, cout)
            what = f", weight slice {j}" if w_slices > 1 else ""
            raise BuildError(f"{name}: the column of segment {s}, output channel {o}{what} {problem} "
                             f"({int(where.sum())} column(s) affected)")
    if ((w0 < 0) | (w0 + rows[seg] > wl)).any():
        raise BuildError(f"{name}: a column's wordlines run outside the macro's {wl} wordlines")


def _check_cells(macros: np.ndarray, owner: np.ndarray, heights: list[np.ndarray], quant: list[QuantLayer]) -> None:
    """Codes within each column's span inside its digit's range; all other cells 0."""
    m, b = np.nonzero(owner[0] >= 0)
    layer, seg, w0, sl = owner[0][m, b], owner[1][m, b], owner[3][m, b], owner[4][m, b]
    offsets = np.cumsum([0] + [h.shape[0] for h in heights])[:-1]
    height = np.concatenate(heights)[offsets[layer] + seg] if heights else np.zeros(0, np.int64)
    wordline = np.arange(macros.shape[1])[None, :]
    inside = (wordline >= w0[:, None]) & (wordline < (w0 + height)[:, None])  # (columns, WL)
    ranges = digit_ranges(quant)  # (layers, max slices, 2)
    lo, hi = ranges[layer, sl, 0], ranges[layer, sl, 1]
    codes = macros.transpose(0, 2, 1)[m, b].astype(np.int32)  # (columns, WL)
    over = inside & ((codes > hi[:, None]) | (codes < lo[:, None]))
    if over.any():
        c, w = (int(v[0]) for v in np.nonzero(over))
        q = quant[layer[c]]
        what = f"{q.w_bits}-bit range ±{hi[c]}"
        if q.w_slices > 1:
            what = f"range [{lo[c]}, {hi[c]}] of digit {sl[c]} of {q.w_slices} ({q.cell_bits}-bit cells)"
        raise BuildError(f"macro {m[c]} wordline {w} bitline {b[c]} holds code {codes[c, w]}, outside the {what} "
                         f"of layer {layer[c]} ('{q.node}')")
    stray = int(np.count_nonzero(macros)) - int(np.count_nonzero(np.where(inside, codes, 0)))
    if stray:
        used = np.zeros(macros.shape, dtype=bool)
        used[np.broadcast_to(m[:, None], inside.shape)[inside], np.nonzero(inside)[1],
             np.broadcast_to(b[:, None], inside.shape)[inside]] = True
        mm, w, bb = (int(v[0]) for v in np.nonzero((macros != 0) & ~used))
        raise BuildError(f"macro {mm} wordline {w} bitline {bb} holds code {macros[mm, w, bb]} but belongs to no "
                         f"column ({stray} such cell(s))")


def digit_ranges(quant: list[QuantLayer]) -> np.ndarray:
    """``(layers, max w_slices, 2)`` inclusive ``[lo, hi]`` of every layer's weight digit ``j``
    (in the layer's digit scheme: ``w_digits``, two's complement when absent)."""
    width = max([q.w_slices for q in quant], default=1)
    out = np.zeros((len(quant), width, 2), dtype=np.int32)
    for i, q in enumerate(quant):
        for j in range(q.w_slices):
            out[i, j] = slicing.digit_range(q.w_bits, q.cell_bits, True, j, q.w_digits or "twos")
    return out


def _check_slices(name: str, q: QuantLayer, layer: Layer, macro: MacroDoc) -> None:
    """Slice widths are the macro's, ``w_slices``/``a_slices`` follow from the bits and widths,
    and the layout agrees."""
    for key, bits, width in (("w_slices", "w_bits", "cell_bits"), ("a_slices", "a_bits", "dac_bits")):
        given, macro_width = getattr(q, width), getattr(macro, width)
        if given is not None and given != macro_width:
            raise BuildError(f"{name}: {width} is {given}, the macro's is {macro_width}")
        expected = slicing.slice_count(getattr(q, bits), given)
        if getattr(q, key) != expected:
            raise BuildError(f"{name}: {key} is {getattr(q, key)}, but {getattr(q, bits)} bits in {given}-bit "
                             f"slices need {expected}")
        if getattr(layer, key) != getattr(q, key):
            raise BuildError(f"{name}: {key} is {getattr(q, key)}, layout.json says {getattr(layer, key)}")
    kinds = q.w_slices * q.a_slices
    if q.adc_shift is not None and len(q.adc_shift) != kinds:
        raise BuildError(f"{name}: adc_shift has {len(q.adc_shift)} values, expected one per kind of "
                         f"conversion ({q.a_slices} input cycles × {q.w_slices} weight columns = {kinds})")


def _check_quant(i: int, q: QuantLayer, layer: Layer, macro: MacroDoc) -> None:
    name = f"quant.json layer {i} ('{q.node}')"
    cout = layer.cout
    _check_slices(name, q, layer, macro)
    for key in ("w_step", "adc_step", "scale"):
        if len(getattr(q, key)) not in (1, cout):
            raise BuildError(f"{name}: {key} has {len(getattr(q, key))} values, expected 1 or {cout}")
    if len(q.bias) != cout:
        raise BuildError(f"{name}: bias has {len(q.bias)} values, expected {cout}")
    if q.shift is not None:
        if len(q.shift.k) not in (1, cout):
            raise BuildError(f"{name}: shift k has {len(q.shift.k)} values, expected 1 or {cout}")
        expected = numerics.shift_scale(np.asarray(q.shift.k))
        what = "2^-k"
    else:
        expected = numerics.output_scale(np.asarray(q.w_step), np.asarray(q.adc_step), q.a_step)
        what = "S_W*S_ADC*S_A"
    if not np.array_equal(np.asarray(q.scale, dtype=np.float32), np.broadcast_to(expected, (len(q.scale),))):
        raise BuildError(f"{name}: the output scale is not {what}")


def _check_graph(graph: GraphDoc, layers: list[Layer], constants: dict[str, np.ndarray]) -> None:
    defined = {t.name for t in graph.inputs}
    missing = sorted(set(graph.constants.values()) - set(constants))
    if missing:
        raise BuildError(f"digital.safetensors lacks {', '.join(missing[:5])} named in graph.json")
    defined |= set(graph.constants)
    seen: list[int] = []
    for node in graph.nodes:
        if find(node.op) is None:
            raise BuildError(f"graph.json: node '{node.name}' has op {node.op}, which the emulator cannot run")
        undefined = [t for t in node.inputs if t and t not in defined]
        if undefined:
            raise BuildError(f"graph.json: node '{node.name}' reads {undefined[0]} before it is computed")
        if node.cim_layer is not None:
            _check_cim_node(node, node.cim_layer, layers)
            seen.append(node.cim_layer)
        defined |= set(node.outputs)
    if sorted(seen) != list(range(len(layers))):
        raise BuildError(f"graph.json runs CIM layers {sorted(seen)}; the layout has {len(layers)}")
    absent = [t.name for t in graph.outputs if t.name not in defined]
    if absent:
        raise BuildError(f"graph.json: output {absent[0]} is never computed")


def _check_cim_node(node: NodeDoc, index: int, layers: list[Layer]) -> None:
    """The node is the layer the layout describes, with the layout's conv geometry (the
    emulator runs the layout's strides, pads and dilations)."""
    if index >= len(layers) or layers[index].node != node.name or layers[index].op != node.op:
        raise BuildError(f"graph.json: node '{node.name}' claims CIM layer {index}, which the layout "
                         "describes differently")
    if node.op != "Conv":
        return
    layer = layers[index]
    for key, value in conv_attrs(layer.geometry, layer.kernel).items():
        given = attr_or_default(node.attrs, key, layer.kernel)
        if given != value:
            raise BuildError(f"graph.json: node '{node.name}' has {key} {given}, the layout {value}")
