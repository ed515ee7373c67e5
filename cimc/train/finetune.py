"""A short QAT fine-tune of one per-layer bit configuration (what ``cimc search`` calls).

    graph_q, accuracy = finetune(graph, {"conv1": (8, 8, 5), "conv2": (4, 4, 4)}, macro, data, steps=200)

``bits`` maps CIM layers to ``(w_bits, a_bits, adc_bits)`` (or to a dict with any of those
keys); the others take ``default_bits`` (``None``: the macro's cell, DAC and ADC bits).
Layers wider than the macro's cells or DACs are bit-sliced (``cimc.train.sliced``). The
run: calibrate ``S_W``, ``S_A`` (LSQ) on ``calibration_size`` training images, ``phase1``
Adam steps of LSQ at ``lr1``, calibrate ``S_ADC`` on the partial sums of every conversion,
``steps − phase1`` Adam steps of phase 2 at ``lr2`` (cosine schedules; ``phase1`` defaults
to half the steps; ``lr2`` is 1e-3, as short runs diverge at the paper's 1e-2). Returned:
the exported graph with ``cimc.quant`` metadata (ready for the compile pipeline with the
same macro) and the phase-2 test accuracy, which equals the compiled model's (bit-exact).
Deterministic for a seed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cimc.errors import UsageError
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.train.calibrate import prepare_phase
from cimc.train.config import BIT_KEYS, QuantConfig
from cimc.train.datasets import TrainData
from cimc.train.export import export_graph
from cimc.train.module import IRModule, module_from_graph
from cimc.train.trainer import evaluate, train_steps

log = logging.getLogger(__name__)

BitsSpec = Sequence[int] | Mapping[str, int]


@dataclass
class FinetuneOptions:
    """Knobs of ``finetune`` beyond the bits (module doc)."""

    phase1: int | None = None
    lr1: float = 1e-3
    lr2: float = 1e-3  # the paper's 1e-2 suits long runs; a few hundred steps diverge with it
    default_bits: tuple[int | None, int | None, int | None] = (None, None, None)
    granularity: str = "layer"
    tiling: str = "channel"
    map_fc: bool = False
    learn_adc_step: bool = False
    calibration_size: int = 256
    seed: int = 0


@dataclass
class FinetuneResult:
    """The exported graph, its phase-2 test accuracy, the module and the run's figures."""

    graph: Graph
    accuracy: float
    module: IRModule
    metrics: dict[str, float] = field(default_factory=dict)


def layer_bits(bits: Mapping[str, BitsSpec]) -> dict[str, dict[str, int]]:
    """``{layer: (w, a, adc)}`` or ``{layer: {"w_bits": …}}`` → the ``QuantConfig.layer_bits`` form."""
    out: dict[str, dict[str, int]] = {}
    for layer, spec in bits.items():
        if isinstance(spec, Mapping):
            out[layer] = {str(k): v for k, v in spec.items()}
        elif len(spec) == len(BIT_KEYS):
            out[layer] = dict(zip(BIT_KEYS, spec, strict=True))
        else:
            raise UsageError(f"bits of layer '{layer}': expected (w_bits, a_bits, adc_bits), got {spec!r}")
    return out


def finetune_config(bits: Mapping[str, BitsSpec], macro: MacroSpec, options: FinetuneOptions) -> QuantConfig:
    """The ``QuantConfig`` of one bit configuration on ``macro``."""
    w, a, adc = options.default_bits
    return QuantConfig.for_macro(macro, w_bits=w, a_bits=a, adc_bits=adc, layer_bits=layer_bits(bits),
                                 granularity=options.granularity, tiling=options.tiling, map_fc=options.map_fc,
                                 learn_adc_step=options.learn_adc_step)


def finetune_module(graph: Graph, config: QuantConfig, data: TrainData, steps: int,
                    options: FinetuneOptions) -> tuple[IRModule, dict[str, float]]:
    """Phases 1 and 2 for ``steps`` optimizer steps in all; the module ends in phase 2, eval
    mode. Also returns the mean training loss of each phase's last epoch of steps."""
    if steps < 0 or (options.phase1 is not None and options.phase1 < 0):
        raise UsageError(f"fine-tune steps must be ≥ 0, got {steps} (phase 1: {options.phase1})")
    nonneg = frozenset(graph.inputs) if data.nonnegative() else frozenset()
    module = module_from_graph(graph, config, nonnegative_inputs=nonneg)
    calib = data.calibration_batch(options.calibration_size)
    phase1 = steps // 2 if options.phase1 is None else min(options.phase1, steps)
    prepare_phase(module, "1", calib)
    loss1 = train_steps(module, data, phase1, lr=options.lr1, seed=options.seed)
    prepare_phase(module, "2", calib)
    loss2 = train_steps(module, data, steps - phase1, lr=options.lr2, seed=options.seed)
    return module.eval(), {"phase1_loss": loss1, "phase2_loss": loss2}


def finetune_run(graph: Graph, bits: Mapping[str, BitsSpec], macro: MacroSpec, data: TrainData, steps: int = 200,
                 options: FinetuneOptions | None = None) -> FinetuneResult:
    """``finetune`` with everything it knows (``FinetuneResult``)."""
    options = options or FinetuneOptions()
    start = time.perf_counter()
    module, metrics = finetune_module(graph, finetune_config(bits, macro, options), data, steps, options)
    accuracy = evaluate(module, data)
    metrics.update(accuracy=accuracy, seconds=time.perf_counter() - start)
    log.info("fine-tune with %d per-layer bit setting(s), %d steps: accuracy %.4f in %.1f s",
             len(bits), steps, accuracy, metrics["seconds"])
    return FinetuneResult(export_graph(module), accuracy, module, metrics)


def finetune(graph: Graph, bits: Mapping[str, BitsSpec], macro: MacroSpec, data: TrainData, steps: int = 200,
             options: FinetuneOptions | None = None) -> tuple[Graph, float]:
    """Fine-tune ``graph`` for the per-layer ``bits`` on ``macro`` (module doc): returns the
    exported graph (folded weights, ``cimc.quant``) and the phase-2 test accuracy."""
    result = finetune_run(graph, bits, macro, data, steps, options)
    return result.graph, result.accuracy
