"""Latency of a bit configuration from the compile path's own cost model, computed fast.

``import → fold-batchnorm → select-cim → tile-wordlines`` run once (``prepare``); for each
configuration every CIM layer gets a stand-in ``QuantParams`` carrying only its bits and the
macro's cell/DAC widths (unit steps: placement and cost depend on bits and shapes, never on
step sizes), then ``place-bitlines`` and ``backends.cost_model.model_cost`` run as in
``cimc compile`` — and, for an objective of the timeline (``batch-latency``, ``energy``,
``edp``), the timeline of the placed graph at the options' ``infer_batch``, ``timing`` and
``conversion`` on their ``bitline_budget``. The figure minimised (``--objective``) is one of
``cimc.cost.objective.OBJECTIVES`` (declared there once: ``latency``, ``computing``,
``conversions``, ``batch-latency``, ``energy``, ``edp``).

With bit slicing a layer of ``w_bits > cell_bits`` takes ``ceil(w_bits/cell_bits)`` columns
per output channel and ``a_bits > dac_bits`` takes ``ceil(a_bits/dac_bits)`` input cycles, so
the figures grow in steps of the slice counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import numpy as np

from cimc.api import CompileOptions
from cimc.cost.model import ModelCost, model_cost
from cimc.cost.objective import get_objective, objective_value
from cimc.cost.timeline import Conversion, Timing, timeline
from cimc.ir.annotations import QuantParams
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.mapping.select import cim_nodes
from cimc.passes.manager import PassContext, run_passes
from cimc.passes.pipelines import SEARCH_PREFIX, instantiate
from cimc.passes.place_bitlines import PlaceBitlines
from cimc.passes.quantize import check_bits
from cimc.search.space import Config


def prepare(graph: Graph, options: CompileOptions, macro: MacroSpec) -> tuple[Graph, PassContext]:
    """The compile pipeline's cost-only prefix ``SEARCH_PREFIX`` (fold, select, tile)."""
    ctx = PassContext(macro=macro, bitline_budget=options.bitline_budget)
    return run_passes(graph, instantiate(SEARCH_PREFIX, options), ctx), ctx


def stub_quant(bits: tuple[int, int, int], macro: MacroSpec) -> QuantParams:
    """``QuantParams`` with the given bits and unit steps (enough for placement and cost)."""
    one = np.ones(1, dtype=np.float32)
    one.flags.writeable = False
    w, a, adc = bits
    return QuantParams(w, a, adc, one, 1.0, one, False, source="search", cell_bits=macro.cell_bits,
                       dac_bits=macro.dac_bits)


def with_quant(graph: Graph, quant: list[QuantParams]) -> Graph:
    """A copy of the tiled ``graph`` whose CIM layers carry ``quant`` (topological order)."""
    out = graph.copy()
    for node, q in zip(cim_nodes(out), quant, strict=True):
        node.ann.put(q)
    return out


@dataclass
class LatencyModel:
    """Cost of configurations on a tiled graph (module doc); results cached per configuration."""

    graph: Graph
    macro: MacroSpec
    placement: str = "packed"
    bitline_budget: int | None = None
    objective: str = "latency"
    timing: str = "paper"
    batch: int = 1
    conversion: str = "serial"
    _cache: dict[Config, tuple[ModelCost, float]] = field(default_factory=dict, repr=False)

    def _evaluate(self, config: Config) -> tuple[ModelCost, float]:
        cached = self._cache.get(config)
        if cached is not None:
            return cached
        graph = with_quant(self.graph, [stub_quant(bits, self.macro) for bits in config])
        for node in cim_nodes(graph):
            check_bits(node, self.macro)
        ctx = PassContext(macro=self.macro, bitline_budget=self.bitline_budget)
        placed = PlaceBitlines(policy=self.placement).run(graph, ctx).graph
        cost = model_cost(placed, self.macro, self.bitline_budget)
        result = None
        if get_objective(self.objective).timeline:
            result = timeline(placed, self.macro, cost.bitline_budget, cast(Timing, self.timing), self.batch,
                              cast(Conversion, self.conversion))
        self._cache[config] = cost, objective_value(self.objective, cost, result, self.macro)
        return self._cache[config]

    def cost(self, config: Config) -> ModelCost:
        return self._evaluate(config)[0]

    def __call__(self, config: Config) -> float:
        return self._evaluate(config)[1]
