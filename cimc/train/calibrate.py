"""Initial step sizes from statistics, and the phase switch ``prepare_phase``.

* Weights (LSQ, Esser et al.): ``S_W = 2·mean|W'|/√Qp`` of the BN-folded weight ``W'``,
  per layer or per output column. Naive post-training quantization uses ``max|W'|/Qp``.
* Inputs: ``S_A = 2·mean|a|/√Qp`` over a calibration batch of the layer's float input
  (``max|a|/Qp`` naive).
* ADC (phase 2): the integer partial sums ``p_s`` of every segment are recorded with the
  phase-1 steps, and ``S_ADC`` minimises the mean squared ADC error
  ``E[(S·clip(round(p/S), ±Qp) − p)²]`` over the candidates ``S = max|p|·f/Qp``,
  ``f ∈ {1/64, …, 1}`` (per layer, or per output column over all its segments); naive PTQ
  uses ``f = 1`` (the full partial-sum range).

Calibration runs the module in eval mode without gradients; a step that is already
initialised (its ``initialized`` buffer, e.g. restored from a checkpoint) is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from cimc.errors import UsageError
from cimc.train.layer import CimQuantLayer
from cimc.train.module import IRModule
from cimc.train.quant import MIN_STEP, StepQuantizer, lsq_init

log = logging.getLogger(__name__)

METHODS = ("lsq", "max")
_FRACTIONS = torch.arange(1, 65, dtype=torch.float32) / 64.0
_MAX_ELEMENTS = 1 << 17  # partial sums per layer the search looks at (evenly spaced subsample)


def max_init(x: torch.Tensor, qp: int, channels: int = 1) -> torch.Tensor:
    """``max|x|/Qp`` per layer or per leading-axis channel (naive min-max PTQ)."""
    amax = x.detach().abs().reshape(channels, -1).amax(dim=1)
    return (amax / qp).clamp_min(MIN_STEP).to(torch.float32)


def _init(q: StepQuantizer, x: torch.Tensor, method: str, force: bool) -> None:
    if bool(q.initialized) and not force:
        return
    channels = q.channels
    q.set_step(lsq_init(x, q.bits, q.signed, channels) if method == "lsq" else max_init(x, q.qp, channels))


@torch.no_grad()
def record(module: IRModule, batch: torch.Tensor, phase: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Run ``batch`` through ``module`` in ``phase`` (eval mode) and return every CIM layer's
    (input, BN-folded weight); a Gemm/MatMul's as a 1×1 conv."""
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    saved_phase, saved_mode = module.phase, module.training
    module.phase, module.capture = phase, lambda name, layer, x, w: seen.__setitem__(
        name, (x, module.effective_weights(name, fold=True)[0].reshape(w.shape)))
    try:
        module.eval()
        module(batch.to(next(module.parameters()).device))
    finally:
        module.phase, module.capture = saved_phase, None
        module.train(saved_mode)
    return seen


@torch.no_grad()
def init_weight_and_input_steps(module: IRModule, batch: torch.Tensor, method: str = "lsq",
                                force: bool = False) -> None:
    """Initialise ``S_W`` and ``S_A`` of every CIM layer (BN-folded weights, float inputs)."""
    if method not in METHODS:
        raise UsageError(f"unknown calibration method '{method}'; choose one of {', '.join(METHODS)}")
    for name, (x, w) in record(module, batch, "float").items():
        layer = module.cim_layers()[name]
        _init(layer.w, w, method, force)
        _init(layer.a, x, method, force)


def _columns_first(p: torch.Tensor) -> torch.Tensor:
    """``(N, Ho, Wo, G, S, Cout_g)`` → ``(G, Cout_g, N, Ho, Wo, S)``: output column ``g·Cout_g + o`` first."""
    return p.permute(3, 5, 0, 1, 2, 4)


def mse_adc_step(p: torch.Tensor, bits: int, channels: int) -> torch.Tensor:
    """The candidate step with the least ADC error; ``p`` is ``(N, Ho, Wo, G, S, Cout_g)``."""
    per_col = _columns_first(p).reshape(channels, -1) if channels > 1 else p.reshape(1, -1)
    samples = max(_MAX_ELEMENTS // channels, 256)
    if per_col.shape[1] > samples:
        per_col = per_col[:, torch.linspace(0, per_col.shape[1] - 1, samples).long()]
    qp = (1 << (bits - 1)) - 1
    amax = per_col.abs().amax(dim=1, keepdim=True).clamp_min(1.0)
    best, best_err = amax / qp, torch.full_like(amax, float("inf"))
    for frac in _FRACTIONS:  # a search over 64 candidate steps, vectorised over columns and samples
        step = amax * frac / qp
        err = ((torch.clamp(torch.round(per_col / step), -qp, qp) * step - per_col) ** 2).mean(dim=1, keepdim=True)
        better = err < best_err
        best, best_err = torch.where(better, step, best), torch.where(better, err, best_err)
    return best.reshape(-1).clamp_min(MIN_STEP)


@torch.no_grad()
def init_adc_steps(module: IRModule, batch: torch.Tensor, method: str = "lsq", force: bool = False) -> None:
    """Initialise ``S_ADC`` from the partial sums of ``batch`` under the current phase-1 steps."""
    for name, (x, w) in record(module, batch, "1").items():
        layer: CimQuantLayer = module.cim_layers()[name]
        if bool(layer.adc.initialized) and not force:
            continue
        p = layer.partial_sums(x, w)
        channels = layer.adc.channels
        if method == "max":
            step = max_init(_columns_first(p), layer.adc.qp, channels)
        else:
            step = mse_adc_step(p, layer.adc.bits, channels)
        layer.adc.set_step(step)
        log.debug("%s: S_ADC %s over %d segments", name, step.tolist()[:4], layer.plan.segments)


def prepare_phase(module: IRModule, phase: str, batch: torch.Tensor | None, method: str = "lsq") -> None:
    """Switch ``module`` to ``phase``, first initialising the step sizes it needs from ``batch``."""
    if phase in ("1", "2"):
        _require(module, batch, lambda layer: bool(layer.w.initialized) and bool(layer.a.initialized))
        if batch is not None:
            init_weight_and_input_steps(module, batch, method)
    if phase == "2":
        _require(module, batch, lambda layer: bool(layer.adc.initialized))
        if batch is not None:
            init_adc_steps(module, batch, method)
    module.set_phase_flags(phase)


def _require(module: IRModule, batch: torch.Tensor | None, ready: Callable[[CimQuantLayer], bool]) -> None:
    if batch is None and not all(ready(layer) for layer in module.cim_layers().values()):
        raise UsageError("step sizes are not initialised yet: pass a calibration batch")
