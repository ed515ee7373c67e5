"""One CIM layer lowered to standard ONNX ops: the integer form (``cimc.lowering.integer``:
``QuantizeLinear`` and one ``QLinearConv`` whose requantization is the ADC) where the layer
allows it, else the float form below, exact on integer-valued float32. Both end in the adder
tree ``L/sums`` and the output scale.

For layer ``L`` reading ``x``, the float form (tensor names are part of the contract; tests
and users fetch them as extra outputs)::

    L/input_codes  = Clip(Round(Div(x, S_A)), lo, hi)            DAC codes
    L/cells        = Cast<float>(int8 codes (S·G·Cout_g, C, kh, kw))   the macro columns
    L/bitlines     = Conv(Gather(codes, index), cells, group=S·G)   exact partial sums
    L/bitlines_saturated = Clip(bitlines, −U, U)                 ADC full scale (scalar S_ADC)
    L/partial_sums = Reshape(…, [-1, S, Cout, Ho, Wo])           (``[-1, S, Cout]`` for Gemm)
    L/adc_codes    = DequantizeLinear(QuantizeLinear(partial_sums, S_ADC, int8 0), 1)
    L/sums         = ReduceSum(adc_codes, axis 1)                 the adder tree, P (Squeeze: one segment)
    y              = Add(Mul(P, scale), b')                       scale = 2^−k or S_W·S_ADC·S_A

The ADC is ``Clip(rint(p / S_ADC), −m, m)`` (``LayerEmitter.adc``). ``U = fl(m·S_ADC)`` has
``rint(U / S_ADC) = m`` (``adc_full_scale``), so clipping the sums to ``±U`` before the division
gives the same codes as clipping the codes to ``±m`` after it, and onnxruntime fuses that
``Clip`` into the convolution; ``QuantizeLinear`` to int8 is ``saturate(rint(p / S_ADC))`` with
one float32 division and ties to even (``Round(Div)`` bit for bit, checked by
``tests/test_adc_lowering.py``), one parallel pass instead of two, and cannot saturate inside
``±m ≤ 127``. A per-channel ``S_ADC`` (``Clip`` takes scalar bounds) quantizes per axis 2 and
clips the codes to ``±m`` after ``DequantizeLinear``; an ADC wider than 8 bits or a bit-sliced
layer keeps ``Clip(Round(Div(partial_sums, step)), −m, m)``.

(``cimc.quant.segments`` explains the grouped convolution.) A bit-sliced layer
(``w_slices`` or ``a_slices`` > 1) feeds its ``T`` input digits as ``T`` batches to the same
grouped conv over ``S`` digit columns per channel and recombines the ``Seg·T·S`` ADC codes by
shift-add (``cimc.lowering.sliced``); an unsliced layer's graph is unchanged. ``Round`` is
round-half-to-even like ``np.rint``; every division is one float32 ``Div``. The convolution's
products and partial sums are integers below ``2^24`` (``quantize.check_bits``), exact in
float32 whatever order onnxruntime sums them in, so its output needs no rounding. A segment's
``C`` channels are padded to a multiple of a SIMD block (``segments.CHANNEL_BLOCKS``; zero
cells) so that onnxruntime runs the grouped convolution in its blocked layout. The Conv node's
``doc_string`` records segments, macros, bitline ranges, ADC bits and the shift.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from onnx import TensorProto

from cimc.frontend.onnx_export import ExportBuilder
from cimc.ir.annotations import BitlinePlacement
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.lowering.integer import adc_doc, dac_doc, emit_integer, integer_form
from cimc.lowering.sliced import (
    adc_steps,
    conversions_shape,
    input_digits,
    is_sliced,
    shift_add,
    weight_digit_codes,
)
from cimc.lowering.writer import NodeWriter
from cimc.quant import numerics
from cimc.quant.cim_layer import CimSpec, cell_dtype
from cimc.quant.segments import CHANNEL_BLOCKS, SegmentConv, segment_conv


class LayerEmitter(NodeWriter):
    """Appends the nodes and constants of one CIM layer to a ``ExportBuilder``: the integer
    form (``cimc.lowering.integer``) where ``integer`` and the layer allow it, else the float
    form (module doc)."""

    def __init__(self, builder: ExportBuilder, graph: Graph, node: Node, spec: CimSpec, integer: bool = True) -> None:
        super().__init__(builder, node.name)
        self.graph, self.node, self.spec = graph, node, spec
        self.integer = integer and integer_form(spec)

    def emit(self) -> None:
        if self.integer:
            self.output(self.adder_tree(emit_integer(self)))
            return
        q = self.spec.q
        lo, hi = numerics.code_range(q.a_bits, q.a_signed)
        codes = self.quantizer(self.node.inputs[0], np.float32(q.a_step), lo, hi, "input_codes",
                               dac_doc(q.a_bits, q.a_signed))
        psums = self.partial_sums(codes)
        sliced = is_sliced(self.spec)
        step = adc_steps(self.spec, len(self.spatial())) if sliced else self._per_channel(q.adc_step, 2)
        adc = self.adc(psums, step, "adc_codes")
        self.output(shift_add(self, adc) if sliced else self.adder_tree(adc))

    def adder_tree(self, adc: str) -> str:
        """``L/sums``: the sum of the segments' ADC codes (axis 1); with one segment the codes
        themselves (``Squeeze``, which onnxruntime runs without a copy, not a ``ReduceSum``)."""
        axis = self.const("segment_axis", np.array([1], np.int64))
        if self.spec.num_segments == 1:
            return self.op("Squeeze", [adc, axis], "sums", "adder tree: one segment, P = its ADC codes")
        return self.op("ReduceSum", [adc, axis], "sums", "adder tree: P = sum of the segments' ADC codes", keepdims=0)

    def adc(self, psums: str, step: np.ndarray, out: str) -> str:
        """The ADC codes ``Clip(rint(p / step), −M, M)`` of ``psums``. With ``adc_by_quantize``:
        ``DequantizeLinear(QuantizeLinear(p, step, int8 0), 1)``, then ``Clip`` unless ``saturate``
        clipped the sums already; else ``Clip(Round(Div(p, step)), −M, M)``."""
        q = self.spec.q
        doc = adc_doc(q.adc_bits)
        m = numerics.signed_max(q.adc_bits)
        if not self.adc_by_quantize():
            return self.quantizer(psums, step, -m, m, out, doc)
        return self.quantized_adc(psums, np.asarray(step, np.float32).reshape(-1), m, self.full_scale() is not None,
                                  out, doc)

    def adc_by_quantize(self) -> bool:
        """Unsliced, ADC codes of at most 8 bits: onnxruntime's ``QuantizeLinear`` to int8 is
        ``saturate(rint(p / step))`` with one float32 division and ties to even, the value of
        ``Round(Div(p, step))`` wherever ``|rint| ≤ 127``, so ``Clip(·, −M, M)`` after it (or
        ``saturate`` before it) gives the ADC codes exactly, in one parallel pass less."""
        return not is_sliced(self.spec) and self.spec.q.adc_bits <= 8

    def saturate(self, raw: str, out: str) -> str:
        """``Clip(raw, −U, U)`` (``full_scale``) right after the sums' producer, which
        onnxruntime fuses into it; ``raw`` when there is no scalar full scale."""
        return self.full_scale_clip(raw, self.full_scale(), out)

    def partial_sums(self, codes: str) -> str:
        spec = self.spec
        codes = self.as_conv_input(codes)
        sliced = is_sliced(spec)
        if sliced:
            codes = input_digits(self, codes)
        cells_codes = weight_digit_codes(spec) if sliced else spec.codes()
        width = (spec.q.cell_bits or spec.q.w_bits) + 1 if sliced else spec.q.w_bits  # unsigned lower digits
        conv = self.grouped_conv(cells_codes, cell_dtype(width))
        codes = self.segment_inputs(codes, conv, "segment_inputs")
        cells = self.op("Cast", [self.const("cell_codes", conv.weight)], "cells",
                        to=TensorProto.FLOAT)
        raw = self.op("Conv", [codes, cells], "bitlines", json.dumps(self.document(), sort_keys=True),
                      **self.conv_attributes(conv))
        if sliced:
            return conversions_shape(self, raw)
        return self.by_segment(self.saturate(raw, "bitlines_saturated"), "partial_sums")

    def conv_attributes(self, conv: SegmentConv) -> dict[str, Any]:
        """The grouped convolution's ONNX attributes (``Conv`` and ``QLinearConv`` alike)."""
        spec = self.spec
        return {"group": conv.groups, "kernel_shape": list(spec.kernel), "pads": list(spec.pads),
                "strides": list(spec.strides), "dilations": list(spec.dilations)}

    def by_segment(self, x: str, out: str) -> str:
        """The convolution's ``S·Cout`` channels as ``(N, S, Cout, Ho, Wo)`` (``(L, S, Cout)``)."""
        shape = [-1, self.spec.num_segments, self.spec.cout, *self.spatial()]
        return self.op("Reshape", [x, self.const("segments_shape", np.array(shape, np.int64))], out)

    def as_conv_input(self, codes: str) -> str:
        """A Gemm's ``(L, K)`` input as the ``(L, K, 1, 1)`` of a ``1 × 1`` convolution."""
        if self.spec.kind != "gemm":
            return codes
        return self.op("Reshape", [codes, self.const("as_conv", np.array([-1, self.spec.cin_g, 1, 1], np.int64))],
                       "conv_input")

    def grouped_conv(self, cells_codes: np.ndarray, dtype: type[np.signedinteger]) -> SegmentConv:
        """The layer's grouped convolution over all segments (``segment_conv``) of the cells
        ``cells_codes`` (``(Cout, …)``, stored as ``dtype``), segments padded to SIMD blocks."""
        spec = self.spec
        matrix = cells_codes.reshape(cells_codes.shape[0], -1).astype(dtype)  # integer codes
        return segment_conv(matrix, spec.bounds, spec.cin_g, spec.groups, spec.kernel, align=CHANNEL_BLOCKS)

    def segment_inputs(self, codes: str, conv: SegmentConv, out: str) -> str:
        """The channels each segment reads (``Gather``), or ``codes`` when that is all of them."""
        if conv.index is None:
            return codes
        return self.op("Gather", [codes, self.const("segment_channels", conv.index)], out, axis=1)

    def full_scale(self) -> np.float32 | None:
        """``U`` such that ``Clip(p, −U, U)`` before the ADC's division gives the same codes as
        ``Clip(rint(p / S_ADC), −M, M)`` after it (``adc_full_scale``); ``None`` without
        ``adc_by_quantize`` or with a per-channel ADC step (``Clip`` takes scalar bounds only)."""
        q = self.spec.q
        step = np.asarray(q.adc_step, np.float32).reshape(-1)
        if not self.adc_by_quantize() or step.size != 1:
            return None
        return adc_full_scale(step[0], numerics.signed_max(q.adc_bits))

    def spatial(self) -> list[int]:
        """``[Ho, Wo]`` of a conv layer's output, ``[]`` for a Gemm."""
        return list(self.graph.shape(self.node.outputs[0])[2:]) if self.spec.kind == "conv" else []

    def conv_input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the codes the grouped conv reads (``(K, 1, 1)`` for a Gemm)."""
        if self.spec.kind == "gemm":
            return self.spec.cin_g, 1, 1
        c, h, w = self.graph.shape(self.node.inputs[0])[1:4]
        return int(c), int(h), int(w)

    def output(self, sums: str) -> None:
        spec = self.spec
        scaled = self.op("Mul", [sums, self.const("scale", self._per_channel(spec.scale(), 1))], "scaled",
                         self._scale_doc())
        out_shape = self.graph.shape(self.node.outputs[0])
        if spec.kind == "gemm" and len(out_shape) != 2:
            biased = self.op("Add", [scaled, self.const("bias", spec.applied_bias())], "biased")
            target = np.array([-1, *out_shape[1:]], np.int64)
            self.op("Reshape", [biased, self.const("out_shape", target)], self.node.outputs[0], final=True)
            return
        self.op("Add", [scaled, self.const("bias", self._per_channel(spec.applied_bias(), 1, always=True))],
                self.node.outputs[0], final=True)

    def _per_channel(self, values: np.ndarray, axis: int, always: bool = False) -> np.ndarray:
        """``values`` shaped to broadcast along channel ``axis`` (2: ADC codes, 1: sums)."""
        v = np.asarray(values, dtype=np.float32).reshape(-1)
        if v.size == 1 and not always:
            return v.reshape(())
        rank = axis + (3 if self.spec.kind == "conv" else 1)
        shape = [1] * rank
        shape[axis] = -1
        return v.reshape(shape)

    def _scale_doc(self) -> str:
        shift = self.spec.shift
        if shift is None:
            return "exact output scale S_W*S_ADC*S_A"
        return f"shift: y = P * 2^-k with k = {shift.k.tolist()} (fold: {shift.fold})"

    def document(self) -> dict[str, Any]:
        """What the grouped conv stands for: segments, macros and bitlines, ADC, shift."""
        spec, q = self.spec, self.spec.q
        doc: dict[str, Any] = {"cim_layer": self.node.name, "adc_bits": q.adc_bits, "w_bits": q.w_bits,
                               "a_bits": q.a_bits, "segments": segment_documents(self.node, spec)}
        doc["shift"] = None if spec.shift is None else spec.shift.k.tolist()
        if is_sliced(spec):
            doc.update(cell_bits=q.cell_bits, dac_bits=q.dac_bits, w_slices=q.w_slices, a_slices=q.a_slices,
                       adc_shift=None if q.adc_shift is None else [int(m) for m in q.adc_shift])
        return doc


def adc_full_scale(step: np.float32, m: int) -> np.float32 | None:
    """A partial sum ``U`` with ``g(U) = M`` for ``g(p) = rint(fl(p / step))`` (float32), or
    ``None`` when ``fl(M·step)`` is not one.

    ``g`` is non-decreasing and odd (IEEE division is monotone and sign-symmetric, ``rint``
    too), so with ``g(U) = M``: ``|p| ≥ U`` gives ``g(clip(p, −U, U)) = ±M = clip(g(p), −M, M)``
    and ``|p| < U`` gives ``|g(p)| ≤ M``, unchanged by either clip. Hence
    ``g(Clip(p, −U, U)) = Clip(g(p), −M, M)`` for every ``p``: the clip moves before the
    division, where onnxruntime fuses it into the convolution (one pass less over the
    ``Seg``-times-larger partial sums)."""
    bound = np.float32(m) * np.float32(step)
    return bound if np.rint(bound / np.float32(step)) == np.float32(m) else None


def segment_documents(node: Node, spec: CimSpec) -> list[dict[str, Any]]:
    """Per segment: its row range and the (macro, bitline range) runs of its columns."""
    placement = node.ann.get_ann(BitlinePlacement)
    per_segment = spec.cout if placement is None else placement.num_columns // spec.num_segments  # Cout·S
    out = []
    for s in range(spec.num_segments):
        entry: dict[str, Any] = {"segment": s, "rows": [spec.bounds[s], spec.bounds[s + 1]]}
        if placement is not None:
            cols = slice(s * per_segment, (s + 1) * per_segment)
            entry["bitlines"] = _runs(placement.macro[cols], placement.bitline[cols])
        out.append(entry)
    return out


def _runs(macro: np.ndarray, bitline: np.ndarray) -> list[dict[str, int]]:
    """Maximal runs of consecutive bitlines on one macro: ``{macro, first, last}``."""
    breaks = np.flatnonzero((np.diff(macro) != 0) | (np.diff(bitline) != 1)) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [macro.shape[0]]]) - 1
    return [{"macro": int(macro[a]), "first": int(bitline[a]), "last": int(bitline[b])}
            for a, b in zip(starts, stops, strict=True)]
