"""The integer form of a CIM layer in ``model.cim.onnx``: the DAC is a ``QuantizeLinear`` to
uint8 and the macro with its ADC is one ``QLinearConv``, whose requantization is the ADC.

For layer ``L`` reading ``x`` (``z = −lo``: 0 for unsigned input codes, ``2^(b−1) − 1`` for
narrow signed ones, so the levels run from 0)::

    L/input_levels   = Clip(QuantizeLinear(x, S_A, z), z + lo, z + hi)     uint8: codes + z
    L/segment_levels = Gather(input_levels, index)                          (as in the float form)
    L/adc_levels_raw = QLinearConv(levels, 1, z, cells, 1, 0, S_ADC, 128)   uint8, group = S·G
    L/adc_levels     = Clip(adc_levels_raw, 128 − M, 128 + M)
    L/adc_codes      = DequantizeLinear(Reshape(adc_levels, [-1, S, Cout, Ho, Wo]), 1, 128)

then the adder tree and the output scale as in the float form (``cimc.lowering.layer``).

Why it is exact, term by term:

* ``QuantizeLinear`` is ``saturate(rint(x / S_A) + z)`` with one float32 division, ties to
  even, the zero point added after rounding (the ONNX formula; onnxruntime's MLAS kernels and
  onnx's reference evaluator both): ``Round(Div)`` bit for bit, shifted by ``z``;
* ``QLinearConv`` accumulates ``acc = Σ (level − z)·cell`` in int32, exactly the bitline's
  partial sum (``|acc| < 2^24``, ``quantize.check_bits``); it pads with ``z``, a zero code;
* its output is ``saturate(rint(acc·μ) + 128)`` with ``μ = fl(fl(1·1) / S_ADC) = fl(1/S_ADC)``:
  onnxruntime rounds the float32 product ``fl(acc·μ)``, onnx's reference evaluator the exact one
  (float64). The ADC is ``Clip(rint(fl(acc / S_ADC)), −M, M)``. A multiplication by ``fl(1/S)``
  is not a division; ``requantization_is_exact`` proves, per layer at compile time, that the
  three agree after the clip for every integer ``acc``; a layer where they do not keeps the
  float form. So does a bit-sliced layer, an ADC of more than 8 bits or with a step per
  channel, or codes wider than 8 bits (``integer_form``);
* on x86 CPUs without VNNI (AVX2, AVX-512F), onnxruntime's u8s8 kernels add each pair of
  products ``level·cell`` in int16 with saturation (``vpmaddubsw``; onnxruntime's quantization
  guide warns of it), exact while ``2·(hi − lo)·max|cell| ≤ 32767``: 4-bit cells take any
  8-bit codes, 8-bit cells at most 7-bit unsigned ones; a layer past it keeps the float form.

The integer convolution runs on onnxruntime's u8s8 kernels, two to three times faster than the
float one on this project's machines, and every tensor between the DAC and the adder tree is
one byte per value. ``L/input_codes`` is ``DequantizeLinear(L/input_levels, 1, z)`` when asked
for (``cimc.lowering.model.expose``); ``cimc.lowering.expand`` rewrites every integer layer back
into the float form (``cimc export-qdq`` starts from it).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
from onnx import ModelProto, NodeProto, helper, numpy_helper

from cimc.lowering.sliced import is_sliced
from cimc.quant import numerics, slicing
from cimc.quant.cim_layer import CimSpec

if TYPE_CHECKING:
    from cimc.lowering.layer import LayerEmitter

#: The ADC codes' zero point in the uint8 levels ``QLinearConv`` writes.
ADC_ZERO = 128
#: Largest error of a float32 quotient or product near the codes ``|c| ≤ 128`` (module doc).
_QUOTIENT_ERROR = 2.0 ** -16
#: Largest sum of two products ``level·cell`` that int16 holds (module doc, ``vpmaddubsw``).
_PAIR_LIMIT = 32767


def integer_form(spec: CimSpec) -> bool:
    """Whether layer ``spec`` is lowered in the integer form (module doc)."""
    q = spec.q
    if is_sliced(spec) or q.adc_bits > 8 or q.a_bits > 8 or q.w_bits > 8:
        return False
    lo, hi = numerics.code_range(q.a_bits, q.a_signed)
    if 2 * (hi - lo) * slicing.code_max(q.w_bits, q.cell_bits, q.w_digits) > _PAIR_LIMIT:
        return False
    step = np.asarray(q.adc_step, np.float32).reshape(-1)
    return step.size == 1 and requantization_is_exact(step[0], numerics.signed_max(q.adc_bits))


def requantization_is_exact(step: np.float32, m: int) -> bool:
    """``Clip(rint(r(a)), −M, M) = Clip(rint(fl(a / S)), −M, M)`` for every integer ``a`` and
    both requantizations ``r(a) = fl(a·μ)`` and ``r(a) = a·μ`` (exact), ``μ = fl(1/S)``.

    All three quantities are non-decreasing in ``a`` and lie within ``2^−16`` of ``a / S``
    while ``|a / S| ≤ M + 1 ≤ 128`` (each is off by at most two float32 roundings, relative
    ``2^−24`` each). So they round alike unless ``a / S`` is that close to a rounding edge
    ``k + ½``; past ``±(M + ½)`` all clip to ``±M``. Hence checking the integers within
    ``S·2^−16 + 1`` of every edge ``(k + ½)·S``, ``−M − 1 ≤ k ≤ M``, checks them all."""
    s = np.float32(step)
    if not (np.isfinite(s) and s > 0):
        return False
    mu = np.float32(1) / s
    width = int(np.ceil(float(s) * _QUOTIENT_ERROR)) + 1
    edges = (np.arange(-m - 1, m + 1, dtype=np.float64) + 0.5) * float(s)
    acc = np.unique(np.rint(edges)[:, None] + np.arange(-width, width + 1)[None, :])
    acc = acc[np.abs(acc) < 2 ** 24]
    division = np.rint(acc.astype(np.float32) / s)
    product = np.rint(acc.astype(np.float32) * mu)
    exact = np.rint(acc * np.float64(mu))
    want = np.clip(division, -m, m)
    return bool(np.array_equal(np.clip(product, -m, m), want) and np.array_equal(np.clip(exact, -m, m), want))


def emit_integer(e: LayerEmitter) -> str:
    """Append layer ``e``'s integer form up to its ADC codes (module doc); their name."""
    spec, q = e.spec, e.spec.q
    lo, hi = numerics.code_range(q.a_bits, q.a_signed)
    zero = -lo
    level_zero = e.const("input_levels_zero", np.uint8(zero))
    doc = dac_doc(q.a_bits, q.a_signed)
    raw = e.op("QuantizeLinear", [e.node.inputs[0], e.const("input_levels_step", np.float32(q.a_step)), level_zero],
               "input_levels_unclipped", doc)
    bounds = [e.const("input_levels_min", np.uint8(lo + zero)), e.const("input_levels_max", np.uint8(hi + zero))]
    levels = e.op("Clip", [raw, *bounds], "input_levels", doc)
    conv = e.grouped_conv(spec.codes(), np.int8)
    levels = e.segment_inputs(e.as_conv_input(levels), conv, "segment_levels")
    unit = e.const("unit", np.float32(1))
    adc_zero = e.const("adc_levels_zero", np.uint8(ADC_ZERO))
    step = np.float32(np.asarray(q.adc_step, np.float32).reshape(()))
    inputs = [levels, unit, level_zero, e.const("cell_codes", conv.weight), unit, e.const("cells_zero", np.int8(0)),
              e.const("adc_step", step), adc_zero]
    raw = e.op("QLinearConv", inputs, "adc_levels_raw", json.dumps(e.document(), sort_keys=True),
               **e.conv_attributes(conv))
    m = numerics.signed_max(q.adc_bits)
    doc = adc_doc(q.adc_bits)
    limits = [e.const("adc_levels_min", np.uint8(ADC_ZERO - m)), e.const("adc_levels_max", np.uint8(ADC_ZERO + m))]
    by_segment = e.by_segment(e.op("Clip", [raw, *limits], "adc_levels", doc), "adc_levels_by_segment")
    return e.op("DequantizeLinear", [by_segment, unit, adc_zero], "adc_codes", doc)


def dac_doc(bits: int, signed: bool) -> str:
    """The documentation string of a DAC's nodes (both forms)."""
    return f"DAC: {bits}-bit {'signed' if signed else 'unsigned'} input codes"


def adc_doc(bits: int) -> str:
    """The documentation string of an ADC's nodes (both forms)."""
    return f"ADC: {bits}-bit codes of every segment's partial sum"


def input_codes(model: ModelProto, layer: str, produced: set[str]) -> list[NodeProto]:
    """The node computing ``L/input_codes`` from an integer layer's levels (``produced``: the
    model's node outputs), its unit scale added to ``model``; none for a float-form layer,
    which holds the tensor itself."""
    levels = f"{layer}/input_levels"
    if levels not in produced:
        return []
    unit = f"{layer}/input_codes_unit"
    model.graph.initializer.append(numpy_helper.from_array(np.asarray(np.float32(1)), unit))
    return [helper.make_node("DequantizeLinear", [levels, unit, f"{layer}/input_levels_zero"],
                             [f"{layer}/input_codes"], name=f"{layer}/input_codes:DequantizeLinear")]
