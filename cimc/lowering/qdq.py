"""Quantized model out: a build's ``model.cim.onnx`` rewritten as standard QDQ ONNX
(``cimc export-qdq``), with the same outputs bit for bit.

Integer layers are first rewritten into the float form (``cimc.lowering.expand``), whose
``model.cim.onnx`` (``cimc.lowering.layer``) quantizes with ``Clip(Round(Div(x, S)), lo, hi)``
(the DAC; the ADC of a wide or bit-sliced layer) and holds the cells as ``Cast<float>(int8
codes)``. Both have exact QDQ forms (an ADC of at most 8 bits is already one there, kept; with
real scales its ``QuantizeLinear`` takes the real step, its sums' saturation ``Clip(±U)``, in
code units, becomes an ``Identity`` and a ``Clip(±M)`` follows its ``DequantizeLinear``):

* every quantizer (the DAC's input codes ``L/input_codes`` with ``S_A``, the ADC's codes
  ``L/adc_codes`` with ``S_ADC``) becomes ``QuantizeLinear(x, S) → [Clip] →
  DequantizeLinear(·, 1)``: onnxruntime's ``QuantizeLinear`` is ``saturate(round_half_even(x/S))``
  with one float32 division, the same value as ``Round(Div)``; a range narrower than the
  integer type (narrow signed codes, a 5-bit ADC in int8) is clipped on the dequantized codes
  (``Clip`` after ``DequantizeLinear``: the QCDQ form, ``Clip`` on the int8 codes, is equal but
  onnxruntime 1.32's QDQ propagation breaks it at opset 21 with extended optimisations). The
  code type is uint8/int8, or uint16/int16 (opset ≥ 21) for wider codes (not uint4/int4:
  onnxruntime 1.32's QDQ fusions then move 4-bit tensors into ops without 4-bit kernels).
  ``S`` per output channel is a per-axis scale (``axis`` = the channel axis); a bit-sliced layer's
  ADC steps ``S_ADC·2^−m_{t,j}`` are a per-axis ``S_ADC`` after an exact ``Mul`` by ``2^m``;
* the cells become ``DequantizeLinear(codes, 1)`` with int4 codes where they fit (opset ≥ 21),
  int8 else.

The dequantization scale is 1 because the macro computes on codes: the real scale
``S_W·S_ADC·S_A`` (or ``2^−k``) is the per-channel ``Mul`` that follows the adder tree, exactly as
in ``model.cim.onnx``, so every partial sum stays an exact integer and the outputs are equal bit
for bit (under any onnxruntime graph optimisation level that keeps float semantics; checked
with optimisations off and on in ``tests/test_qdq_export.py``). Digital ops are unchanged; the
model is converted to ``opset`` (``onnx.version_converter``) first.

*Real scales* (``weight_steps``, ``cimc export-qdq --scales real``; unsliced layers): the input
codes dequantize to ``S_A·a`` (``L/input_codes`` then holds those values), the cells to
``S_W·w`` (per axis 0, the conv's output channel ``s·Cout + o``), the partial sums are no longer
rounded and quantize with ``S_ADC·S_W·S_A`` per channel. This is the usual QDQ reading of the
layer, but the float32 convolution of real values is not exact: an ADC code whose ``p / S_ADC``
lies at (or within rounding of) a tie ``k + ½`` may come out one code off. ``S_ADC`` is often a
small integer, so exact ties are common (measured: 0 to 2.7 % of ADC codes, each off by 1).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cimc.build.directory import sha256
from cimc.build.reader import read_build, read_bytes
from cimc.documents.quant import Quant
from cimc.errors import BuildError, PassError, UnsupportedError
from cimc.frontend.onnx_export import EXPORT_OPSET, fresh_name
from cimc.lowering.expand import expand_integer_layers
from cimc.untrusted import check_depth, load_json

CIM_FILE = "model.cim.onnx"
DEFAULT_OPSET = 21
MIN_OPSET = EXPORT_OPSET  # model.cim.onnx's own: the converter does not go down
MAX_OPSET = 23
_TYPES = ((TensorProto.UINT4, 0, 15, 21), (TensorProto.INT4, -8, 7, 21), (TensorProto.UINT8, 0, 255, 13),
          (TensorProto.INT8, -128, 127, 13), (TensorProto.UINT16, 0, 65535, 21),
          (TensorProto.INT16, -32768, 32767, 21))


def read_cim_model(build: str | Path) -> onnx.ModelProto:
    """The build's ``model.cim.onnx``, authenticated by the manifest's sha256."""
    folder = read_build(build)
    listed = folder.manifest.get("files")
    path = folder.path / CIM_FILE
    if not isinstance(listed, dict) or CIM_FILE not in listed or not path.is_file():
        raise BuildError(f"{folder.path} has no {CIM_FILE} (a build compiled with quantization has one)",
                         hint="compile the model again without --stop-after")
    data = read_bytes(path)
    if sha256(data) != listed[CIM_FILE]:
        raise BuildError(f"{CIM_FILE} does not match the sha256 in the manifest", hint="run cimc validate")
    try:
        return onnx.load_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise BuildError(f"{CIM_FILE} is not a valid ONNX model: {exc}") from exc


def read_weight_steps(build: str | Path) -> dict[str, np.ndarray]:
    """``S_W`` of every unsliced layer of the build (``quant.json``, authenticated by the
    manifest's sha256): the layers ``--scales real`` applies to."""
    folder = read_build(build)
    listed = folder.manifest.get("files")
    path = folder.path / "quant.json"
    if not isinstance(listed, dict) or "quant.json" not in listed or not path.is_file():
        raise BuildError(f"{folder.path} has no quant.json")
    data = read_bytes(path)
    if sha256(data) != listed["quant.json"]:
        raise BuildError("quant.json does not match the sha256 in the manifest", hint="run cimc validate")
    check_depth(data, "quant.json", BuildError)
    try:
        doc = Quant.model_validate_json(data)
    except ValueError as exc:
        raise BuildError(f"quant.json is not valid: {exc}") from exc
    return {layer.node: np.asarray(layer.w_step, np.float32) for layer in doc.layers
            if layer.w_slices == 1 and layer.a_slices == 1}


def code_type(lo: int, hi: int, opset: int, what: str) -> tuple[int, bool]:
    """The smallest 8- or 16-bit integer type for the quantizer codes ``lo..hi`` at ``opset``
    and whether its range is exactly ``lo..hi`` (else a clip is needed). No 4-bit types here:
    onnxruntime 1.32's QDQ fusions move uint4 tensors into MaxPool, which then fails to load."""
    for elem, tlo, thi, since in _TYPES:
        if elem not in (TensorProto.UINT4, TensorProto.INT4) and opset >= since and tlo <= lo and hi <= thi:
            return elem, (tlo, thi) == (lo, hi)
    raise UnsupportedError(f"{what}: codes {lo}..{hi} need a 16-bit type, which QuantizeLinear has from opset 21",
                           hint="export with --opset 21 or later")


def cell_type(lo: int, hi: int, opset: int, what: str) -> int:
    """The signed storage type of cell codes ``lo..hi``: int4 (opset ≥ 21), int8, int16 (opset ≥ 21)."""
    for elem, tlo, thi, since in _TYPES:
        if elem in (TensorProto.INT4, TensorProto.INT8, TensorProto.INT16) and opset >= since and tlo <= lo \
                and hi <= thi:
            return elem
    raise UnsupportedError(f"{what}: codes {lo}..{hi} need a 16-bit type, which DequantizeLinear has from opset 21",
                           hint="export with --opset 21 or later")


class _Rewrite:
    """The quantizer and cell rewrites over one graph (module doc)."""

    def __init__(self, model: onnx.ModelProto, opset: int, weight_steps: Mapping[str, np.ndarray] | None) -> None:
        self.model, self.opset, self.graph = model, opset, model.graph
        self.real = dict(weight_steps or {})  # layer → S_W: the "real" scales (module doc)
        self.input_steps: dict[str, np.ndarray] = {}
        self.inits = {t.name: t for t in self.graph.initializer}
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.readers: dict[str, int] = {}
        for n in self.graph.node:
            for t in n.input:
                self.readers[t] = self.readers.get(t, 0) + 1
        self.taken = {t for n in self.graph.node for t in [*n.input, *n.output]} | set(self.inits) | \
            {n.name for n in self.graph.node}
        self.new_inits: list[onnx.TensorProto] = []
        self.adc_bits = _adc_bits(model)
        self.quantizers = 0
        self.cells = 0

    def fresh(self, base: str) -> str:
        return fresh_name(self.taken, base)

    def const(self, base: str, value: np.ndarray | np.generic) -> str:
        name = self.fresh(base)
        self.new_inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def value(self, name: str) -> np.ndarray | None:
        return numpy_helper.to_array(self.inits[name]) if name in self.inits else None

    def run(self) -> None:
        out: list[onnx.NodeProto] = []
        for node in self.graph.node:
            if self.real and node.op_type in ("Clip", "QuantizeLinear", "DequantizeLinear"):
                real_adc = list(self._real_adc(node))
                if real_adc:
                    out.extend(real_adc)
                    continue
            chain = self._quantizer(node) if node.op_type == "Clip" else None
            if chain is not None:
                div, rnd = chain
                out = [n for n in out if n is not div and n is not rnd]
                out.extend(self._qdq(div.input[0], div.input[1], node))
                self.quantizers += 1
                continue
            if node.op_type == "Squeeze" and _layer_of(node.output[0], "sums") is not None:
                out.append(self._one_segment_sum(node))
                continue
            if node.op_type == "Cast" and node.input[0] in self.inits:
                replaced = self._cells(node)
                if replaced is not None:
                    out.append(replaced)
                    self.cells += 1
                    continue
            out.append(node)
        del self.graph.node[:]
        self.graph.node.extend(out)
        read = {t for n in out for t in n.input}
        kept = [t for t in self.graph.initializer if t.name in read]
        del self.graph.initializer[:]
        self.graph.initializer.extend(kept + [t for t in self.new_inits if t.name in read])

    def _real_adc(self, node: onnx.NodeProto) -> Iterator[onnx.NodeProto]:
        """With real scales, an ADC already in QDQ form (``LayerEmitter.adc``): its sums'
        saturation ``L/bitlines_saturated`` (in code units) becomes an ``Identity``, its
        ``QuantizeLinear`` quantizes with ``S_ADC·S_W·S_A`` and, where the saturation was, a
        ``Clip(−M, M)`` follows its ``DequantizeLinear``; nothing for any other node."""
        out = node.output[0]
        layer = _layer_of(out, "bitlines_saturated") or _layer_of(out, "adc_codes_int8") or \
            _layer_of(out, "adc_codes")
        if layer not in self.real or (node.op_type == "DequantizeLinear") != (_layer_of(out, "adc_codes") == layer):
            return
        if node.op_type == "Clip":
            yield helper.make_node("Identity", [node.input[0]], [out], name=self.fresh(f"{out}:Identity"),
                                   doc_string="real scales: the ADC's Clip follows its DequantizeLinear")
        elif node.op_type == "QuantizeLinear":
            step = self.value(node.input[1])
            assert step is not None
            if step.size > 1:  # per axis 2 of the partial sums (N, Seg, Cout[, Ho, Wo])
                step = step.reshape([1, 1, -1] + [1] * (self._rank(node.input[0]) - 3))
            q_step, _ = self._real_steps(f"{layer}/adc_codes", step, node.input[0])
            scale, axis, _ = _scale(q_step, out)
            zero = self.const(f"{out}/zero_points", np.zeros(scale.shape, np.int8))
            attrs: dict[str, Any] = {} if axis is None else {"axis": axis}
            yield helper.make_node("QuantizeLinear", [node.input[0], self.const(f"{out}/scale", scale), zero], [out],
                                   name=self.fresh(f"{out}:QuantizeLinear"), doc_string=node.doc_string, **attrs)
        elif node.op_type == "DequantizeLinear":
            if layer not in self.adc_bits:
                raise BuildError(f"model.cim.onnx: layer '{layer}' has no adc_bits in its cimc.cim_layers metadata")
            m = (1 << (self.adc_bits[layer] - 1)) - 1
            codes = self.fresh(f"{out}/dq")
            yield helper.make_node("DequantizeLinear", list(node.input), [codes],
                                   name=self.fresh(f"{codes}:DequantizeLinear"))
            bounds = [self.const(f"{out}/min", np.float32(-m)), self.const(f"{out}/max", np.float32(m))]
            yield helper.make_node("Clip", [codes, *bounds], [out], name=self.fresh(f"{out}:Clip"))

    def _one_segment_sum(self, squeeze: onnx.NodeProto) -> onnx.NodeProto:
        """A one-segment layer's adder tree ``Squeeze(codes, [1])`` as the equal
        ``ReduceSum(codes, [1])``: onnxruntime 1.32's QDQ propagation moves a ``QuantizeLinear``
        past a ``Squeeze`` after a ``DequantizeLinear``, with an output type (int8) that
        contradicts its zero point's (uint8), and the session then fails to load."""
        return helper.make_node("ReduceSum", list(squeeze.input), list(squeeze.output), name=squeeze.name,
                                doc_string=squeeze.doc_string, keepdims=0)

    def _rank(self, tensor: str) -> int:
        """Rank of a ``Reshape`` output (the partial sums), 5 when unknown."""
        node = self.producer.get(tensor)
        shape = self.value(node.input[1]) if node is not None and node.op_type == "Reshape" else None
        return 5 if shape is None else int(shape.size)

    def _quantizer(self, clip: onnx.NodeProto) -> tuple[onnx.NodeProto, onnx.NodeProto] | None:
        """``(Div, Round)`` when ``clip`` is ``Clip(Round(Div(x, constant step)), lo, hi)``."""
        rnd = self.producer.get(clip.input[0])
        div = self.producer.get(rnd.input[0]) if rnd is not None and rnd.op_type == "Round" else None
        if div is None or div.op_type != "Div" or rnd is None or len(clip.input) != 3:
            return None
        step, lo, hi = self.value(div.input[1]), self.value(clip.input[1]), self.value(clip.input[2])
        if step is None or lo is None or hi is None or lo.size != 1 or hi.size != 1 or \
                self.readers.get(div.output[0]) != 1 or self.readers.get(rnd.output[0]) != 1:
            return None
        if not (step > 0).all() or float(lo.reshape(())) != int(lo.reshape(())) or \
                float(hi.reshape(())) != int(hi.reshape(())):
            return None
        return div, rnd

    def _qdq(self, x: str, step_name: str, clip: onnx.NodeProto) -> Iterator[onnx.NodeProto]:
        """``[Mul 2^m] → QuantizeLinear → DequantizeLinear(·, 1) → [Clip]`` writing ``clip``'s output."""
        out = clip.output[0]
        step = self.value(step_name)
        lo, hi = (int(np.asarray(self.value(t)).reshape(())) for t in clip.input[1:3])
        assert step is not None
        q_step, unit = self._real_steps(out, step, x)
        scale, axis, factors = _scale(q_step, out)
        if factors is not None:
            scaled = self.fresh(f"{out}/ranged")
            yield helper.make_node("Mul", [x, self.const(f"{out}/range_factor", factors)], [scaled],
                                   name=self.fresh(f"{scaled}:Mul"), doc_string="exact: a power of two per conversion")
            x = scaled
        elem, exact = code_type(lo, hi, self.opset, f"quantizer '{out}'")
        np_type = helper.tensor_dtype_to_np_dtype(elem)
        zero = self.const(f"{out}/zero_point", np.zeros((), np_type))
        codes = self.fresh(f"{out}/q")
        attrs: dict[str, Any] = {} if axis is None else {"axis": axis}
        q_zero = zero if axis is None else self.const(f"{out}/zero_points", np.zeros(scale.shape, np_type))
        yield helper.make_node("QuantizeLinear", [x, self.const(f"{out}/scale", scale), q_zero], [codes],
                               name=self.fresh(f"{codes}:QuantizeLinear"), doc_string=clip.doc_string, **attrs)
        deq = out if exact else self.fresh(f"{out}/dq")
        yield helper.make_node("DequantizeLinear", [codes, self.const(f"{out}/unit", unit), zero], [deq],
                               name=self.fresh(f"{deq}:DequantizeLinear"))
        if not exact:  # fl(c·unit) is monotonic in c: clipping the dequantized value clips the code
            yield helper.make_node("Clip", [deq, self.const(f"{out}/min", np.float32(np.float32(lo) * unit)),
                                            self.const(f"{out}/max", np.float32(np.float32(hi) * unit))], [out],
                                   name=self.fresh(f"{out}:Clip"))

    def _real_steps(self, out: str, step: np.ndarray, x: str) -> tuple[np.ndarray, np.float32]:
        """``(quantizer step, dequantization scale)``: ``(S, 1)`` on codes; with real scales the
        input codes dequantize to ``S_A`` and the ADC quantizes ``S_ADC·S_W·S_A`` per channel."""
        layer = _layer_of(out, "input_codes")
        if layer in self.real:
            self.input_steps[layer] = step
            return step, np.float32(np.asarray(step, np.float32).reshape(-1)[0])
        layer = _layer_of(out, "adc_codes")
        if layer in self.real and layer in self.input_steps:
            s_w = np.asarray(self.real[layer], np.float32).reshape(-1)
            shape = [1, 1, -1] + [0] * (self._rank(x) - 3)  # partial sums (N, Seg, Cout[, Ho, Wo])
            shape = [1 if d == 0 else d for d in shape]
            s_a = np.float32(np.asarray(self.input_steps[layer], np.float32).reshape(-1)[0])
            return (np.asarray(step, np.float32) * s_w.reshape(shape) * s_a).astype(np.float32), np.float32(1)
        return step, np.float32(1)

    def _cells(self, cast: onnx.NodeProto) -> onnx.NodeProto | None:
        """``Cast<float>(integer codes)`` as ``DequantizeLinear(codes, 1)`` (int4 where they fit)."""
        codes = self.value(cast.input[0])
        to = {a.name: helper.get_attribute_value(a) for a in cast.attribute}.get("to")
        if codes is None or to != TensorProto.FLOAT or codes.dtype.kind not in "iu" or codes.size == 0:
            return None
        elem = cell_type(int(codes.min()), int(codes.max()), self.opset, f"cells '{cast.output[0]}'")
        np_type = helper.tensor_dtype_to_np_dtype(elem)
        stored = self.const(f"{cast.input[0]}/q", codes.astype(np_type))
        layer = _layer_of(cast.output[0], "cells")
        if layer in self.real:  # S_W per conv output channel s·Cout + o: per axis 0
            s_w = np.asarray(self.real[layer], np.float32).reshape(-1)
            scale = np.tile(s_w, codes.shape[0] // s_w.size) if s_w.size > 1 else s_w.reshape(())
            zero = self.const(f"{cast.input[0]}/zero_point", np.zeros(scale.shape, np_type))
            attrs: dict[str, Any] = {"axis": 0} if scale.ndim else {}
            return helper.make_node("DequantizeLinear", [stored, self.const(f"{cast.input[0]}/scale", scale), zero],
                                    [cast.output[0]], name=self.fresh(f"{cast.output[0]}:DequantizeLinear"),
                                    doc_string="weights: cell codes times S_W", **attrs)
        zero = self.const(f"{cast.input[0]}/zero_point", np.zeros((), np_type))
        return helper.make_node("DequantizeLinear", [stored, self.const(f"{cast.input[0]}/unit", np.float32(1)), zero],
                                [cast.output[0]], name=self.fresh(f"{cast.output[0]}:DequantizeLinear"),
                                doc_string="cell codes (the macro computes on codes; S_W is in the output scale)")


def _layer_of(tensor: str, field: str) -> str | None:
    """``L`` for the tensor ``L/field`` of ``model.cim.onnx`` (``cimc.lowering.layer``)."""
    suffix = f"/{field}"
    return tensor[: -len(suffix)] if tensor.endswith(suffix) else None


def _scale(step: np.ndarray, out: str) -> tuple[np.ndarray, int | None, np.ndarray | None]:
    """``(scale, axis, factors)``: ``step`` as a per-tensor or per-axis scale, after an optional
    exact multiplication of the input by power-of-two ``factors`` (a sliced layer's ``2^m`` per
    conversion along axis 1, channels along axis 2)."""
    s = np.asarray(step, dtype=np.float32)
    if s.size == 1:
        return s.reshape(()), None, None
    varying = [i for i, d in enumerate(s.shape) if d > 1]
    if len(varying) == 1:
        return s.reshape(-1), varying[0], None
    if varying != [1, 2]:
        raise PassError(f"quantizer '{out}': a step of shape {s.shape} is not per tensor, per axis or per conversion")
    ratio = s / s.max(axis=1, keepdims=True)  # 2^−m per conversion, the same for every channel
    first = ratio[:, :, :1]
    mant, _ = np.frexp(first)
    if not (np.array_equal(ratio, np.broadcast_to(first, ratio.shape)) and (mant == 0.5).all()):
        raise PassError(f"quantizer '{out}': the steps per conversion are not S_ADC·2^−m")
    base = s.max(axis=1, keepdims=True)
    factors = (1.0 / first).astype(np.float32)  # exact: powers of two
    channel = base.reshape(-1)
    if (channel == channel[0]).all():
        return channel[:1].reshape(()), None, factors
    return channel, 2, factors


def _adc_bits(model: onnx.ModelProto) -> dict[str, int]:
    """Each CIM layer's ADC bits, from ``model.cim.onnx``'s ``cimc.cim_layers`` metadata (a list
    of ``{"cim_layer": name, "adc_bits": b, …}``); untrusted, so any other shape, or bits outside
    1..16, is a ``BuildError``."""
    text = next((p.value for p in model.metadata_props if p.key == "cimc.cim_layers"), "[]")
    documents = load_json(text, "model.cim.onnx's cimc.cim_layers metadata", BuildError)
    try:
        bits = {str(doc["cim_layer"]): int(doc["adc_bits"]) for doc in documents}
    except (ValueError, TypeError, KeyError) as exc:
        raise BuildError(f"model.cim.onnx: malformed cimc.cim_layers metadata ({type(exc).__name__}: {exc})",
                         hint="run cimc validate") from exc
    if not all(1 <= b <= 16 for b in bits.values()):
        raise BuildError("model.cim.onnx: cimc.cim_layers metadata has adc_bits outside 1..16")
    return bits


def qdq_model(cim: onnx.ModelProto, opset: int = DEFAULT_OPSET,
              weight_steps: Mapping[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """``cim`` (a ``model.cim.onnx``) as QDQ ONNX at ``opset`` (module doc); ``weight_steps``
    (layer → ``S_W``, unsliced layers only) asks for real scales."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UnsupportedError(f"QDQ export at opset {opset}: cimc writes opsets {MIN_OPSET}..{MAX_OPSET}")
    from onnx import version_converter

    try:
        model = version_converter.convert_version(cim, opset)
    except Exception as exc:  # the converter raises RuntimeError and its own types
        raise UnsupportedError(f"model.cim.onnx cannot be converted to opset {opset}: {exc}",
                               hint="try another --opset") from exc
    model.ir_version = max(model.ir_version, 10 if opset >= 21 else 8)
    expand_integer_layers(model)
    rewrite = _Rewrite(model, opset, weight_steps)
    rewrite.run()
    if rewrite.quantizers == 0:
        raise BuildError("model.cim.onnx has no quantizers to export (not a cimc compiled model?)")
    props = {p.key: p.value for p in model.metadata_props}
    props["cimc.qdq"] = (f"{rewrite.quantizers} quantizers as QuantizeLinear/DequantizeLinear, {rewrite.cells} cell "
                         "arrays as DequantizeLinear; dequantized to codes (scale 1), real scales in the output Mul")
    helper.set_model_props(model, dict(sorted(props.items())))
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError) as exc:
        raise PassError(f"the QDQ model fails the ONNX checker: {exc}") from exc
    return model
