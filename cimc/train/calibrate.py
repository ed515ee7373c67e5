"""Initial step sizes from statistics, and the phase switch ``prepare_phase``.

* Weights (LSQ, Esser et al.): ``S_W = 2·mean|W'|/√Qp`` of the BN-folded weight ``W'``,
  per layer or per output column. Naive post-training quantization uses ``max|W'|/Qp``.
* Inputs: ``S_A = 2·mean|a|/√Qp`` over a calibration batch of the layer's float input
  (``max|a|/Qp`` naive).
* ADC (phase 2): the integer partial sums of every conversion are recorded with the phase-1
  steps and, as the compile path does (``cimc.passes.quantize.adc_steps``), ``S_ADC`` is the
  MSE-optimal step of ``cimc.quant.step_search.mse_step`` (``max|p|/Qp`` naive), at least 1,
  over the sums of all segments on at most ``cimc.quant.calibration.MAX_PIXELS`` output pixels
  (the compile path's seeded random subset, ``step_search.subsample``) — per layer, or per
  output column. One function for both paths: given the same batch, QAT and compile calibrate
  the same step.
* A bit-sliced layer gets one such step per kind of conversion ``(t, j)``; then
  ``cimc.quant.slicing.fit_shifts`` turns them into the layer's ``S_ADC`` (the coarsest, per layer
  or per column) and exponents ``m_{t,j}`` (``step_{t,j} ≈ S_ADC·2^−m_{t,j}``), clipped to
  ``cimc.train.sliced.max_shift`` so float32 stays exact. The lower weight digits are
  unsigned with large, always-positive sums; the signed top digit's sums are small — one
  shared step fitted to the former rounds the latter to 0.

* Weight pool (``cimc qat --weight-pool``): before the first quantized phase the pool is
  built by binary k-means on the BN-folded weights (``cimc.train.pool``), and each layer's
  ``S_W`` starts at its least-squares scale ``α`` (instead of LSQ's initial step).

Calibration runs the module in eval mode without gradients; a step that is already
initialised (its ``initialized`` buffer, e.g. restored from a checkpoint) is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from cimc.errors import UsageError
from cimc.quant import slicing
from cimc.quant.calibration import MAX_PIXELS
from cimc.quant.step_search import mse_step, subsample
from cimc.train import sliced
from cimc.train.layer import CimQuantLayer
from cimc.train.module import IRModule
from cimc.train.quant import MIN_STEP, StepQuantizer, lsq_init

log = logging.getLogger(__name__)

METHODS = ("lsq", "max")


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


def conversions(p: torch.Tensor) -> torch.Tensor:
    """An unsliced layer's partial sums ``(N, Ho, Wo, G, S, Cout_g)`` in the compile path's
    layout ``(N·Ho·Wo, S, Cout)`` (``cimc.quant.calibration.partial_sums``; column ``g·Cout_g + o``)."""
    n, ho, wo, g, s, cout_g = p.shape
    return p.permute(0, 1, 2, 4, 3, 5).reshape(n * ho * wo, s, g * cout_g)


def kind_steps(p: torch.Tensor, layer: CimQuantLayer, method: str) -> np.ndarray:
    """The best step of every kind of conversion ``(T·S, 1 or Cout)`` (one kind unsliced) from
    the sums ``p`` ``(M, Seg·T·S, Cout)`` (module doc); at least 1."""
    kinds = layer.bits.a_slices * layer.bits.w_slices
    index = subsample(p.shape[0], MAX_PIXELS)  # the compile path's pixels (bounded search cost)
    if index is not None:
        p = p[torch.from_numpy(index).to(p.device)]
    by_kind = p.reshape(p.shape[0], -1, kinds, p.shape[2]).cpu().numpy()
    axis = 2 if layer.adc.channels > 1 else None
    if method == "max":
        amax = np.abs(by_kind).max(axis=(0, 1) if axis else (0, 1, 3))  # (kinds, Cout) or (kinds,)
        return np.maximum(amax / layer.adc.qp, 1.0).reshape(kinds, -1).astype(np.float32)
    return np.stack([mse_step(by_kind[:, :, k], layer.adc.bits, True, axis=axis, min_step=1.0)
                     for k in range(kinds)])


def init_sliced_adc(layer: CimQuantLayer, p: torch.Tensor, method: str) -> torch.Tensor:
    """Set ``S_ADC`` and the exponents ``m`` of a sliced layer (``slicing.fit_shifts``)."""
    base, shift = slicing.fit_shifts(kind_steps(p, layer, method), sliced.max_shift(layer.bits, layer.plan))
    step = torch.from_numpy(base).to(p.device)
    layer.adc.set_step(step)
    layer.set_adc_shift(torch.from_numpy(shift).to(p.device))
    return step


@torch.no_grad()
def init_adc_steps(module: IRModule, batch: torch.Tensor, method: str = "lsq", force: bool = False) -> None:
    """Initialise ``S_ADC`` (and a sliced layer's ``m``) from the partial sums of ``batch``
    under the current phase-1 steps."""
    for name, (x, w) in record(module, batch, "1").items():
        layer: CimQuantLayer = module.cim_layers()[name]
        if bool(layer.adc.initialized) and not force:
            continue
        p = layer.partial_sums(x, w)
        if layer.bits.sliced:
            step = init_sliced_adc(layer, p, method)
            log.debug("%s: S_ADC %s, m %s", name, step.tolist()[:4], layer.adc_shift)
            continue
        step = torch.from_numpy(kind_steps(conversions(p), layer, method)[0]).to(p.device)
        layer.adc.set_step(step)
        log.debug("%s: S_ADC %s over %d segments", name, step.tolist()[:4], layer.plan.segments)


@torch.no_grad()
def init_pool(module: IRModule) -> None:
    """Build the module's weight pool from its BN-folded weights and set every ``S_W`` to its
    layer's ``α`` (module doc); nothing when there is no pool or it is built (a checkpoint's)."""
    pool = module.weight_pool
    if pool is None or bool(pool.built):
        return
    layers = module.cim_layers()
    matrices = []
    for name in layers:
        w = module.effective_weights(name, fold=True)[0]
        matrices.append(w.detach().cpu().reshape(w.shape[0], -1).numpy().astype(np.float32))
    for layer, alpha in zip(layers.values(), pool.build(matrices), strict=True):
        layer.w.set_step(torch.from_numpy(alpha).to(layer.w.log_step.device))


def prepare_phase(module: IRModule, phase: str, batch: torch.Tensor | None, method: str = "lsq") -> None:
    """Switch ``module`` to ``phase``, first initialising the step sizes it needs from ``batch``
    (and building its weight pool, if it has one)."""
    if phase in ("1", "2"):
        init_pool(module)
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
