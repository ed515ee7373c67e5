"""The QAT flow (paper Sec. II.D, Fig. 6): optional float training, phase 1, phase 2, export.

    graph ─module_from_graph─▶ IRModule ─(float)─▶ phase 1: LSQ S_W, S_A; BN folded
          ─▶ phase 2: S_W, S_A frozen, S_ADC from partial-sum statistics, ADC in the loop
          ─▶ export: folded weights + ``cimc.quant`` step sizes (``cimc.train.export``)

Every phase switch (calibration included) happens on the bare module, outside DDP; the
trainer — ours (``cimc.train.trainer.fit``) or the user's ``package.module:function`` —
then trains what ``requires_grad``. ``phases="1"`` still calibrates ``S_ADC`` at the end
(without ADC-aware training), so the exported file always carries every step size.
A checkpoint file, when given, is resumed from: a phase-2 checkpoint skips phase 1.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from cimc.errors import UsageError
from cimc.ir.graph import Graph
from cimc.train.calibrate import prepare_phase
from cimc.train.checkpoint import read_meta
from cimc.train.datasets import TrainData
from cimc.train.layer import QuantConfig
from cimc.train.module import IRModule, module_from_graph
from cimc.train.trainer import DEFAULT_LR, Trainer, fit

log = logging.getLogger(__name__)

PHASE_CHOICES = ("1", "2", "both")


@dataclass
class QatOptions:
    """What ``cimc qat`` can be told; ``lr`` maps a phase to its learning rate (paper defaults)."""

    phases: str = "both"
    epochs: int = 10
    phase2_epochs: int | None = None
    float_epochs: int = 0
    lr: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LR))
    config: QuantConfig = field(default_factory=QuantConfig)
    trainer: Trainer = fit
    checkpoint: Path | None = None
    calibration_size: int = 256
    seed: int = 0
    progress: bool = True


@dataclass
class QatResult:
    module: IRModule
    metrics: dict[str, dict[str, float]]


def load_trainer(spec: str) -> Trainer:
    """``package.module:function`` → the callable (a ``UsageError`` when it cannot be found)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"bad --trainer '{spec}'", hint="use package.module:function")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"cannot load trainer '{spec}': {exc}") from exc
    if not callable(fn):
        raise UsageError(f"trainer '{spec}' is not callable")
    trainer: Trainer = fn
    return trainer


def _phase_plan(options: QatOptions) -> list[str]:
    """The phases to run: ``--phase``'s, after a float phase with ``--float-epochs``; a checkpoint
    of a later phase skips the earlier ones. A checkpoint of a phase this run would not train is
    refused: the run would overwrite it with another phase's state."""
    if options.phases not in PHASE_CHOICES:
        raise UsageError(f"unknown --phase '{options.phases}'; choose one of {', '.join(PHASE_CHOICES)}")
    plan = {"1": ["1"], "2": ["2"], "both": ["1", "2"]}[options.phases]
    ckpt = options.checkpoint
    resumed = read_meta(ckpt).get("phase") if ckpt is not None and ckpt.is_file() else None
    if resumed == "2" and "2" in plan:
        return ["2"]
    plan = plan if options.float_epochs == 0 or resumed in ("1", "2") else ["float", *plan]
    if resumed is not None and resumed not in plan:
        raise UsageError(f"checkpoint {ckpt} holds phase {resumed} training, which --phase {options.phases} "
                         f"would overwrite", hint=f"resume it with --phase {'both' if resumed == '1' else resumed} "
                         "(with --float-epochs for a float checkpoint), or pass another --resume file")
    return plan


def _train(module: IRModule, data: TrainData, phase: str, options: QatOptions) -> dict[str, float]:
    epochs = options.float_epochs if phase == "float" else options.epochs
    if phase == "2" and options.phase2_epochs is not None:
        epochs = options.phase2_epochs
    log.info("phase %s: %d epochs at lr %g", phase, epochs, options.lr[phase])
    metrics = options.trainer(module, data, phase, epochs=epochs, lr=options.lr[phase], progress=options.progress,
                              checkpoint=options.checkpoint, seed=options.seed)
    module.cpu()
    return dict(metrics)


def run_qat(graph: Graph, data: TrainData, options: QatOptions) -> QatResult:
    """Train ``graph`` through the requested phases; the module ends calibrated for export."""
    nonneg = frozenset(graph.inputs) if data.nonnegative() else frozenset()
    module = module_from_graph(graph, options.config, nonnegative_inputs=nonneg)
    calib = data.calibration_batch(options.calibration_size)
    metrics: dict[str, dict[str, float]] = {}
    for phase in _phase_plan(options):
        if phase != "float":
            prepare_phase(module, phase, calib)
        metrics[phase] = _train(module, data, phase, options)
    if "2" not in metrics:
        prepare_phase(module, "2", calib)
    return QatResult(module, metrics)
