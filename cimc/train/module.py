"""IR → ``torch.nn.Module``: any graph cimc imports becomes trainable, and writes itself back.

``module_from_graph(graph, config)`` returns an ``IRModule`` whose parameters ARE the graph's
float initializers (conv/Gemm weights and biases, BN γ and β, other constants); BN running
means and variances are buffers. ``forward`` executes the nodes in topological order (torch
forwards of the op table, ``cimc.ops``; the batch size is free, Reshapes of the batch dimension
follow it). CIM layers (``select-cim``: every Conv, plus Gemm/MatMul with ``map_fc``) run
through a ``CimQuantLayer`` in the module's phase:

* ``float``: plain conv; BN uses batch statistics in training mode (running ones in eval),
  under DDP those of the global batch over all ranks (``cimc.train.sync_bn``).
* ``1`` / ``2``: a BN that ``fold-batchnorm`` would fold is folded into its layer in the
  forward pass with the running statistics, in float32:
  ``s = γ/√(σ²+ε)``, ``W' = s·W``, ``b' = s·(b − μ) + β`` — exactly the tensors ``export``
  writes — then the layer is quantized (Eq. 6, or Eq. 7–8 with the ADC).

With ``config.weight_pool`` the module owns the one ``SharedPool`` (``weight_pool``) every CIM
layer takes its weight codes from (``cimc.train.pool``; built by ``prepare_phase``).

``to_graph()`` writes the trained values into a copy of the graph (same structure).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from cimc.errors import UnsupportedError, UsageError
from cimc.ir.annotations import CimLayer
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.mapping.select import cim_layer
from cimc.ops import find
from cimc.passes.fold_batchnorm import foldable_producer
from cimc.train.layer import PHASES, CimQuantLayer, QuantConfig
from cimc.train.phase2 import ConvGeometry
from cimc.train.pool import SharedPool
from cimc.train.signs import signed_inputs
from cimc.train.sync_bn import ranks_joined, synced_batch_norm

#: Called at every CIM layer with (node name, layer, layer input, effective weight) when set.
Capture = Callable[[str, CimQuantLayer, torch.Tensor, torch.Tensor], None]


def _key(index: int, name: str) -> str:
    return f"t{index}_{re.sub(r'[^0-9A-Za-z_]', '_', name)}"


class IRModule(nn.Module):
    """A graph as a module; see the module docstring."""

    def __init__(self, graph: Graph, config: QuantConfig | None = None,
                 nonnegative_inputs: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.graph = graph.copy()
        self.config = config or QuantConfig()
        self.phase = "float"
        self.capture: Capture | None = None
        self.order = self.graph.topo_order()
        self.keys: dict[str, str] = {}
        self.params = nn.ParameterDict()
        self._store_initializers()
        pool = self.config.pool_config()
        self.weight_pool = None if pool is None else SharedPool(pool)
        self.layers = nn.ModuleDict()
        self.layer_keys: dict[str, str] = {}
        self._build_layers(signed_inputs(self.graph, nonnegative_inputs))
        self.folds = self._fold_pairs()
        self._reshapes = self._batch_reshapes()
        self.set_phase_flags("float")

    # -- construction ------------------------------------------------------------------
    def _store_initializers(self) -> None:
        stats = {t for n in self.order if n.op == "BatchNormalization" for t in n.inputs[3:5]}
        for i, name in enumerate(sorted(self.graph.initializers)):
            key = self.keys[name] = _key(i, name)
            tensor = torch.from_numpy(self.graph.initializers[name].copy())
            if name in stats or not tensor.is_floating_point():
                self.register_buffer(key, tensor)
            else:
                self.params[key] = nn.Parameter(tensor)

    def _fold_pairs(self) -> dict[str, Node]:
        """CIM-layer node name → the BN node folded into it in phases 1 and 2 (a BN after a
        Conv/Gemm that is not a CIM layer, e.g. a Gemm without ``map_fc``, stays a BN)."""
        pairs = {}
        for node in self.order:
            producer = foldable_producer(self.graph, node)
            if producer is not None and producer.name in self.layer_keys:
                pairs[producer.name] = node
        return pairs

    def _build_layers(self, signed: dict[str, bool]) -> None:
        for i, node in enumerate(self.order):
            info = cim_layer(self.graph, node, self.config.map_fc)
            if info is None:
                continue
            _check_bias(self.graph, node, info)
            key = self.layer_keys[node.name] = _key(i, node.name)
            self.layers[key] = CimQuantLayer(node.name, info.cout, info.rows // (info.kernel[0] * info.kernel[1]),
                                             info.kernel, _geometry(node, info), self.config,
                                             signed[node.inputs[0]], self.weight_pool)
        self.config.check_layers(list(self.layer_keys))

    def _batch_reshapes(self) -> dict[str, tuple[int, ...]]:
        """Reshapes whose leading dim is the graph's batch: it becomes ``-1`` (any batch)."""
        batch = self.graph.shape(self.graph.inputs[0])[0] if self.graph.inputs else None
        out = {}
        for node in self.order:
            shape = node.attrs.get("shape")
            if node.op == "Reshape" and shape and shape[0] == batch == self.graph.shape(node.inputs[0])[0]:
                out[node.name] = (-1, *shape[1:])
        return out

    # -- access ------------------------------------------------------------------------
    def tensor(self, name: str) -> torch.Tensor:
        """The parameter or buffer holding initializer ``name``."""
        key = self.keys[name]
        return self.params[key] if key in self.params else getattr(self, key)

    def cim_layers(self) -> dict[str, CimQuantLayer]:
        """CIM-layer node name → its quantizer layer, in topological order."""
        return {name: cast(CimQuantLayer, self.layers[key]) for name, key in self.layer_keys.items()}

    def bn_gammas(self) -> dict[str, torch.Tensor]:
        """BN scale parameters (γ) by BN node name (what MorphNet's regularizer reads)."""
        return {n.name: self.tensor(n.inputs[1]) for n in self.order if n.op == "BatchNormalization"}

    def set_phase_flags(self, phase: str) -> None:
        """Switch the forward to ``phase`` and set which step sizes train (no calibration)."""
        if phase not in PHASES:
            raise UsageError(f"unknown phase '{phase}'; choose one of {', '.join(PHASES)}")
        self.phase = phase
        for layer in self.cim_layers().values():
            layer.freeze_for_phase(phase)

    # -- forward -----------------------------------------------------------------------
    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        values = self.run(*inputs)
        outs = tuple(values[t] if t in values else self.tensor(t) for t in self.graph.outputs)
        return outs[0] if len(outs) == 1 else outs

    def run(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every tensor the graph computes on ``inputs`` (graph inputs in order), by name."""
        values: dict[str, torch.Tensor] = dict(zip(self.graph.inputs, inputs, strict=True))
        for node in self.order:
            values[node.outputs[0]] = self._run(node, values)
        return values

    def _run(self, node: Node, values: dict[str, torch.Tensor]) -> torch.Tensor:
        if node.name in self.layer_keys:
            return self._cim(node, values[node.inputs[0]])
        if node.op == "BatchNormalization":
            return self._batchnorm(node, values[node.inputs[0]])
        op = find(node.op)
        if op is None:
            raise UnsupportedError(f"no torch kernel for op {node.op} (node '{node.name}')")
        args = [values[t] if t in values else self.tensor(t) for t in node.inputs if t]
        attrs = dict(node.attrs, shape=self._reshapes[node.name]) if node.name in self._reshapes else node.attrs
        return op.torch(args, attrs)

    def _batchnorm(self, node: Node, x: torch.Tensor) -> torch.Tensor:
        producer = self.graph.producer(node.inputs[0])
        if self.phase != "float" and producer is not None and self.folds.get(producer.name) is node:
            return x  # already folded into the layer
        g, b, mean, var = (self.tensor(t) for t in node.inputs[1:])
        batch_stats = self.training and self.phase == "float"
        if batch_stats and ranks_joined():
            return synced_batch_norm(x, mean, var, g, b, 0.1, float(node.attrs["epsilon"]))
        return F.batch_norm(x, mean, var, g, b, batch_stats, 0.1, float(node.attrs["epsilon"]))

    def _cim(self, node: Node, x: torch.Tensor) -> torch.Tensor:
        layer = cast(CimQuantLayer, self.layers[self.layer_keys[node.name]])
        w, b = self.effective_weights(node.name)
        if node.op != "Conv":
            lead = x.shape[:-1]
            x, w = x.reshape(-1, x.shape[-1], 1, 1), w[:, :, None, None]
        if self.capture is not None:
            self.capture(node.name, layer, x, w)
        y = layer(x, w, b, self.phase)
        return y if node.op == "Conv" else y.reshape(*lead, y.shape[1])

    def effective_weights(self, name: str, fold: bool | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight ``(Cout, Cin_g, kh, kw)`` or ``(Cout, K)`` and bias ``(Cout,)`` of a CIM layer,
        BN-folded in phases 1 and 2 or when ``fold`` (float32, the values ``export`` writes)."""
        node = self.graph.node(name)
        w, b = self._raw_weights(node)
        bn = self.folds.get(name)
        if not (self.phase != "float" if fold is None else fold) or bn is None:
            return w, b
        gamma, beta, mean, var = (self.tensor(t) for t in bn.inputs[1:])
        scale = gamma / torch.sqrt(var + float(bn.attrs["epsilon"]))
        w = w * scale.reshape(-1, *([1] * (w.ndim - 1)))
        return w, (beta - scale * mean if b is None else scale * (b - mean) + beta)

    def _raw_weights(self, node: Node) -> tuple[torch.Tensor, torch.Tensor | None]:
        w = self.tensor(node.inputs[1])
        b = self.tensor(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        if node.op == "MatMul":
            return w.t(), None
        if node.op == "Gemm":
            w = float(node.attrs["alpha"]) * (w if node.attrs["transB"] else w.t())
            b = None if b is None else float(node.attrs["beta"]) * b.reshape(-1).expand(w.shape[0])
        return w, b

    # -- write back --------------------------------------------------------------------
    def to_graph(self) -> Graph:
        """A copy of the source graph holding the module's current values (same structure)."""
        out = self.graph.copy()
        for name in self.graph.initializers:
            value = self.tensor(name).detach().cpu().numpy()
            out.set_initializer(name, value.astype(self.graph.initializers[name].dtype))
        return out


def _geometry(node: Node, info: CimLayer) -> ConvGeometry:
    if node.op != "Conv":
        return ConvGeometry((1, 1), (0, 0, 0, 0), (1, 1), 1)
    (sh, sw), (dh, dw), (t, l, b, r) = node.attrs["strides"], node.attrs["dilations"], node.attrs["pads"]
    return ConvGeometry((int(sh), int(sw)), (int(t), int(l), int(b), int(r)), (int(dh), int(dw)),
                        int(node.attrs["group"]))


def _check_bias(graph: Graph, node: Node, info: CimLayer) -> None:
    if node.op == "Gemm" and len(node.inputs) > 2 and node.inputs[2]:
        size = graph.initializers[node.inputs[2]].size if node.inputs[2] in graph.initializers else -1
        if size not in (1, info.cout):
            raise UnsupportedError(f"node '{node.name}' (Gemm): a CIM layer needs a constant per-channel bias")


def module_from_graph(graph: Graph, config: QuantConfig | None = None,
                      nonnegative_inputs: frozenset[str] = frozenset()) -> IRModule:
    """Build the trainable module of ``graph`` (float phase). ``nonnegative_inputs`` names
    graph inputs known to be ≥ 0 (their first layer then gets unsigned DAC codes)."""
    return IRModule(graph, config, nonnegative_inputs)
