"""The ADC step of least output error after the activation (``--adc-step output``).

quantize picks ``S_ADC`` (and the kinds' exponents ``m_k``) by the squared error of the partial
sums themselves (``quantize.adc_steps``). What the next layer sees is the layer's output after
its activation: with ReLU6 every output below 0 or above 6 reads the same whatever its error,
and bias correction removes each channel's mean error. This refinement keeps the ``m_k`` and
scores the steps ``f · S_ADC`` for ``f ∈ FACTORS`` (``2^(j/8)``, ``j = −4..4``: within ``√2`` of
the MSE step, ``f = 1`` included, so the calibration objective below never gets worse) by

    E(f) = Σ_{m, o} (clip(ŷ_f[m, o] − c·μ_f[o], lo_o, hi_o) − clip(y[m, o], lo_o, hi_o))²

over the layer's calibration inputs (steps below ``min(1, S_ADC)`` are skipped: partial sums are
integers): ``y`` the float layer, ``ŷ_f`` the compiled one
by the contract (``reference.run_layer``), ``μ_f[o]`` the mean of ``ŷ_f − y`` over channel
``o``'s outputs, ``c = 1`` with bias correction (which removes it) and 0 without, and
``[lo_o, hi_o]`` the activation's range in the layer's units (``output_bounds``): ``[0, ∞)`` for
Relu, ``[lo, hi]`` for ``Clip(lo, hi)``, ``[lo / k_o, hi / k_o]`` for equalize's
``Mul(·, k) → Clip(lo, hi)`` (``k > 0``), the whole line otherwise (no activation, or one that
is not a clip: the output's own error). One step per layer or one factor for all columns
(per-column steps keep their ratios).

All calibration inputs are scored, the batch bias correction then corrects on: the mean error
``μ_f`` is removed in-sample, so on a few inputs (32 images of MobileNetV2 were tried) the
objective undervalues clipping and picks steps up to ``2^−½`` finer, which the test data does not
bear out. Cost: the layer run by the contract once per factor (nine times) on its calibration
input, plus its float output, each as large as bias correction's run (``reference.run_layer`` on
the whole input).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cimc.ir.annotations import QuantParams
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.quant.cim_layer import CimSpec
from cimc.quant.reference import as_conv_input, im2col, run_layer, segment_matmul

#: The factors ``2^(j/8)``, ``j = −4..4``, of the MSE step that are scored (module doc), 1 first
#: (a tie keeps the MSE step).
FACTORS = 2.0 ** (np.array([0, -4, -3, -2, -1, 1, 2, 3, 4]) / 8)


def output_bounds(graph: Graph, node: Node) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)``, each ``(Cout,)`` float64: the range the activation after ``node`` keeps of
    each channel, in ``node``'s output units (module doc)."""
    y = node.outputs[0]
    shape = graph.shape(y)
    cout = shape[1] if len(shape) == 4 else shape[-1]
    lo, hi = np.full(cout, -np.inf), np.full(cout, np.inf)
    readers = graph.consumers(y)
    if len(readers) != 1 or y in graph.outputs:
        return lo, hi
    act, k = readers[0], np.ones(cout)
    if act.op == "Mul" and act.inputs[0] == y and act.inputs[1] in graph.initializers:
        factor = graph.initializers[act.inputs[1]].astype(np.float64).reshape(-1)
        after = graph.consumers(act.outputs[0])
        if not (factor > 0).all() or factor.size not in (1, cout) or len(after) != 1 or after[0].op != "Clip":
            return lo, hi
        act, k = after[0], np.broadcast_to(factor, (cout,))
    if act.op == "Relu":
        return np.zeros(cout), hi
    if act.op == "Clip":
        low, high = act.attrs.get("min"), act.attrs.get("max")
        return (lo if low is None else float(low) / k), (hi if high is None else float(high) / k)
    return lo, hi


def float_output(spec: CimSpec, x: np.ndarray) -> np.ndarray:
    """The float layer on ``x`` as ``(M, Cout)`` float64 (``M`` output pixels)."""
    cols, _, _ = im2col(as_conv_input(np.asarray(x, dtype=np.float32), spec), spec)
    p = segment_matmul(cols, spec.weight, spec).sum(axis=1, dtype=np.float64)  # (G, M, Cout_g)
    return p.transpose(1, 0, 2).reshape(p.shape[1], spec.cout) + spec.bias.astype(np.float64)


def _rows(y: np.ndarray, spec: CimSpec) -> np.ndarray:
    """A layer output (``(N, Cout, Ho, Wo)`` or ``(…, Cout)``) as ``(M, Cout)`` float64."""
    if spec.kind == "conv":
        return y.transpose(0, 2, 3, 1).reshape(-1, spec.cout).astype(np.float64)
    return y.reshape(-1, spec.cout).astype(np.float64)


def output_error(spec: CimSpec, x: np.ndarray, want: np.ndarray, bounds: tuple[np.ndarray, np.ndarray],
                 centred: bool) -> float:
    """``E`` of the module doc for ``spec``'s steps (``want``: the float output, ``(M, Cout)``)."""
    got = _rows(run_layer(x, spec).outputs, spec)
    if centred:
        got = got - (got - want).mean(axis=0)
    lo, hi = bounds
    return float(((np.clip(got, lo, hi) - np.clip(want, lo, hi)) ** 2).sum())


def output_adc_step(spec: CimSpec, float_spec: CimSpec, x: np.ndarray, bounds: tuple[np.ndarray, np.ndarray],
                    centred: bool) -> QuantParams:
    """``spec``'s ``QuantParams`` with ``S_ADC`` times the factor of least ``E`` (module doc);
    ``float_spec``: the float layer (before AdaRound or bias correction changed it)."""
    q = spec.q
    want = float_output(float_spec, x)
    floor = min(1.0, float(q.adc_step.min()))  # no finer step than 1 unless the MSE one was (integer sums)
    best: tuple[float, QuantParams] | None = None
    for f in FACTORS:
        step = (q.adc_step.astype(np.float64) * f).astype(np.float32)
        if float(step.min()) < floor:
            continue
        step.flags.writeable = False
        trial = replace(q, adc_step=step)
        err = output_error(replace(spec, quant=trial), x, want, bounds, centred)
        if best is None or err < best[0]:
            best = (err, trial)
    assert best is not None
    return best[1]
