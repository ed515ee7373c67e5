"""Geometry checks of ``cimc validate``: each layout layer's conv geometry (``geometry`` in
``layout.json``) agrees with the layer's shape, with itself and with ``graph.json``.

For a layer with kernel ``kh×kw``, ``groups`` and ``rows = C/groups·kh·kw``:

* ``group = groups``, ``in_shape[1] = rows/(kh·kw)·groups``, ``out_shape[1] = Cout``, the batch
  of input and output agree, and ``out_shape[2]·out_shape[3] = out_pixels``;
* the output size along each axis is ``(in + pad_begin + pad_end − d·(k − 1) − 1) // s + 1``;
* a ``Gemm``/``MatMul`` layer is a 1×1 conv (``backend.geometry``): strides and dilations 1,
  no padding, one group;
* in a quantized build the ``graph.json`` node of the layer (``cim_layer`` = its index) has
  the same ``strides``, ``pads``, ``dilations``, ``group`` and ``kernel_shape`` (ONNX's
  defaults where the node leaves one out).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from cimc.backend.geometry import attr_or_default, conv_attrs, out_size
from cimc.build.reader import BuildDir
from cimc.check.violations import Violation
from cimc.documents.layout import Geometry, Layer

FC_OPS = ("Gemm", "MatMul")


def check_geometry(build: BuildDir) -> Iterator[Violation]:
    """Every layer of ``build``'s layout (module doc)."""
    attrs = _graph_attrs(build)
    for i, layer in enumerate(build.layout.layers):
        where, geo = f"layer {i} ({layer.node})", layer.geometry
        yield from (Violation("layout", where, message) for message in _mismatches(layer, geo))
        if i in attrs:
            yield from (Violation("layout", where, message) for message in _graph_mismatches(layer, geo, attrs[i]))


def _mismatches(layer: Layer, geo: Geometry) -> Iterator[str]:
    """How ``geo`` contradicts the layer's other fields or itself."""
    (kh, kw), groups, (n, c, h, w), (n_out, k, oh, ow) = layer.kernel, layer.groups, geo.in_shape, geo.out_shape
    if geo.group != groups or c != layer.rows // (kh * kw) * groups or k != layer.cout or n != n_out:
        yield (f"geometry group {geo.group}, in_shape {geo.in_shape}, out_shape {geo.out_shape} disagree with "
               f"groups {groups}, rows {layer.rows}, kernel {[kh, kw]}, cout {layer.cout}")
    expected = [out_size(size, kernel, s, lo, hi, d) for size, kernel, s, lo, hi, d in
                zip((h, w), (kh, kw), geo.strides, geo.pads[:2], geo.pads[2:], geo.dilations, strict=True)]
    if [oh, ow] != expected:
        yield f"geometry output size {[oh, ow]}, its input, kernel, strides, pads and dilations give {expected}"
    if oh * ow != layer.out_pixels:
        yield f"geometry output {oh}×{ow} pixels, out_pixels is {layer.out_pixels}"
    if layer.op in FC_OPS and (geo.strides != [1, 1] or geo.dilations != [1, 1] or any(geo.pads) or geo.group != 1):
        yield "a fully connected layer's geometry must be a 1×1 conv: strides and dilations 1, no pads, one group"


def _graph_mismatches(layer: Layer, geo: Geometry, attrs: Mapping[str, object]) -> Iterator[str]:
    """How ``geo`` differs from the ``graph.json`` attributes of the layer's Conv node."""
    if layer.op != "Conv":
        return
    for key, value in conv_attrs(geo, layer.kernel).items():
        given = attr_or_default(attrs, key, layer.kernel)
        if given != value:
            yield f"{key} {value} in layout.json, {given!r} in graph.json"


def _graph_attrs(build: BuildDir) -> dict[int, Mapping[str, object]]:
    """``{cim_layer: attrs}`` of the ``graph.json`` nodes (empty without a readable graph)."""
    graph = build.optional_json("graph.json")
    nodes = graph.get("nodes") if isinstance(graph, dict) else None
    if not isinstance(nodes, list):
        return {}
    return {n["cim_layer"]: n.get("attrs", {}) for n in nodes
            if isinstance(n, dict) and isinstance(n.get("cim_layer"), int) and isinstance(n.get("attrs"), dict)}
