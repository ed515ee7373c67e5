"""Where a compiled model loses accuracy: per CIM layer, the SQNR of its output against the float
model, and that loss split into its four sources.

Two figures per layer, on the same samples:

* ``sqnr_db``, end to end: the compiled model's output of the layer (every layer before it
  quantized too) against the float model's, ``SQNR = 10·log10(Σ y² / Σ (ŷ − y)²)``;
* the layer's own loss: the layer alone, fed the float model's input ``x``, with its
  quantization sources switched on one at a time in the order the hardware applies them::

      y_float   = conv(x, W) + b
      y_weights = S_W · conv(x, w_q) + b                         w_q: the cell codes
      y_dac     = S_W · S_A · Σ_k c_k · p_k + b                  a_q = quantize(x, S_A): DAC codes,
                                                                 p_k = exact partial sums (no ADC)
      y_adc     = s · Σ_k c_k · 2^−m_k · p̂_k + b                p̂_k = ADC codes at the calibrated step
      y_shift   = 2^−k / gain · Σ_k c_k · 2^−m_k · p̂'_k + b      the compiled layer (``run_layer``)

  Each source's noise is the change it makes (``weights = y_weights − y_float``, ``dac =
  y_dac − y_weights``, …), so the four noises add up to the layer's whole error; each is
  reported as ``10·log10(Σ y_float² / Σ noise²)`` and the source of the lowest SQNR is the
  layer's ``dominant`` one. ``local_sqnr_db`` is the layer's whole error.

Units: scale-to-shift may fold a layer's remainder ``r`` into its readers' input steps
(``Shift.fold == "activation"``: the layer outputs ``gain·y``, ``gain = 1/r``, and its readers
quantize with ``S_A·gain``) or into its ADC step (``"adc"``: ``S_ADC' = S_ADC · 2^−k / s``;
``"stream"``, a residual stream's member outputting ``gain·y``: ``S_ADC' = S_ADC · 2^−k / (gain·s)``).
Every figure here is in the float model's units: a layer's input gain is
``g = S_W·S_ADC·S_A / s`` (``s = Shift.exact_scale``, ``S_ADC`` before an ADC fold), its
true input step ``S_A / g``, and its output is divided by its ``gain``; a Clip whose bounds an
activation fold scaled (``ScaledBounds``) runs with its own bounds in the float model, and the
``Mul`` by ``r`` that a ``"lut"`` fold puts before an activation (``ActivationScale``) is the
identity there. The ADC
stage uses the step before the fold, so what an ADC fold costs counts as the shift's.

Everything is vectorised over a chunk of samples (``CHUNK``); nothing loops over pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cimc.ir.annotations import ActivationScale, ScaledBounds
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.quant import numerics, slicing
from cimc.quant.batching import batch_generic, batch_safe, static_batch
from cimc.quant.blas import single_blas_thread
from cimc.quant.cim_layer import CimSpec, cim_spec
from cimc.quant.reference import (
    as_conv_input,
    digital_op,
    im2col,
    is_quantized_cim,
    recombine,
    run_layer,
    segment_matmul,
    sliced_adc,
    sliced_sums,
)

#: The quantization sources, in the order the hardware applies them.
SOURCES = ("weights", "dac", "adc", "shift")
#: Samples run at once (bounds the im2col buffers).
CHUNK = 32


@dataclass(frozen=True)
class LayerLoss:
    """One CIM layer's SQNRs (dB; ``inf`` when exact): end to end, alone, and per source
    (``shift`` is ``None`` without scale-to-shift)."""

    name: str
    sqnr_db: float
    local_sqnr_db: float
    sources_db: dict[str, float | None]

    @property
    def dominant(self) -> str:
        """The source of the lowest SQNR (the largest noise)."""
        return min((s for s, v in self.sources_db.items() if v is not None),
                   key=lambda s: self.sources_db[s] or 0.0)


def db(signal: float, noise: float) -> float:
    """``10·log10(signal / noise)``; ``inf`` for no noise, ``-inf`` for no signal."""
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


def _power(a: np.ndarray) -> float:
    return float(np.square(a, dtype=np.float64).sum())


def _noise(a: np.ndarray, b: np.ndarray) -> float:
    return _power(np.subtract(a, b, dtype=np.float64))


def _channels(v: np.ndarray) -> np.ndarray:
    """A per-layer ``(1,)`` or per-column ``(Cout,)`` factor broadcast over ``(N, Cout, H, W)``."""
    return np.asarray(v, dtype=np.float32).reshape(1, -1, 1, 1)


def true_steps(spec: CimSpec) -> tuple[float, np.ndarray, np.ndarray]:
    """``(S_A / g, S_ADC before an ADC fold, s)``: the layer's input step, ADC step and exact
    output scale in the float model's units (module doc)."""
    q, shift = spec.q, spec.shift
    if shift is None:
        return float(q.a_step), q.adc_step, numerics.output_scale(q.w_step, q.adc_step, q.a_step)
    exact = np.asarray(shift.exact_scale, dtype=np.float64)
    adc = np.asarray(q.adc_step, dtype=np.float64)
    if shift.fold in ("adc", "stream"):  # S_ADC' = S_ADC · 2^−k / (gain·s); gain = 1 for "adc"
        adc = adc * exact * float(shift.gain) / numerics.shift_scale(shift.k).astype(np.float64)
    gain_in = float(np.mean(numerics.output_scale(q.w_step, adc, q.a_step).astype(np.float64) / exact))
    return float(np.float32(q.a_step / gain_in)), adc.astype(np.float32), exact.astype(np.float32)


