"""The accuracy proxy of a bit configuration: the compiled model's top-1 on held-out data.

Each configuration costs one run of the numpy reference of the compiled model
(``cimc.quant.reference.run_compiled``: CIM layers by the bit-sliced numerical contract,
scales exact as with ``--no-shift``) over the evaluation samples. The quantization of every
layer comes from ``passes.quantize.calibrate_layer`` on the float inputs of the layer over the
calibration batch, exactly as the quantize pass computes it, and is cached per
``(layer, w_bits, a_bits, adc_bits)``: a configuration that reuses a layer's bits reuses its
steps. A model trained by ``cimc qat`` (``metadata["cimc.quant"]``) keeps its trained steps
wherever a configuration gives a layer the bits it was trained at, as ``cimc compile`` does
(``qat_params``); other bits are calibrated.

The search scores configurations on the ``val`` split (``build_proxy``) and reports the
chosen one on the ``test`` split (``held_out``), which it never scores on (the split rule of
``cimc.data.sources``).

The metric is the top-1 accuracy on the labels (``digits``, ``cifar10``, ``mnist``, the user's
image folders and ``.npz`` files, Python batches) or, on ``synthetic``
data (untrained zoo models, random labels), the agreement of the compiled model's top-1 with
the float model's. The drop is measured in percentage points against the float model
(accuracy) or against 100 % (agreement).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cimc.data.preprocess import DEFAULT, Preprocess
from cimc.data.sources import has_splits
from cimc.evaluation import evaluation_set, top1
from cimc.ir.annotations import CimLayer, QuantParams
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.mapping.select import cim_nodes
from cimc.passes.quantize import calibrate_layer, with_macro_widths
from cimc.quant.blas import single_blas_thread
from cimc.quant.calibration import collect_inputs, load_feeds
from cimc.quant.cim_layer import cim_spec
from cimc.quant.qat_metadata import KEY, check_layer_names, parse_qat
from cimc.quant.reference import run_compiled
from cimc.search.latency import with_quant
from cimc.search.space import Config, LayerChoice


@dataclass(frozen=True)
class Score:
    """Top-1 accuracy on the labels, agreement with the float model, and the searched metric."""

    accuracy: float
    agreement: float
    metric: float


@dataclass
class AccuracyProxy:
    """Scores configurations of a tiled graph (module doc)."""

    graph: Graph
    macro: MacroSpec
    x: np.ndarray
    y: np.ndarray
    inputs: dict[str, np.ndarray]
    metric: str = "accuracy"
    granularity: str = "layer"
    weight_method: str = "mse"
    float_pred: np.ndarray = field(init=False)
    qat: dict[str, QuantParams] = field(default_factory=dict)  # trained steps per layer (``qat_params``)
    _quant: dict[tuple[str, LayerChoice], QuantParams] = field(default_factory=dict, repr=False)
    _scores: dict[Config, Score] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.float_pred = self._predict(self.graph)

    @property
    def reference(self) -> float:
        """The float model's value of the metric (the drop is measured from it)."""
        return float((self.float_pred == self.y).mean()) if self.metric == "accuracy" else 1.0

    def quant(self, name: str, bits: LayerChoice) -> QuantParams:
        """The layer's QAT steps at the bits it was trained at, else calibrated steps (cached)."""
        trained = self.qat.get(name)
        if trained is not None and (trained.w_bits, trained.a_bits, trained.adc_bits) == bits:
            return trained
        key = (name, bits)
        if key not in self._quant:
            with single_blas_thread():
                self._quant[key] = calibrate_layer(cim_spec(self.graph, self.graph.node(name)), self.inputs[name],
                                                   bits, self.granularity, self.weight_method, self.macro)
        return self._quant[key]

    def quantized(self, config: Config) -> Graph:
        names = [n.name for n in cim_nodes(self.graph)]
        return with_quant(self.graph, [self.quant(n, b) for n, b in zip(names, config, strict=True)])

    def score(self, config: Config) -> Score:
        if config not in self._scores:
            pred = self._predict(self.quantized(config))
            acc, agree = float((pred == self.y).mean()), float((pred == self.float_pred).mean())
            self._scores[config] = Score(acc, agree, acc if self.metric == "accuracy" else agree)
        return self._scores[config]

    def drop(self, score: Score) -> float:
        """Percentage points lost against the float model."""
        return 100.0 * (self.reference - score.metric)

    def _predict(self, graph: Graph) -> np.ndarray:
        return top1(run_compiled(graph, {graph.inputs[0]: self.x}).outputs[graph.outputs[0]])


def build_proxy(graph: Graph, macro: MacroSpec, data: str | Path | object, *, eval_size: int | None,
                calib: str | Path | object, calib_size: int, data_root: str | None, granularity: str = "layer",
                weight_method: str = "mse", preprocess: Preprocess = DEFAULT, split: str = "val") -> AccuracyProxy:
    """The proxy on the ``val`` split of ``data`` (``eval_size`` samples; the split rule of
    ``cimc.data.sources``: ``val/`` of a folder split into ``train/``, ``val/``, ``test/``, the
    last fifth of a built-in dataset's train split), calibrated on the train split of ``calib``. From Python,
    ``data`` and ``calib`` may be iterables of ``(x, y)`` batches (a torch ``DataLoader``)."""
    ds = evaluation_set(graph, data, eval_size, data_root, preprocess, split=split)
    feeds = load_feeds(graph, calib, calib_size, root=data_root, preprocess=preprocess).feeds
    with single_blas_thread():
        inputs = collect_inputs(graph, feeds, [n.name for n in cim_nodes(graph)])
    return AccuracyProxy(graph, macro, ds.x, ds.y, inputs, "agreement" if _is_synthetic(data) else "accuracy",
                         granularity, weight_method, qat_params(graph, macro))


def qat_params(graph: Graph, macro: MacroSpec) -> dict[str, QuantParams]:
    """The trained ``QuantParams`` of the CIM layers of a model that ``cimc qat`` trained (its
    ``metadata["cimc.quant"]``, checked as the quantize pass checks it, on this macro's cells
    and DACs); empty for any other model."""
    text = graph.metadata.get(KEY)
    if text is None:
        return {}
    nodes = cim_nodes(graph)
    couts = {n.name: n.ann[CimLayer].cout for n in nodes}
    check_layer_names(text, {n.name: n.op for n in graph.nodes}, couts)
    return {name: with_macro_widths(name, q, macro) for name, q in parse_qat(text, couts).items()}


def held_out(proxy: AccuracyProxy, graph: Graph, data: str | Path | object, *, eval_size: int | None,
             data_root: str | None, preprocess: Preprocess = DEFAULT) -> AccuracyProxy | None:
    """A proxy on the test split of ``data`` sharing ``proxy``'s calibration (the same steps for
    the same bits), to report the chosen configuration on samples the search never scored;
    ``None`` where ``data`` has no distinct test split (an unsplit path, Python batches)."""
    if not isinstance(data, str | Path) or not has_splits(data):
        return None
    ds = evaluation_set(graph, data, eval_size, data_root, preprocess, split="test")
    test = AccuracyProxy(proxy.graph, proxy.macro, ds.x, ds.y, proxy.inputs, proxy.metric, proxy.granularity,
                         proxy.weight_method, proxy.qat)
    test._quant = proxy._quant  # one calibration per (layer, bits), shared
    return test


def _is_synthetic(data: object) -> bool:
    return isinstance(data, str) and data == "synthetic"
