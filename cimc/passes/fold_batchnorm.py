"""fold-batchnorm: fold an inference-mode BatchNormalization into the Conv or Gemm before it.

With ``s = γ / √(σ² + ε)`` per output channel ``o``, BN(Conv(x)) equals a Conv with

    W'[o, ...] = s[o] · W[o, ...]            b'[o] = s[o] · (b[o] − μ[o]) + β[o]

(``b = 0`` when the conv has no bias). For ``Gemm`` (``y = α·A·B' + β_g·C``, output
channels along axis 1) the columns of ``B'`` are scaled by ``s`` and the bias becomes
``s·(β_g·C − μ) + β`` with ``β_g`` reset to 1. A fold happens only when the BN is the sole
reader of the Conv/Gemm output and that output is not a graph output. New weights get
new initializer names, so weights shared with another node are never changed under it.
Running the pass twice is a no-op; a model the exporter already fused is left as is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.passes.manager import GraphPass, PassContext, PassResult
from cimc.passes.registry import register


@register
@dataclass(frozen=True)
class FoldBatchNorm(GraphPass):
    name = "fold-batchnorm"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        out = graph.copy()
        pairs = [(p, bn) for bn in out.topo_order() if (p := foldable_producer(out, bn)) is not None]
        for producer, bn in pairs:
            _fold(out, producer, bn)
        if pairs:
            out.remove_unused_initializers()
        return PassResult(out, bool(pairs))


def foldable_producer(graph: Graph, bn: Node) -> Node | None:
    """The Conv/Gemm whose output only ``bn`` reads, if ``bn`` can be folded into it."""
    if bn.op != "BatchNormalization" or not all(t in graph.initializers for t in bn.inputs[1:]):
        return None
    producer = graph.producer(bn.inputs[0])
    if producer is None or producer.op not in ("Conv", "Gemm"):
        return None
    if graph.consumers(producer.outputs[0]) != [bn] or producer.outputs[0] in graph.outputs:
        return None
    if any(t not in graph.initializers for t in producer.inputs[1:] if t):
        return None
    return producer if producer.op == "Conv" or _gemm_foldable(graph, producer) else None


def _gemm_foldable(graph: Graph, gemm: Node) -> bool:
    if len(graph.shape(gemm.outputs[0])) != 2:
        return False
    if len(gemm.inputs) < 3 or not gemm.inputs[2]:
        return True
    bias_shape = graph.shape(gemm.inputs[2])
    return len(bias_shape) <= 1 or (len(bias_shape) == 2 and bias_shape[0] == 1)


def bn_scale_shift(graph: Graph, bn: Node) -> tuple[np.ndarray, np.ndarray]:
    """``(s, t)`` with BN(y) = s·y + t per channel, computed in float64."""
    gamma, beta, mean, var = (graph.initializers[t].astype(np.float64) for t in bn.inputs[1:])
    scale = gamma / np.sqrt(var + float(bn.attrs["epsilon"]))
    return scale, beta - scale * mean


def _fold(graph: Graph, producer: Node, bn: Node) -> None:
    scale, shift = bn_scale_shift(graph, bn)
    weight = graph.initializers[producer.inputs[1]]
    bias = _bias(graph, producer, weight, scale.shape[0])
    if producer.op == "Conv":
        factor = scale.reshape(-1, *([1] * (weight.ndim - 1)))
    else:
        factor = scale.reshape(-1, 1) if producer.attrs["transB"] else scale.reshape(1, -1)
        producer.attrs["beta"] = 1.0
    # the float64 product, rounded once to float32, without float64 temporaries of the weights
    new_w = np.multiply(weight, factor, dtype=np.float64, out=np.empty(weight.shape, np.float32), casting="same_kind")
    new_w.flags.writeable = False  # handed over to the graph as is (set_initializer copies writeable arrays)
    w_name = graph.unique_name(producer.inputs[1] + "_bnfold")
    b_name = graph.unique_name(producer.name + "_bias_bnfold")
    graph.set_initializer(w_name, new_w)
    graph.set_initializer(b_name, (scale * bias + shift).astype(np.float32))
    graph.set_inputs(producer, (producer.inputs[0], w_name, b_name))
    bn_out = bn.outputs[0]
    graph.remove_node(bn.name)
    _rename_output(graph, producer, bn_out)


def _bias(graph: Graph, producer: Node, weight: np.ndarray, channels: int) -> np.ndarray:
    if len(producer.inputs) < 3 or not producer.inputs[2]:
        return np.zeros(channels)
    bias = graph.initializers[producer.inputs[2]].astype(np.float64).reshape(-1)
    if producer.op == "Gemm":
        bias = float(producer.attrs["beta"]) * np.broadcast_to(bias, (channels,))
    return bias


def _rename_output(graph: Graph, producer: Node, new_out: str) -> None:
    """Make ``producer`` write ``new_out`` (the BN's output) instead of its old tensor."""
    old = producer.outputs[0]
    graph.remove_node(producer.name)
    producer.outputs = (new_out,)
    graph.add_node(producer)
    graph.tensors.pop(old, None)