def stage_outputs(x: np.ndarray, spec: CimSpec) -> dict[str, np.ndarray]:
    """The layer's output on float input ``x`` with the sources switched on one at a time
    (module doc): ``float``, ``weights``, ``dac``, ``adc`` and, with a shift, ``shift``; each
    ``(N, Cout, Ho, Wo)`` (a Gemm/MatMul as ``(L, Cout, 1, 1)``), float32."""
    q, shift = spec.q, spec.shift
    a_step, adc_pre, exact = true_steps(spec)
    x4 = as_conv_input(np.asarray(x, dtype=np.float32), spec)
    codes = spec.codes()
    cols, ho, wo = im2col(x4, spec)  # shared by the float and the weights stage

    def conv(w: np.ndarray) -> np.ndarray:
        """``conv(x, w)`` as ``(N, Cout, Ho, Wo)`` (the segments summed)."""
        p = segment_matmul(cols, w, spec).sum(axis=1, dtype=np.float32)  # (G, M, Cout_g)
        g = p.shape[0]
        return np.ascontiguousarray(p.reshape(g, x4.shape[0], ho, wo, -1).transpose(1, 0, 4, 2, 3)) \
            .reshape(x4.shape[0], spec.cout, ho, wo)

    out = {"float": conv(spec.weight) + _channels(spec.bias)}
    w_scale = np.asarray(q.w_step, dtype=np.float32)
    out["weights"] = numerics.layer_output(conv(codes), w_scale, spec.bias)
    a_q = numerics.quantize(x4, a_step, q.a_bits, q.a_signed)
    p = sliced_sums(a_q, codes, spec)
    exact_weights = slicing.conversion_weights(spec.num_segments, q.a_bits, q.dac_bits, q.w_bits, q.cell_bits)
    total = np.multiply(p, exact_weights.reshape(1, -1, 1, 1, 1), dtype=np.float32).sum(axis=1, dtype=np.float32)
    out["dac"] = numerics.layer_output(total, (w_scale * np.float32(a_step)).astype(np.float32), spec.bias)
    pre = replace(spec, quant=replace(q, a_step=a_step, adc_step=adc_pre))
    out["adc"] = numerics.layer_output(recombine(sliced_adc(p.copy() if shift else p, pre), pre), exact, spec.bias)
    if shift is not None:
        final = replace(spec, quant=replace(q, a_step=a_step))
        scale = (numerics.shift_scale(shift.k) / np.float32(shift.gain)).astype(np.float32)
        out["shift"] = numerics.layer_output(recombine(sliced_adc(p, final), final), scale, spec.bias)
    return out


