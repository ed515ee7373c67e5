"""Integer layers of a ``model.cim.onnx`` rewritten into the float form, node for node what
``cimc.lowering.layer`` writes for the same layer with ``integer=False`` (the same tensor
names, constants and values; ``tests/test_integer_form.py`` checks the two are identical).

``cimc export-qdq`` starts from the float form, whose DAC and cells it turns into QDQ pairs
(``cimc.lowering.qdq``). The file is untrusted: a ``QLinearConv`` that is not an integer layer
(``cimc.lowering.integer``, module doc) is a ``BuildError``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cimc.errors import BuildError
from cimc.lowering.integer import ADC_ZERO
from cimc.lowering.layer import adc_full_scale
from cimc.lowering.writer import Nodes, NodeWriter


@dataclass
class _Chain:
    """The nodes of one integer layer, DAC to ADC codes, and what the float form needs."""

    nodes: list[onnx.NodeProto]
    x: str
    a_step: np.ndarray
    lo: int
    hi: int
    as_conv: str | None
    index: str | None
    conv: onnx.NodeProto
    adc_step: np.float32
    m: int
    segments_shape: str
    adc_codes: str


class _Expansion:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.nodes = list(model.graph.node)  # one wrapper per node: identities below are stable
        self.values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.readers: dict[str, list[onnx.NodeProto]] = {}
        for n in self.nodes:
            for t in n.input:
                self.readers.setdefault(t, []).append(n)

    def value(self, name: str, what: str) -> np.ndarray:
        if name not in self.values:
            raise BuildError(f"model.cim.onnx: the integer layer's {what} ('{name}') is not a constant")
        return self.values[name]

    def scalar(self, name: str, what: str, want: float | None = None) -> float:
        """The single value of constant ``name`` (``want`` if given, else a ``BuildError``)."""
        v = self.value(name, what)
        wrong = v.size != 1 or not np.isfinite(v.astype(np.float64)).all()
        if wrong or (want is not None and float(v.reshape(())) != want):
            raise BuildError(f"model.cim.onnx: the integer layer's {what} ('{name}') is not "
                             f"{'a single finite value' if want is None else want}")
        return float(v.reshape(()))

    def before(self, tensor: str, op: str) -> onnx.NodeProto | None:
        node = self.producer.get(tensor)
        return node if node is not None and node.op_type == op else None

    def after(self, tensor: str, op: str, what: str) -> onnx.NodeProto:
        readers = self.readers.get(tensor, [])
        if len(readers) != 1 or readers[0].op_type != op:
            raise BuildError(f"model.cim.onnx: '{tensor}' should feed one {op} ({what} of an integer layer)")
        return readers[0]

    def chain(self, conv: onnx.NodeProto) -> _Chain:
        if len(conv.input) != 8:
            raise BuildError(f"model.cim.onnx: QLinearConv '{conv.name}' does not have the integer layer's 8 inputs")
        gather = self.before(conv.input[0], "Gather")
        reshape = self.before(gather.input[0] if gather else conv.input[0], "Reshape")
        source = reshape.input[0] if reshape else gather.input[0] if gather else conv.input[0]
        clip = self.before(source, "Clip")
        quantize = self.before(clip.input[0], "QuantizeLinear") if clip is not None else None
        if clip is None or quantize is None or len(clip.input) != 3 or len(quantize.input) != 3:
            raise BuildError(f"model.cim.onnx: QLinearConv '{conv.name}' is not fed by a DAC QuantizeLinear and Clip")
        zero = int(self.scalar(quantize.input[2], "input zero point"))
        lo, hi = (int(self.scalar(t, "input code bound")) - zero for t in clip.input[1:3])
        adc_clip = self.after(conv.output[0], "Clip", "the ADC's clip")
        shape = self.after(adc_clip.output[0], "Reshape", "the segments' reshape")
        dequantize = self.after(shape.output[0], "DequantizeLinear", "the ADC codes")
        m = ADC_ZERO - int(self.scalar(adc_clip.input[1], "ADC code bound"))
        self.scalar(adc_clip.input[2], "ADC code bound", ADC_ZERO + m)
        for name, what, want in ((conv.input[1], "input scale", 1), (conv.input[2], "input zero point", zero),
                                 (conv.input[4], "cell scale", 1), (conv.input[5], "cell zero point", 0),
                                 (conv.input[7], "ADC zero point", ADC_ZERO), (dequantize.input[1], "ADC unit", 1),
                                 (dequantize.input[2], "ADC zero point", ADC_ZERO)):
            self.scalar(name, what, want)
        if not dequantize.output[0].endswith("/adc_codes") or m <= 0:  # M ≥ 1: ADCs have 2 bits or more
            raise BuildError(f"model.cim.onnx: QLinearConv '{conv.name}' does not end in a layer's ADC codes")
        nodes = [n for n in (quantize, clip, reshape, gather, conv, adc_clip, shape, dequantize) if n is not None]
        return _Chain(nodes, quantize.input[0], self.value(quantize.input[1], "DAC step"), lo, hi,
                      reshape.input[1] if reshape else None, gather.input[1] if gather else None, conv,
                      np.float32(self.scalar(conv.input[6], "ADC step")), m, shape.input[1], dequantize.output[0])

    def float_nodes(self, c: _Chain, sink: Nodes) -> list[onnx.NodeProto]:
        """``cimc.lowering.layer``'s float form of the layer ``c`` (``LayerEmitter.emit``,
        unsliced, one ADC step), written by the same ``NodeWriter`` methods into ``sink``."""
        w = NodeWriter(sink, c.adc_codes.removesuffix("/adc_codes"))
        first = len(sink.nodes)
        codes = w.quantizer(c.x, c.a_step, c.lo, c.hi, "input_codes", c.nodes[0].doc_string)
        if c.as_conv is not None:
            codes = w.op("Reshape", [codes, c.as_conv], "conv_input")
        if c.index is not None:
            codes = w.op("Gather", [codes, c.index], "segment_inputs", axis=1)
        self.value(c.conv.input[3], "cells")
        cells = w.op("Cast", [c.conv.input[3]], "cells", to=TensorProto.FLOAT)
        attrs = {a.name: helper.get_attribute_value(a) for a in c.conv.attribute}
        raw = w.op("Conv", [codes, cells], "bitlines", c.conv.doc_string, **attrs)
        bound = adc_full_scale(c.adc_step, c.m)
        psums = w.op("Reshape", [w.full_scale_clip(raw, bound, "bitlines_saturated"), c.segments_shape],
                     "partial_sums")
        codes = w.quantized_adc(psums, c.adc_step.reshape(-1), c.m, bound is not None, "adc_codes",
                                c.nodes[-1].doc_string)
        if codes != c.adc_codes:  # a name the file holds elsewhere: the readers would lose their input
            raise BuildError(f"model.cim.onnx: the float form of '{c.adc_codes}' would be renamed '{codes}'")
        return sink.nodes[first:]


def expand_integer_layers(model: onnx.ModelProto) -> int:
    """Rewrite, in place, every integer layer of ``model`` into the float form (module doc);
    the number rewritten."""
    e = _Expansion(model)
    chains = [e.chain(n) for n in e.nodes if n.op_type == "QLinearConv"]
    if not chains:
        return 0
    starts = {id(c.nodes[0]): c for c in chains}
    dropped = {id(n) for c in chains for n in c.nodes}
    replaced = {t for c in chains for n in c.nodes for t in [*n.output, n.name]}  # names the float form takes
    sink = Nodes({t for n in e.nodes for t in [*n.input, *n.output, n.name]} - replaced | set(e.values))
    nodes: list[onnx.NodeProto] = []
    for n in e.nodes:
        if id(n) in starts:
            nodes.extend(e.float_nodes(starts[id(n)], sink))
        elif id(n) not in dropped:
            nodes.append(n)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    stale = [v for v in model.graph.value_info if v.name in replaced]  # uint8 levels become float codes
    for v in stale:
        model.graph.value_info.remove(v)
    read = {t for n in nodes for t in n.input}
    kept = [t for t in model.graph.initializer if t.name in read]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept + [t for t in sink.extra if t.name in read])
    return len(chains)
