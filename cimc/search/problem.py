"""A search problem: the space, the latency model, the accuracy proxy, the constraint, and
every configuration evaluated so far.

``evaluate(config)`` costs one cost-model call and one proxy run (both cached); each new
configuration is kept as a ``Point`` in ``history`` (in evaluation order) so every strategy
reports all it has seen. A point is feasible when its drop, in percentage points against the
float model, is at most ``max_drop``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cimc.api import CompileOptions, load_source
from cimc.macro import MacroSpec, load_macro
from cimc.mapping.select import cim_nodes
from cimc.search.accuracy import AccuracyProxy, build_proxy, held_out
from cimc.search.latency import LatencyModel, prepare
from cimc.search.space import DEFAULT_A_BITS, DEFAULT_W_BITS, Config, SearchSpace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Point:
    """One evaluated configuration."""

    config: Config
    latency: float
    """The objective's value (``cimc.cost.objective``): cycles, conversions, pJ or pJ·cycles."""
    accuracy: float
    agreement: float
    metric: float
    drop: float
    feasible: bool
    origin: str

    def to_json(self, layers: tuple[str, ...]) -> dict[str, Any]:
        return {"latency": self.latency, "accuracy": self.accuracy, "agreement": self.agreement,
                "metric": self.metric, "drop_pp": round(self.drop, 6), "feasible": self.feasible,
                "origin": self.origin,
                "bits": {n: list(b) for n, b in zip(layers, self.config, strict=True)}}


@dataclass
class SearchProblem:
    space: SearchSpace
    latency: LatencyModel
    proxy: AccuracyProxy
    max_drop: float
    test: AccuracyProxy | None = None  # the held-out test split: reported, never scored
    start: Config | None = None  # a QAT model's trained bits (``qat_start``): where the search starts
    history: list[Point] = field(default_factory=list)
    progress: Callable[[Point], None] | None = field(default=None, repr=False)
    _points: dict[Config, Point] = field(default_factory=dict, repr=False)

    def evaluate(self, config: Config, origin: str = "") -> Point:
        found = self._points.get(config)
        if found is not None:
            return found
        self.space.check(config)
        score = self.proxy.score(config)
        drop = self.proxy.drop(score)
        point = Point(config, self.latency(config), score.accuracy, score.agreement, score.metric, drop,
                      drop <= self.max_drop + 1e-9, origin)
        self._points[config] = point
        self.history.append(point)
        if self.progress is not None:
            self.progress(point)
        log.debug("%s: latency %d, metric %.4f, drop %.2f pp", origin, point.latency, point.metric, drop)
        return point

    def first(self, strategy: str) -> Point:
        """The starting point: the QAT model's trained configuration (``start``), else the widest."""
        if self.start is not None:
            return self.evaluate(self.start, f"{strategy} start (qat)")
        return self.evaluate(self.space.widest(), f"{strategy} start")

    def uniform(self, w_bits: int, a_bits: int) -> Point:
        return self.evaluate(self.space.uniform(w_bits, a_bits), f"uniform {w_bits}/{a_bits}")


@dataclass(frozen=True)
class ProblemSpec:
    """What ``build_problem`` needs beyond the model (CLI options, defaults of ``cimc search``)."""

    data: str | Path | object  # a dataset argument, or from Python an iterable of (x, y) batches
    objective: str = "latency"
    max_drop: float = 0.5
    w_choices: tuple[int, ...] = DEFAULT_W_BITS
    a_choices: tuple[int, ...] = DEFAULT_A_BITS
    adc_choices: tuple[int, ...] | None = None
    eval_size: int | None = None
    calib: str | Path | object | None = None
    options: CompileOptions = field(default_factory=CompileOptions)


def build_problem(source: str | Path, spec: ProblemSpec) -> SearchProblem:
    """Import ``source`` (ONNX file or zoo name), tile it once, and set up latency and proxy."""
    options = spec.options
    macro = options.macro if isinstance(options.macro, MacroSpec) else load_macro(options.macro)
    graph, _ = load_source(source, options)
    tiled, _ = prepare(graph, options, macro)
    layers = tuple(n.name for n in cim_nodes(tiled))
    space = SearchSpace(layers, spec.w_choices, spec.a_choices, spec.adc_choices or (macro.adc_bits,))
    latency = LatencyModel(tiled, macro, options.placement, options.bitline_budget, spec.objective, options.timing,
                           options.infer_batch, options.conversion)
    latency(space.widest())  # an unknown objective or a configuration that cannot compile fails early
    calib = spec.calib if spec.calib is not None else spec.data
    proxy = build_proxy(tiled, macro, spec.data, eval_size=spec.eval_size, calib=calib,
                        calib_size=options.calib_size, data_root=options.data_root,
                        granularity=options.granularity, weight_method=options.weight_method,
                        preprocess=options.preprocess())
    test = held_out(proxy, tiled, spec.data, eval_size=spec.eval_size, data_root=options.data_root,
                    preprocess=options.preprocess())
    if test is None:
        log.warning("the search data has no separate test split: the chosen configuration is reported on the "
                    "samples it was scored on (use a folder with train/, val/ and test/ subfolders)")
    return SearchProblem(space, latency, proxy, spec.max_drop, test, start=qat_start(space, proxy.qat))


def qat_start(space: SearchSpace, qat: dict[str, Any]) -> Config | None:
    """The configuration a QAT model was trained at — each layer at its trained bits, a layer
    without QAT steps at the widest candidates — when every trained width is a candidate of the
    space; ``None`` for a model without QAT steps (or when a width is not a candidate, with a warning)."""
    if not qat:
        return None
    widest = space.widest()[0]
    config = tuple((q.w_bits, q.a_bits, q.adc_bits) if (q := qat.get(name)) is not None else widest
                   for name in space.layers)
    outside = [f"{name} {w}/{a}/{c}" for name, (w, a, c) in zip(space.layers, config, strict=True)
               if w not in space.w_choices or a not in space.a_choices or c not in space.adc_choices]
    if outside:
        log.warning("the QAT bits of %s are not among the candidates: the search starts from the widest "
                    "configuration (add them to --w-choices/--a-choices/--adc-choices to start from them)",
                    ", ".join(outside[:5]))
        return None
    return config