class _Tally:
    """Signal and noise powers of one layer, summed over chunks."""

    def __init__(self) -> None:
        self.signal = 0.0
        self.end_to_end = 0.0
        self.local = 0.0
        self.sources: dict[str, float | None] = dict.fromkeys(SOURCES)

    def add(self, stages: dict[str, np.ndarray], compiled: np.ndarray) -> None:
        ref = stages["float"]
        self.signal += _power(ref)
        self.end_to_end += _noise(compiled.reshape(ref.shape), ref)
        names = [s for s in SOURCES if s in stages]
        self.local += _noise(stages[names[-1]], ref)
        for before, source in zip(("float", *names), names, strict=False):
            self.sources[source] = (self.sources[source] or 0.0) + _noise(stages[source], stages[before])

    def result(self, name: str) -> LayerLoss:
        return LayerLoss(name, db(self.signal, self.end_to_end), db(self.signal, self.local),
                         {s: None if v is None else db(self.signal, v) for s, v in self.sources.items()})


def float_attrs(node: Node) -> dict[str, Any]:
    """``node``'s attrs in the float model: a Clip scaled by an activation fold (``ScaledBounds``)
    gets its bounds back."""
    bounds = node.ann.get_ann(ScaledBounds)
    return node.attrs if bounds is None else {**node.attrs, "min": bounds.lo, "max": bounds.hi}


def _chunks(graph: Graph, x: np.ndarray) -> Iterator[np.ndarray]:
    """Consecutive chunks of ``x``: ``CHUNK`` samples, or the static batch when the model mixes
    its batch axis (``cimc.quant.batching``; a remainder that is not a whole batch is left out)."""
    size = CHUNK if batch_safe(graph) else static_batch(graph)
    stop = x.shape[0] if size == CHUNK else x.shape[0] - x.shape[0] % size
    for i in range(0, stop, size):
        yield x[i:i + size]


def layer_losses(graph: Graph, x: np.ndarray) -> list[LayerLoss]:
    """Per quantized CIM layer of ``graph`` (topological order), its ``LayerLoss`` on inputs
    ``x`` of the graph's single input: the float and the compiled model run side by side."""
    generic = batch_generic(graph)
    order = generic.topo_order()
    layers = {n.name: cim_spec(generic, n) for n in order if is_quantized_cim(n)}
    tallies = {name: _Tally() for name in layers}
    ran = False
    with single_blas_thread():
        for chunk in _chunks(graph, np.asarray(x, dtype=np.float32)):
            _run_chunk(generic, order, layers, tallies, chunk)
            ran = True
    if not ran:
        return []
    return [tallies[name].result(name) for name in layers]


def _run_chunk(generic: Graph, order: list[Node], layers: dict[str, CimSpec], tallies: dict[str, _Tally],
               x: np.ndarray) -> None:
    """One chunk through both models (``layer_losses``), values freed once no node reads them."""
    fl: dict[str, np.ndarray] = dict(generic.initializers)
    co: dict[str, np.ndarray] = dict(generic.initializers)
    fl[generic.inputs[0]] = co[generic.inputs[0]] = x
    last = {t: step for step, node in enumerate(order) for t in node.inputs}
    for step, node in enumerate(order):
        spec = layers.get(node.name)
        if spec is None:
            args = [t for t in node.inputs if t]
            fl[node.outputs[0]] = fl[args[0]] if ActivationScale in node.ann else \
                digital_op(node.op, [fl[t] for t in args], float_attrs(node))
            co[node.outputs[0]] = digital_op(node.op, [co[t] for t in args], node.attrs)
        else:
            x_float = fl[node.inputs[0]]
            stages = stage_outputs(x_float, spec)
            compiled = run_layer(co[node.inputs[0]], spec).outputs
            gain = spec.shift.gain if spec.shift is not None else 1.0
            tallies[node.name].add(stages, compiled / np.float32(gain))
            fl[node.outputs[0]] = stages["float"].reshape(compiled.shape)
            co[node.outputs[0]] = compiled
        for t in node.inputs:
            if last.get(t) == step and t not in generic.outputs and t not in generic.initializers:
                fl.pop(t, None)
                co.pop(t, None)

