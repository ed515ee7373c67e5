"""Shared helpers of the ``cimc.train`` tests: cached zoo graphs and a numpy run of an exported
QAT model by the numerical contract (``cimc.quant.numerics``, segments by an explicit loop)."""

from __future__ import annotations

import functools
import itertools
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

import cimc.models as models
from cimc.frontend import import_onnx
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.mapping.tiling import segment_bounds
from cimc.ops import op_table
from cimc.ops.windows import conv2d as np_conv2d
from cimc.quant import numerics
from cimc.quant.batching import batch_generic
from cimc.train import QuantConfig, module_from_graph, prepare_phase
from cimc.train.export import QUANT_KEY, parse_quant_metadata
from cimc.train.module import IRModule


@functools.cache
def zoo_graph(name: str, seed: int = 0) -> Graph:
    """The imported zoo model (cached: callers must not mutate it)."""
    with tempfile.TemporaryDirectory() as tmp:
        models.export_onnx(name, Path(tmp) / "m.onnx", seed=seed)
        return import_onnx(Path(tmp) / "m.onnx")


def _as_conv(graph: Graph, node: Node) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    w = graph.initializers[node.inputs[1]]
    b = graph.initializers[node.inputs[2]] if len(node.inputs) > 2 and node.inputs[2] else None
    if node.op == "Conv":
        attrs = {k: node.attrs[k] for k in ("strides", "pads", "dilations", "group")}
    else:
        w = (w if node.op == "Gemm" and node.attrs["transB"] else w.T)[:, :, None, None]
        attrs = {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "group": 1}
    bias = np.zeros(w.shape[0], np.float32) if b is None else np.asarray(b, np.float32).reshape(-1)
    return np.ascontiguousarray(w, np.float32), np.broadcast_to(bias, (w.shape[0],)), attrs


def cim_layer(graph: Graph, node: Node, x: np.ndarray, q: dict, wordlines: int, mode: str) -> np.ndarray:
    """One CIM layer by docs/build-format.md, 'The numerical contract', a loop over segments."""
    w, b, a = _as_conv(graph, node)
    x4 = x if node.op == "Conv" else x.reshape(-1, x.shape[-1], 1, 1)
    a_q = numerics.quantize(x4, q["a_step"], q["a_bits"], q["a_signed"])
    w_q = numerics.weight_codes(w, q["w_step"], q["w_bits"])
    cout, cin_g, kh, kw = w.shape
    rows = np.arange(cin_g * kh * kw).reshape(cin_g, kh, kw)
    total = None
    bounds = segment_bounds(cin_g, kh * kw, wordlines, mode)
    for lo, hi in itertools.pairwise(bounds):
        seg = np.where((rows >= lo) & (rows < hi), w_q, np.float32(0))
        p = np_conv2d(a_q, seg, None, a["strides"], a["pads"], a["dilations"], a["group"])
        codes = numerics.adc_codes(p, q["adc_step"], q["adc_bits"])
        total = codes if total is None else total + codes
    assert total is not None
    y = numerics.layer_output(total, numerics.output_scale(q["w_step"], q["adc_step"], q["a_step"]), b)
    return y if node.op == "Conv" else y.reshape(*x.shape[:-1], cout)


def contract_run(graph: Graph, feeds: Mapping[str, np.ndarray], wordlines: int = 256,
                 mode: str = "channel") -> dict[str, np.ndarray]:
    """Every tensor of an exported QAT graph: its ``cimc.quant`` layers by the contract, the
    rest by the reference interpreter's kernels (float32)."""
    quant = parse_quant_metadata(graph.metadata[QUANT_KEY])
    graph = batch_generic(graph)
    values = dict(graph.initializers)
    values.update(feeds)
    for node in graph.topo_order():
        if node.name in quant:
            values[node.outputs[0]] = cim_layer(graph, node, values[node.inputs[0]], quant[node.name], wordlines, mode)
        else:
            values[node.outputs[0]] = op_table()[node.op].kernel([values[t] for t in node.inputs if t], node.attrs)
    return values


def trained_module(name: str, config: QuantConfig, steps: int = 3) -> IRModule:
    """A module through phases 1 and 2 with a few optimizer steps each (weights moved off init)."""
    graph = zoo_graph(name)
    shape = graph.shape(graph.inputs[0])[1:]
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, *shape, generator=gen), torch.randint(0, 10, (32,), generator=gen)
    module = module_from_graph(graph, config, nonnegative_inputs=frozenset(graph.inputs))
    for phase in ("1", "2"):
        prepare_phase(module, phase, x)
        opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=1e-2)
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(module.train()(x), y).backward()
            opt.step()
    return module.eval()
