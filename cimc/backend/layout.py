"""Weight layout: what every macro cell holds, as ``layout.json`` plus one 2-D array per macro.

``macro_arrays`` scatters each CIM layer's unrolled weights into ``(macros, WL, BL)``:
column ``k = s·Cout + o`` of a layer, placed on (macro ``m``, bitline ``b``, first
wordline ``w0``), holds ``W[o, rows bounds[s] … bounds[s+1]) of o's group]`` on wordlines
``w0 …``; idle cells are 0. It is one vectorised gather/scatter per layer. A bit-sliced
layer (``S`` weight digits, ``cimc.quant.slicing``) passes a digit matrix of ``Cout·S`` rows
(row ``o·S + j`` = digit ``j`` of channel ``o``, ``cim_layer.digit_matrix``): its column
``k = (s·Cout + o)·S + j`` holds digit ``j`` — the same gather with ``Cout·S`` "channels".

``layout.json`` records per macro, per bitline: owning layer index, segment, output channel,
first wordline and weight digit ``slice`` (-1 where idle; 0 in an unsliced layer), and per
layer ``w_slices``/``a_slices``, its conv geometry (``cimc.backend.geometry``) and each
segment's row range together with the input channel and kernel position every wordline of
that segment holds (``cimc.documents.layout``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np

from cimc.backend.geometry import geometry
from cimc.documents.layout import ROW_ORDER, Layer, LayerKind, LayerOp, Layout, MacroOwners, Segment, Tiling
from cimc.documents.macro import MacroDoc
from cimc.ir.annotations import BitlinePlacement, CimLayer, ModulePath, QuantParams, WeightPool, WordlineTiling
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.macro import MacroSpec


def layer_matrix(graph: Graph, node: Node) -> np.ndarray:
    """The layer's weights as ``(Cout, rows)``: row ``r = c·kh·kw + i·kw + j`` of o's group."""
    w = graph.initializers[node.inputs[1]]
    if node.op == "Conv":
        return w.reshape(w.shape[0], -1)
    return w if node.op == "Gemm" and node.attrs["transB"] else w.T


def padded_columns(matrix: np.ndarray, bounds: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns as ``(Cout, S, height)``: entry ``[o, s, j]`` is ``matrix[o, bounds[s] + j]``,
    0 past the segment's end; and the ``(S, height)`` mask of the cells each segment fills.
    One gather from the matrix with a zero column appended (where the padding points)."""
    rows = np.diff(bounds)
    offsets = np.arange(height)
    mask = offsets[None, :] < rows[:, None]
    index = np.where(mask, bounds[:-1, None] + offsets[None, :], matrix.shape[1])
    padded = np.concatenate([matrix, np.zeros((matrix.shape[0], 1), matrix.dtype)], axis=1)
    return np.take(padded, index, axis=1), mask


def macro_arrays(graph: Graph, nodes: list[Node], macro: MacroSpec, macros: int,
                 dtype: type = np.float32,
                 matrix: Callable[[Graph, Node], np.ndarray] = layer_matrix) -> np.ndarray:
    """All macros' cell contents, shape ``(macros, WL, BL)`` (a transposed view).

    The cells are filled bitline by bitline, ``lines[m·BL + b]`` being bitline ``b`` of macro
    ``m``: a column starting on wordline 0 is copied as a whole line (its tail is 0), and
    columns starting higher up are written afterwards, cell by cell, so they are never
    overwritten by the zero tail of a column below them on the same bitline."""
    wl, bl = macro.wordlines, macro.bitlines
    lines: np.ndarray = np.zeros((macros * bl, wl), dtype=dtype)
    shifted = []
    for node in nodes:
        p = node.ann[BitlinePlacement]
        cols, mask = padded_columns(matrix(graph, node), np.asarray(node.ann[WordlineTiling].bounds), wl)
        line = (p.macro * bl + p.bitline).reshape(-1, cols.shape[0]).T  # (Cout, S), like cols
        start = p.wordline.reshape(-1, cols.shape[0]).T
        whole = start == 0
        if whole.all():
            lines[line.reshape(-1)] = cols.reshape(-1, wl)
            continue
        lines[line[whole]] = cols[whole]
        cells = np.broadcast_to(mask[None], cols.shape)[~whole]
        shifted.append((line[~whole], start[~whole], cols[~whole], cells))
    for line, start, values, cells in shifted:
        _write_shifted(lines, line, start, values, cells)
    return lines.reshape(macros, bl, wl).transpose(0, 2, 1)


