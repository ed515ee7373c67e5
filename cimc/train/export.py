"""QAT model → ONNX that ``cimc compile`` reads losslessly (weights and every step size).

Every CIM layer is written with the BN-folded float32 weight and bias exactly as the torch
forward computes them (``IRModule.effective_weights(fold=True)``), so numpy's
``round(W'/S_W)`` gives the codes training used; folded BN nodes are removed (the layer
now writes the BN's output tensor). Gemm layers get ``alpha = beta = 1`` with the factors
folded in. The step sizes go to the model's ``metadata_props["cimc.quant"]``:

    {"version": 1, "layers": {"<node name>": {"w_bits": 4, "a_bits": 4, "adc_bits": 5,
        "w_step": [...], "a_step": s, "a_signed": false, "adc_step": [...],
        "adc_shift": [T·S ints]}}}                      (bit-sliced layers only)

with 1 (per layer) or Cout (per column) steps; floats are written with ``repr`` so the
float32 values round-trip exactly. With the steps, ``cimc.quant.numerics`` reproduces the phase-2
forward bit for bit: ``y = Σ_s clip(round(p_s/S_ADC)) · ((S_W·S_ADC)·S_A) + b'``; a sliced
layer's ``adc_shift`` gives conversion kind ``(t, j)`` the step ``S_ADC·2^−m_{t,j}``
(``cimc.quant.slicing``, read by ``cimc.quant.qat_metadata``).

A model trained with a weight pool writes each layer's materialised weights ``fl32(S_W·q)``
instead (``CimQuantLayer.materialised``: ``round(W/S_W)`` gives back the pool codes ``q``), its
``w_bits`` are the pool's code bits, and the pool goes to ``metadata_props["cimc.pool"]``
(``cimc.quant.pool_metadata``), so ``cimc compile --weight-pool`` uses this pool and these codes.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import torch

from cimc.errors import UsageError
from cimc.frontend import save_onnx
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.ir.verify import verify
from cimc.quant import pool_metadata, qat_metadata
from cimc.train.layer import CimQuantLayer
from cimc.train.module import IRModule

QUANT_KEY, QUANT_VERSION = qat_metadata.KEY, qat_metadata.VERSION


def _floats(t: torch.Tensor) -> list[float]:
    return [float(v) for v in t.detach().cpu().to(torch.float32).reshape(-1).tolist()]


def layer_record(layer: CimQuantLayer) -> dict[str, Any]:
    """The ``cimc.quant`` entry of one layer (steps as used by the forward pass)."""
    if not (bool(layer.w.initialized) and bool(layer.a.initialized) and bool(layer.adc.initialized)):
        raise UsageError(f"layer '{layer.node}' has uninitialised step sizes; calibrate phase 2 before exporting")
    record = {"w_bits": layer.w.bits, "a_bits": layer.a.bits, "adc_bits": layer.adc.bits,
              "w_step": _floats(layer.w.effective_step()), "a_step": _floats(layer.a.effective_step())[0],
              "a_signed": layer.a.signed, "adc_step": _floats(layer.adc.effective_step())}
    if layer.adc_shift is not None:
        record["adc_shift"] = [int(m) for m in layer.adc_shift.tolist()]
    return record


def quant_metadata(module: IRModule) -> str:
    """The JSON string stored under ``cimc.quant``."""
    layers = {name: layer_record(layer) for name, layer in module.cim_layers().items()}
    return json.dumps({"version": QUANT_VERSION, "layers": layers}, sort_keys=True)


def parse_quant_metadata(text: str) -> dict[str, dict[str, Any]]:
    """Layer records of a ``cimc.quant`` string (float32 steps as numpy arrays), each checked
    as the compile path checks it (``qat_metadata.layer_params``: an ``InvalidModelError``)."""
    out = {}
    for name, rec in qat_metadata.document(text)["layers"].items():
        qat_metadata.layer_params(name, rec, _columns(rec))
        out[name] = dict(rec, w_step=np.asarray(rec["w_step"], np.float32),
                         adc_step=np.asarray(rec["adc_step"], np.float32), a_step=np.float32(rec["a_step"]),
                         adc_shift=None if "adc_shift" not in rec else np.asarray(rec["adc_shift"], np.int64))
    return out


def _columns(rec: Any) -> int:
    """The longest step list of a record: the ``Cout`` that ``layer_params`` checks lengths against."""
    steps = (rec.get("w_step"), rec.get("adc_step")) if isinstance(rec, dict) else ()
    return max([len(v) for v in steps if isinstance(v, list)] + [1])


@torch.no_grad()
def export_graph(module: IRModule) -> Graph:
    """The quantized model as an IR graph: folded CIM weights, no folded BN, ``cimc.quant``."""
    graph = module.to_graph()
    for name, layer in module.cim_layers().items():
        w, b = module.effective_weights(name, fold=True)
        if layer.pool is not None:
            w = layer.materialised(w)
        node = graph.node(name)
        _write_weights(graph, node, w.detach().cpu().numpy(), None if b is None else b.detach().cpu().numpy())
        bn = module.folds.get(name)
        if bn is not None:
            _drop_bn(graph, node, graph.node(bn.name))
    graph.remove_unused_initializers()
    graph.metadata[QUANT_KEY] = quant_metadata(module)
    if module.weight_pool is not None:
        if not bool(module.weight_pool.built):
            raise UsageError("the weight pool is not built; prepare phase 1 or 2 before exporting")
        pool = module.weight_pool.pool.detach().cpu().numpy()
        graph.metadata[pool_metadata.KEY] = pool_metadata.write(pool, module.weight_pool.config.error_bits)
    verify(graph)
    return graph


def _write_weights(graph: Graph, node: Node, w: np.ndarray, b: np.ndarray | None) -> None:
    if node.op == "MatMul":
        w = w.T
    elif node.op == "Gemm":
        w = w if node.attrs["transB"] else w.T
        node.attrs.update(alpha=1.0, beta=1.0)
    w_name = graph.unique_name(f"{node.name}.qat_weight")
    graph.set_initializer(w_name, np.ascontiguousarray(w, dtype=np.float32))
    inputs = [node.inputs[0], w_name]
    if b is not None:
        b_name = graph.unique_name(f"{node.name}.qat_bias")
        graph.set_initializer(b_name, np.ascontiguousarray(b, dtype=np.float32))
        inputs.append(b_name)
    graph.set_inputs(node, inputs)


def _drop_bn(graph: Graph, node: Node, bn: Node) -> None:
    """Remove ``bn`` and make ``node`` write the BN's output tensor instead of its own."""
    old, new = node.outputs[0], bn.outputs[0]
    graph.remove_node(bn.name)
    graph.remove_node(node.name)
    node.outputs = (new,)
    graph.add_node(node)
    graph.tensors.pop(old, None)


def export_onnx(module: IRModule, path: str | os.PathLike[str]) -> Graph:
    """Write the quantized model to ``path`` (self-contained ONNX); returns its graph."""
    graph = export_graph(module)
    save_onnx(graph, path)
    return graph
