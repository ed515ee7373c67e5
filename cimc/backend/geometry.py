"""The conv geometry of a CIM layer as ``layout.json`` records it (``documents.layout.Geometry``).

A ``Conv`` gives its ONNX attributes and its input and output shapes. A fully connected layer
(``Gemm``/``MatMul``, ``--map-fc``) is a 1×1 conv whose pixels are the rows of its input after
the batch dimension: input ``[N, P…, K]`` is ``in_shape [N, K, prod(P), 1]`` and the output
``[N, M, prod(P), 1]``, with strides and dilations 1, pads 0 and one group (``prod(P)`` is the
layer's ``out_pixels``; a 2-D input gives ``[N, K, 1, 1]``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from cimc.documents.layout import Geometry
from cimc.ir.annotations import CimLayer
from cimc.ir.graph import Graph
from cimc.ir.node import Node


def geometry(graph: Graph, node: Node) -> Geometry:
    """The geometry of CIM layer ``node`` (module doc)."""
    if node.op != "Conv":
        return fc_geometry(graph, node)
    return Geometry(strides=_ints(node.attrs["strides"]), pads=_ints(node.attrs["pads"]),
                    dilations=_ints(node.attrs["dilations"]), group=int(node.attrs["group"]),
                    in_shape=_ints(graph.shape(node.inputs[0])), out_shape=_ints(graph.shape(node.outputs[0])))


def fc_geometry(graph: Graph, node: Node) -> Geometry:
    """A ``Gemm``/``MatMul`` as a 1×1 conv (module doc)."""
    layer = node.ann[CimLayer]
    lead = graph.shape(node.inputs[0])[:-1]
    batch = int(lead[0]) if lead else 1
    pixels = math.prod(lead[1:]) if len(lead) > 1 else 1
    return Geometry(strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1], group=1,
                    in_shape=[batch, layer.rows, pixels, 1], out_shape=[batch, layer.cout, pixels, 1])


def conv_attrs(geo: Geometry, kernel: list[int]) -> dict[str, list[int] | int]:
    """The ONNX ``Conv`` attributes ``geo`` and ``kernel`` stand for (as ``graph.json`` writes them)."""
    return {"strides": geo.strides, "pads": geo.pads, "dilations": geo.dilations, "group": geo.group,
            "kernel_shape": list(kernel)}


def attr_or_default(attrs: Mapping[str, object], key: str, kernel: list[int]) -> object:
    """``attrs[key]``, or ONNX's default when the node leaves it out (strides and dilations 1,
    no pads, one group, the kernel of the weights)."""
    defaults: dict[str, list[int] | int] = {"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1],
                                            "group": 1, "kernel_shape": kernel}
    return attrs.get(key, defaults.get(key))


def out_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int) -> int:
    """Output length of a conv along one axis: ``(in + pads − dilation·(kernel − 1) − 1) // stride + 1``."""
    return (size + pad_begin + pad_end - dilation * (kernel - 1) - 1) // stride + 1


def _ints(values: tuple[int, ...] | list[int]) -> list[int]:
    return [int(v) for v in values]