def _write_shifted(lines: np.ndarray, line: np.ndarray, start: np.ndarray, values: np.ndarray,
                   cells: np.ndarray) -> None:
    """``lines[line[i], start[i] + j] = values[i, j]`` where ``cells[i, j]`` and in the array."""
    height = lines.shape[1]
    wordline = start[:, None] + np.arange(height)[None, :]
    sel = cells & (wordline < height)
    flat = np.broadcast_to(line[:, None], sel.shape)[sel] * height + wordline[sel]
    lines.reshape(-1)[flat] = values[sel]


def layout_document(graph: Graph, nodes: list[Node], macro: MacroSpec, macros: int) -> Layout:
    """The layout: layers (with segment/wordline maps and geometry) and per-macro bitline owners."""
    owner = np.full((macros, 5, macro.bitlines), -1, dtype=np.int64)
    layers = []
    for index, node in enumerate(nodes):
        layer, tiling, p = node.ann[CimLayer], node.ann[WordlineTiling], node.ann[BitlinePlacement]
        w_slices, _ = slices(node)
        group, digit = np.divmod(np.arange(p.num_columns), w_slices)
        segment, channel = np.divmod(group, layer.cout)
        owner[p.macro, :, p.bitline] = np.stack([np.full_like(group, index), segment, channel, p.wordline, digit], 1)
        layers.append(_layer_entry(index, graph, node, layer, tiling, p))
    return Layout(
        macro=MacroDoc(**macro.to_dict()), row_order=ROW_ORDER, layers=layers,
        macros=[MacroOwners(index=m, layer=owner[m, 0].tolist(), segment=owner[m, 1].tolist(),
                            out_channel=owner[m, 2].tolist(), wordline_start=owner[m, 3].tolist(),
                            slice=owner[m, 4].tolist())
                for m in range(macros)],
    )


def slices(node: Node) -> tuple[int, int]:
    """``(w_slices, a_slices)`` of a layer; ``(1, 1)`` without ``QuantParams``."""
    q = node.ann.get_ann(QuantParams)
    return (1, 1) if q is None else (q.w_slices, q.a_slices)


def _layer_entry(index: int, graph: Graph, node: Node, layer: CimLayer, tiling: WordlineTiling,
                 p: BitlinePlacement) -> Layer:
    k = layer.kernel[0] * layer.kernel[1]
    segments = []
    for s, (lo, hi) in enumerate(zip(tiling.bounds[:-1], tiling.bounds[1:], strict=True)):
        rows = np.arange(lo, hi)
        pos = rows % k
        segments.append(Segment(index=s, row_start=lo, row_stop=hi, wordline_channel=(rows // k).tolist(),
                                wordline_kernel_pos=np.stack([pos // layer.kernel[1], pos % layer.kernel[1]],
                                                             1).tolist()))
    w_slices, a_slices = slices(node)
    return Layer(index=index, node=node.name, op=cast(LayerOp, node.op), kind=cast(LayerKind, layer.kind),
                 groups=layer.groups, rows=layer.rows, cout=layer.cout, kernel=list(layer.kernel),
                 out_pixels=layer.out_pixels, tiling=cast(Tiling, tiling.mode),
                 first_column=p.first_column, columns=p.num_columns, w_slices=w_slices, a_slices=a_slices,
                 macros=list(p.macros_used()), geometry=geometry(graph, node), segments=segments,
                 **_module_fields(node), **_pool_fields(node))


def _module_fields(node: Node) -> dict[str, Any]:
    """``module``: the torch module path of a layer imported with one; nothing otherwise."""
    module = node.ann.get_ann(ModulePath)
    return {} if module is None else {"module": module.path}


def _pool_fields(node: Node) -> dict[str, Any]:
    """``pool_vector_length`` of a pooled layer (docs/weight-pool.md); nothing otherwise."""
    pool = node.ann.get_ann(WeightPool)
    return {} if pool is None else {"pool_vector_length": pool.vector_length}
