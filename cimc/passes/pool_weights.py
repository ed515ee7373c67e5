"""pool-weights: shared binary weight vectors, an index, scale and error term per layer (docs/weight-pool.md).

Runs only with ``--weight-pool P`` (``cimc.passes.pipelines.POOLED``), after tile-wordlines
and before quantize. For every CIM layer (``cimc.quant.weight_pool``): vector ``(s, o)`` is
rows ``[s·L, (s+1)·L)`` of output channel ``o``; the pool is binary k-means over the
normalised vectors of all layers; each layer gets ``WeightPool`` (indices, scale ``α``, error
codes) and is re-tiled densely with ``L`` rows per segment (a segment is a vector position).
Its weights become the materialised ``W_eff = fl32(α·q)`` with ``q = A·pool[idx] + e``, so the
quantize pass (``S_W = α``) and every executor compute the integer codes ``q`` exactly. A Gemm
then carries ``transB = 1``, ``alpha = 1``; a MatMul ``W_effᵀ``. A second run changes nothing.

A model trained with its pool (``cimc qat --weight-pool``) carries it (``cimc.quant.pool_metadata``):
then no k-means runs; the pool is the model's (its ``P``, ``L``, ``E`` must be the options'), ``α``
is each layer's trained ``w_step`` and its indices and error terms follow from its weights'
codes ``q = round(W/α)`` (``pool_metadata.derive``), so the build computes the codes the QAT
forward used. ``--pool-error-prune`` does not apply to it: pruning is in the trained codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cimc.errors import InvalidModelError, UsageError
from cimc.ir.annotations import CimLayer, QuantParams, WeightPool, WordlineTiling
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.mapping.select import cim_nodes
from cimc.mapping.tiling import tiling_for
from cimc.options import POOL_VECTOR, validate
from cimc.passes.manager import GraphPass, PassContext, PassResult
from cimc.passes.registry import register
from cimc.quant import numerics, pool_metadata, weight_pool
from cimc.quant.cim_layer import layer_weight
from cimc.quant.qat_metadata import KEY as QAT_KEY
from cimc.quant.qat_metadata import parse_qat


@register
@dataclass(frozen=True)
class PoolWeights(GraphPass):
    name = "pool-weights"
    needs = ("tile-wordlines",)
    pool_size: int = 64
    vector_length: int = POOL_VECTOR
    error_bits: int = 0
    error_prune: float = 0.0
    granularity: str = "layer"

    @classmethod
    def from_options(cls, options: Any) -> PoolWeights:
        return cls(pool_size=options.weight_pool or cls.pool_size,
                   vector_length=options.pool_vector or POOL_VECTOR,
                   error_bits=options.pool_error_bits or 0,
                   error_prune=options.pool_error_prune or 0.0, granularity=options.granularity)

    def config(self) -> weight_pool.PoolConfig:
        return weight_pool.PoolConfig(self.vector_length, self.pool_size, self.error_bits, self.error_prune,
                                      self.granularity == "column")

    def requires(self, graph: Graph, ctx: PassContext) -> None:
        for name, value in (("weight_pool", self.pool_size), ("pool_vector", self.vector_length),
                            ("pool_error_bits", self.error_bits), ("pool_error_prune", self.error_prune),
                            ("granularity", self.granularity)):
            validate(name, value)
        if self.vector_length > ctx.macro.wordlines:
            raise UsageError(f"--pool-vector {self.vector_length} is longer than macro '{ctx.macro.name}''s "
                             f"{ctx.macro.wordlines} wordlines", hint=f"use at most {ctx.macro.wordlines}")
        nodes = cim_nodes(graph)
        quantized = [n.name for n in nodes if QuantParams in n.ann and WeightPool not in n.ann]
        if quantized:
            raise UsageError(f"pool-weights must run before quantize (quantized: {', '.join(quantized[:5])})")

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        out = graph.copy()
        todo = [n for n in cim_nodes(out) if WeightPool not in n.ann]
        if not todo:
            return PassResult(out, False)
        config = self.config()
        matrices = [_matrix(out, n) for n in todo]
        if pool_metadata.KEY in out.metadata:
            pool, layers = self._trained(out, todo, matrices, config)
        else:
            pool, layers = weight_pool.pool_layers(matrices, config)
        pool.flags.writeable = False
        for node, layer in zip(todo, layers, strict=True):
            _apply(out, node, pool, layer, config, pool_metadata.KEY in out.metadata)
        return PassResult(out, True)

    def _trained(self, graph: Graph, nodes: list[Node], matrices: list[np.ndarray],
                 config: weight_pool.PoolConfig) -> tuple[np.ndarray, list[weight_pool.PooledLayer]]:
        """The model's own pool (module doc): its layers' indices and error terms from their codes."""
        trained = pool_metadata.parse(graph.metadata[pool_metadata.KEY])
        have = (trained.pool.shape[0], trained.vector_length, trained.error_bits)
        want = (config.pool_size, config.vector_length, config.error_bits)
        if have != want:
            raise UsageError(f"the model was trained with a pool of {have[0]} vectors of length {have[1]} and "
                             f"{have[2]} error bits; --weight-pool {want[0]} --pool-vector {want[1]} "
                             f"--pool-error-bits {want[2]} asks for another",
                             hint=f"compile with --weight-pool {have[0]} --pool-vector {have[1]} "
                                  f"--pool-error-bits {have[2]}")
        steps = parse_qat(graph.metadata[QAT_KEY], {n.name: n.ann[CimLayer].cout for n in nodes}) \
            if QAT_KEY in graph.metadata else {}
        layers = []
        for node, matrix in zip(nodes, matrices, strict=True):
            if node.name not in steps:
                raise InvalidModelError(f"layer '{node.name}': the model carries a trained weight pool but no "
                                        f"trained scale for this layer ('{QAT_KEY}')")
            alpha = np.asarray(steps[node.name].w_step, dtype=np.float32)
            q = numerics.weight_codes(matrix, alpha, config.code_bits).astype(np.int64)
            index, error = pool_metadata.derive(node.name, trained, q)
            layers.append(weight_pool.PooledLayer(index, error, alpha.copy()))
        return np.array(trained.pool), layers

    def ensures(self, graph: Graph, ctx: PassContext) -> None:
        for node in cim_nodes(graph):
            pool = node.ann.get_ann(WeightPool)
            if pool is None:
                raise AssertionError(f"CIM layer '{node.name}' left without a weight pool")
            if node.ann[WordlineTiling].num_segments != pool.index.shape[0]:
                raise AssertionError(f"'{node.name}': {pool.index.shape[0]} vector positions for "
                                     f"{node.ann[WordlineTiling].num_segments} segments")


def _matrix(graph: Graph, node: Node) -> np.ndarray:
    """The layer's float weights as ``(Cout, rows)``."""
    w = layer_weight(graph, node)
    return w.reshape(w.shape[0], -1)


def _apply(graph: Graph, node: Node, pool: np.ndarray, layer: weight_pool.PooledLayer,
           config: weight_pool.PoolConfig, trained: bool) -> None:
    """Annotate ``node``, re-tile it by vectors and give it its materialised weights."""
    geometry = node.ann[CimLayer]
    for arr in (layer.index, layer.error, layer.scale):
        if arr is not None:
            arr.flags.writeable = False
    node.ann.put(WeightPool(config.vector_length, pool, layer.index, layer.error, layer.scale,
                            config.multiplier, config.code_bits, trained))
    node.ann.put(tiling_for(geometry, config.vector_length, "dense"))
    w = weight_pool.effective_weights(layer, pool, config.multiplier, geometry.rows)
    _set_weight(graph, node, w)


def _set_weight(graph: Graph, node: Node, w: np.ndarray) -> None:
    """Replace the layer's weight input by ``w (Cout, rows)`` in the op's own layout."""
    if node.op == "Conv":
        value = w.reshape(graph.shape(node.inputs[1]))
    elif node.op == "Gemm":
        value = w
        node.attrs["transB"] = 1
        node.attrs["alpha"] = 1.0
    else:
        value = np.ascontiguousarray(w.T)
    name = graph.unique_name(f"{node.name}.pooled_weight")
    graph.set_initializer(name, value.astype(np.float32))
    inputs = list(node.inputs)
    inputs[1] = name
    graph.set_inputs(node, inputs)
