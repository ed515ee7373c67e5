"""Quantized models in: ONNX QDQ and QONNX quantizers become float tensors plus their steps.

Recognised (before the op check, on the ``ModelProto``):

* ONNX ``QuantizeLinear``/``DequantizeLinear`` (opsets 10–25; int8, uint8, int16, uint16, int4,
  uint4; per tensor or per axis), and the QCDQ form ``QuantizeLinear → Clip → DequantizeLinear``;
* QONNX ``Quant``/``IntQuant``, ``BipolarQuant`` and ``Trunc`` (domains
  ``qonnx.custom_op.general`` and ``finn.custom_op.general``), whose numpy definitions are::

      Quant(x, s, z, b)  = (round(clip(x/s + z, min, max)) − z) · s     min/max from signed, narrow, b
      BipolarQuant(x, s) = (x ≥ 0 ? 1 : −1) · s

Every quantizer is a *fake quantizer* ``y = clip(round(x/s), lo, hi) · s`` in code units
``lo = qmin − z``, ``hi = qmax − z`` (a Q→DQ pair with equal scale and zero point; ONNX rounds
before adding ``z``, QONNX after, the same for even ``z``). On a **constant** it is evaluated
once: the weight becomes its dequantized float value, and the step ``s`` (per tensor, or per
axis) is remembered for the layer reading it. On an **activation** it is removed: it becomes an
``Identity``, or a ``Relu`` when ``lo = 0`` and the producer is not already a ``Relu`` (an
onnxruntime QDQ export drops the Relu that its unsigned range implies); its step becomes the
input step ``S_A`` of the CIM layer reading the tensor, whose own input quantization
``clip(round(x/S_A), 0, 2^a − 1)`` is the same fake quantizer. The upper clip ``hi·s`` is
kept only there: a digital op reading the tensor sees the float value.

The steps per layer (``Conv``, ``Gemm``, ``MatMul`` with a quantized constant weight) go into
``graph.metadata["cimc.qdq"]`` (``QDQ_KEY``; a model's own entry of that name is dropped), which
the quantize pass reads (``cimc.quant.imported``)::

    {"version": 1, "layers": {"<node>": {"w_bits": 8, "w_step": [1 or Cout floats],
                                          "a_bits": 8, "a_step": 0.01, "a_signed": false,
                                          "notes": ["why a step was not kept", ...]}}}

``w_*`` or ``a_*`` are ``null`` where cimc cannot hold the model's quantizer (asymmetric zero
point, per-axis scale along an input axis, another rounding), with the reason in ``notes``.
What cannot be imported at all (an integer tensor read by an ordinary op, blocked or float8
quantization, a bipolar or truncating activation) is an ``UnsupportedError`` naming the node.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cimc.errors import InvalidModelError, ResourceLimitError, UnsupportedError
from cimc.frontend.budget import DEFAULT_MAX_TENSOR_BYTES
from cimc.frontend.proto_graph import DEFAULT_DOMAINS, set_repeated

log = logging.getLogger(__name__)

QDQ_KEY = "cimc.qdq"
VERSION = 1
QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general")
_QONNX_OPS = ("Quant", "IntQuant", "BipolarQuant", "Trunc")
_ONNX_OPS = ("QuantizeLinear", "DequantizeLinear")
#: ONNX integer types a quantizer may produce: (bits, signed).
_INT_TYPES: dict[int, tuple[int, bool]] = {
    TensorProto.INT8: (8, True), TensorProto.UINT8: (8, False), TensorProto.INT16: (16, True),
    TensorProto.UINT16: (16, False), TensorProto.INT4: (4, True), TensorProto.UINT4: (4, False),
    TensorProto.INT32: (32, True)}  # int32: a dequantized constant bias only
_HINT = "export the model in float, or with symmetric per-tensor/per-output-channel int quantizers"


@dataclass(frozen=True)
class FakeQuant:
    """``y = clip(round(x/step), lo, hi) · step`` (``step`` broadcast along ``axis``)."""

    node: str
    step: np.ndarray
    axis: int | None
    lo: int
    hi: int
    bits: int
    rounding: str = "ROUND"
    zero: int = 0
    qonnx: bool = False

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The quantizer on a constant, in float32 as its definition computes it: ONNX rounds
        ``x/s`` then adds ``z`` (so the codes clip at ``lo..hi``); QONNX (``qonnx``) clips
        ``x/s + z`` to ``lo + z..hi + z`` and rounds after."""
        s = _along(self.step, self.axis, x.shape)
        v = np.divide(x.astype(np.float32), s, dtype=np.float32)
        rounding = {"ROUND": np.rint, "FLOOR": np.floor, "CEIL": np.ceil}[self.rounding]
        if self.qonnx:
            z = np.float32(self.zero)
            codes = rounding(np.clip(v + z, self.lo + self.zero, self.hi + self.zero)) - z
        else:
            codes = np.clip(rounding(v), self.lo, self.hi)
        return (codes * s).astype(np.float32)

    def cim_range(self) -> tuple[int, bool, str | None]:
        """``(bits, signed, None)`` when cimc's codes are this range (unsigned ``0..2^b − 1``, or
        signed ``±(2^(b−1) − 1)``, where a code ``−2^(b−1)`` is clipped to ``−(2^(b−1) − 1)``); else
        ``(0, False, reason)``. ``b`` comes from the range, so a QCDQ clip to 4 bits of an int8
        tensor gives 4."""
        if self.rounding != "ROUND":
            return 0, False, f"rounds with {self.rounding}, cimc rounds half to even"
        top = self.hi + 1
        if top >= 2 and top & (top - 1) == 0:
            if self.lo == 0:
                return top.bit_length() - 1, False, None
            if self.lo in (-self.hi, -self.hi - 1):
                return top.bit_length(), True, None
        return 0, False, f"codes {self.lo}..{self.hi} (a zero point off the middle, or a clipped range) " \
                         "are neither unsigned 0..2^b-1 nor symmetric signed"


@dataclass
class _Found:
    """What the rewrite learnt: weight quantizers and activation quantizers by output tensor."""

    weights: dict[str, FakeQuant] = field(default_factory=dict)
    activations: dict[str, FakeQuant] = field(default_factory=dict)


def _along(step: np.ndarray, axis: int | None, dims: tuple[int, ...]) -> np.ndarray:
    """``step`` shaped to broadcast along ``axis`` of a tensor of shape ``dims``."""
    s = np.asarray(step, dtype=np.float32)
    if axis is None or s.size == 1:
        return s.reshape(())
    if not 0 <= axis < len(dims) or dims[axis] != s.size:
        raise InvalidModelError(f"a per-axis scale of {s.size} values along axis {axis} of a tensor of shape "
                                f"{dims}")
    shape = [1] * len(dims)
    shape[axis] = -1
    return s.reshape(shape)


def has_quantizers(graph: onnx.GraphProto) -> bool:
    return any(_kind(n) is not None for n in graph.node)


def _kind(node: onnx.NodeProto) -> str | None:
    if node.domain in DEFAULT_DOMAINS and node.op_type in _ONNX_OPS:
        return node.op_type
    if node.domain in QONNX_DOMAINS and node.op_type in _QONNX_OPS:
        return node.op_type
    return None


class _Rewriter:
    """One pass over the sorted nodes: quantizers on constants folded, on activations removed."""

    def __init__(self, model: onnx.ModelProto, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> None:
        self.max_tensor_bytes = max_tensor_bytes
        self.graph = model.graph
        self.inits = {t.name: t for t in self.graph.initializer}
        self.values: dict[str, np.ndarray] = {}
        self.consts = {n.output[0]: n for n in self.graph.node if n.op_type == "Constant" and n.domain in
                       DEFAULT_DOMAINS and len(n.output) == 1}
        self.producer = {o: n for n in self.graph.node for o in n.output if o}
        self.readers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.graph.node:
            for t in node.input:
                self.readers.setdefault(t, []).append(node)
        self.found = _Found()
        self.removed: set[str] = set()
        self.replaced: dict[str, onnx.NodeProto] = {}
        self.new_inits: list[onnx.TensorProto] = []
        self.nonnegative: set[str] = set()

    # -- constants ----------------------------------------------------------------------------
    def const(self, name: str) -> np.ndarray | None:
        if not name:
            return None
        if name in self.values:
            return self.values[name]
        if name in self.inits:
            proto = self.inits[name]
        elif name in self.consts:
            attr = {a.name: a for a in self.consts[name].attribute}
            if "value" not in attr:
                return None
            proto = attr["value"].t
        else:
            return None
        size = math.prod(int(d) for d in proto.dims) * 4  # decoded, then dequantized to float32
        if size > self.max_tensor_bytes:
            raise ResourceLimitError(f"quantized constant '{name}' would take {size:,} bytes as float32, over the "
                                     f"limit of {self.max_tensor_bytes:,}")
        value = numpy_helper.to_array(proto)
        self.values[name] = value
        return value

    def need(self, node: onnx.NodeProto, index: int, what: str) -> np.ndarray:
        value = self.const(node.input[index]) if index < len(node.input) else None
        if value is None:
            raise UnsupportedError(f"node '{node.name}' ({node.op_type}): {what} must be a constant",
                                   hint=_HINT)
        return value

    def dtype(self, name: str) -> int | None:
        if name in self.inits:
            return int(self.inits[name].data_type)
        if name in self.consts:
            return int({a.name: a for a in self.consts[name].attribute}["value"].t.data_type)
        return None

    # -- the walk ---------------------------------------------------------------------------------
    def run(self) -> None:
        for node in list(self.graph.node):
            kind = _kind(node)
            if kind == "DequantizeLinear":
                self._dequantize(node)
            elif kind in ("Quant", "IntQuant", "BipolarQuant", "Trunc"):
                self._qonnx(node, kind)
        for node in self.graph.node:
            if _kind(node) == "QuantizeLinear" and node.name not in self.removed:
                self._stray_quantize(node)

    def _dequantize(self, dq: onnx.NodeProto) -> None:
        x = dq.input[0]
        chain = self._q_chain(x)
        if chain is None:
            codes = self.const(x)
            if codes is None:
                raise UnsupportedError(f"node '{dq.name}' (DequantizeLinear) reads '{x}', an integer tensor computed "
                                       "at run time; cimc imports Q→DQ pairs and dequantized constants only",
                                       hint=_HINT)
            fq = self._dq_params(dq, self.dtype(x))
            value = self._dq_value(dq, codes)
            self._as_constant(dq, value, fq)
            return
        q, clip = chain
        fq = self._pair(q, clip, dq)
        source = self.const(q.input[0])
        if source is not None:
            self._as_constant(dq, fq.apply(source), fq)
        else:
            self._as_activation(dq, q.input[0], fq)
        self.removed.update(n.name for n in (q, clip) if n is not None)

    def _q_chain(self, x: str) -> tuple[onnx.NodeProto, onnx.NodeProto | None] | None:
        """``(Q, Clip or None)`` when ``x`` is ``Q`` or ``Clip(Q)`` output read only by DQs."""
        node = self.producer.get(x)
        clip = None
        if node is not None and node.op_type == "Clip" and node.domain in DEFAULT_DOMAINS:
            clip, node = node, self.producer.get(node.input[0])
        if node is None or _kind(node) != "QuantizeLinear":
            return None
        for tensor in [node.output[0], *([clip.output[0]] if clip is not None else [])]:
            for reader in self.readers.get(tensor, []):
                if reader is not clip and _kind(reader) != "DequantizeLinear":
                    raise UnsupportedError(f"node '{reader.name}' ({reader.op_type}) reads '{tensor}', the integer "
                                           f"output of QuantizeLinear '{node.name}'; cimc imports Q→DQ pairs only",
                                           hint=_HINT)
        return node, clip

    # -- parameters ------------------------------------------------------------------------------
    def _axis(self, node: onnx.NodeProto, scale: np.ndarray, rank: int | None) -> int | None:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if int(attrs.get("block_size", 0)):
            raise UnsupportedError(f"node '{node.name}' ({node.op_type}): blocked quantization (block_size "
                                   f"{attrs['block_size']}) is not supported", hint=_HINT)
        if scale.ndim == 0 or scale.size == 1:
            return None
        if scale.ndim != 1:
            raise UnsupportedError(f"node '{node.name}' ({node.op_type}): a scale of shape {scale.shape} is not "
                                   "per tensor or per axis", hint=_HINT)
        axis = int(attrs.get("axis", 1))
        return axis if rank is None or axis >= 0 else axis + rank

    def _onnx_params(self, node: onnx.NodeProto, elem: int | None, rank: int | None) -> FakeQuant:
        scale = self.need(node, 1, "the scale").astype(np.float32)
        zp = self.const(node.input[2]) if len(node.input) > 2 else None
        elem = self._elem(node, elem)
        if elem not in _INT_TYPES:
            name = TensorProto.DataType.Name(elem) if elem in TensorProto.DataType.values() else str(elem)
            raise UnsupportedError(f"node '{node.name}' ({node.op_type}): {name} quantization is not supported "
                                   "(int8, uint8, int16, uint16, int4, uint4 are)", hint=_HINT)
        bits, signed = _INT_TYPES[elem]
        qmin, qmax = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        _positive(node, scale)
        z = np.zeros(1, np.int64) if zp is None else np.asarray(zp, np.int64).reshape(-1)
        if z.size > 1 and not (z == z[0]).all():
            raise UnsupportedError(f"node '{node.name}' ({node.op_type}): per-axis zero points that differ "
                                   "are not supported", hint=_HINT)
        z0 = int(z[0])
        return FakeQuant(node.name, scale.reshape(-1), self._axis(node, scale, rank), qmin - z0, qmax - z0, bits,
                         zero=z0)

    def _elem(self, node: onnx.NodeProto, given: int | None) -> int:
        """The integer type: the zero point's, else ``given`` (a DequantizeLinear's input), else
        QuantizeLinear's ``output_dtype`` (opset 21), else uint8."""
        if len(node.input) > 2 and node.input[2]:
            elem = self.dtype(node.input[2])
            if elem is not None:
                return elem
        if given is not None:
            return given
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        return int(attrs.get("output_dtype", 0)) or TensorProto.UINT8

    def _pair(self, q: onnx.NodeProto, clip: onnx.NodeProto | None, dq: onnx.NodeProto) -> FakeQuant:
        rank = self._rank(q.input[0])
        fq = self._onnx_params(q, None, rank)
        back = self._onnx_params(dq, self._elem(q, None), rank)
        if not (np.array_equal(fq.step, back.step) and fq.lo == back.lo and fq.axis == back.axis):
            raise UnsupportedError(f"nodes '{q.name}' and '{dq.name}': the QuantizeLinear and DequantizeLinear "
                                   "of a pair have different scales or zero points", hint=_HINT)
        if clip is None:
            return fq
        low = self.const(clip.input[1]) if len(clip.input) > 1 and clip.input[1] else None
        high = self.const(clip.input[2]) if len(clip.input) > 2 and clip.input[2] else None
        if (len(clip.input) > 1 and clip.input[1] and low is None) or \
                (len(clip.input) > 2 and clip.input[2] and high is None):
            raise UnsupportedError(f"node '{clip.name}' (Clip): bounds must be constants", hint=_HINT)
        lo = fq.lo if low is None else max(fq.lo, int(np.asarray(low).reshape(-1)[0]) - fq.zero)
        hi = fq.hi if high is None else min(fq.hi, int(np.asarray(high).reshape(-1)[0]) - fq.zero)
        return replace(fq, lo=lo, hi=hi)

    def _dq_params(self, dq: onnx.NodeProto, elem: int | None) -> FakeQuant:
        return self._onnx_params(dq, elem, self._rank(dq.input[0]))

    def _dq_value(self, dq: onnx.NodeProto, codes: np.ndarray) -> np.ndarray:
        """``(x − z) · s`` of a constant ``x`` (float32)."""
        fq = self._dq_params(dq, self.dtype(dq.input[0]))
        z = self.const(dq.input[2]) if len(dq.input) > 2 else None
        zero = 0 if z is None else int(np.asarray(z, np.int64).reshape(-1)[0])
        step = _along(fq.step, fq.axis, codes.shape)
        return ((codes.astype(np.float32) - np.float32(zero)) * step).astype(np.float32)

    def _rank(self, name: str) -> int | None:
        value = self.const(name)
        if value is not None:
            return value.ndim
        for vi in [*self.graph.input, *self.graph.value_info, *self.graph.output]:
            if vi.name == name and vi.type.tensor_type.HasField("shape"):
                return len(vi.type.tensor_type.shape.dim)
        return None

    # -- QONNX ---------------------------------------------------------------------------------------
    def _qonnx(self, node: onnx.NodeProto, kind: str) -> None:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        mode = attrs.get("rounding_mode", b"FLOOR" if kind == "Trunc" else b"ROUND")
        mode = (mode.decode() if isinstance(mode, bytes) else str(mode)).upper()
        if mode not in ("ROUND", "FLOOR", "CEIL"):
            raise InvalidModelError(f"node '{node.name}' ({kind}): unknown rounding_mode '{mode}'")
        source = self.const(node.input[0])
        scale = self.need(node, 1, "the scale").astype(np.float32)
        _positive(node, scale)
        if kind == "BipolarQuant":
            if source is None:
                raise UnsupportedError(f"node '{node.name}' (BipolarQuant): a bipolar activation (sign of x) is not "
                                       "a rounding quantizer; cimc's inputs are rounded codes", hint=_HINT)
            value = (np.where(source >= 0, 1.0, -1.0) * _along(scale.reshape(-1), _qonnx_axis(scale, source),
                                                               source.shape)).astype(np.float32)
            self._replace_const(node, value)
            self.found.weights[node.output[0]] = FakeQuant(node.name, scale.reshape(-1), _qonnx_axis(scale, source),
                                                           -1, 1, 2)
            return
        if kind == "Trunc":
            if source is None:
                raise UnsupportedError(f"node '{node.name}' (Trunc): truncating an activation (after a quantized "
                                       "average pool) is not supported; cimc pools in float", hint=_HINT)
            self._replace_const(node, _trunc(node, source, self, attrs, mode))
            return
        fq = self._quant_params(node, scale, attrs, mode, source)
        if source is not None:
            self._as_constant(node, fq.apply(source), fq)
        else:
            self._as_activation(node, node.input[0], fq)

    def _quant_params(self, node: onnx.NodeProto, scale: np.ndarray, attrs: dict[str, Any], mode: str,
                      source: np.ndarray | None) -> FakeQuant:
        zp = self.need(node, 2, "the zero point")
        bits_value = self.need(node, 3, "the bit width")
        bits = float(np.asarray(bits_value).reshape(-1)[0])
        if bits_value.size != 1 or bits != int(bits) or not 1 <= bits <= 16:
            raise UnsupportedError(f"node '{node.name}' ({node.op_type}): bit width {bits_value.tolist()} is not one "
                                   "integer in 1..16", hint=_HINT)
        z = np.asarray(zp, np.float64).reshape(-1)
        if not (z == z[0]).all() or z[0] != int(z[0]):
            raise UnsupportedError(f"node '{node.name}' ({node.op_type}): zero points must be one integer", hint=_HINT)
        b, signed, narrow = int(bits), bool(attrs.get("signed", 1)), bool(attrs.get("narrow", 1))
        if b == 1 and signed:
            raise UnsupportedError(f"node '{node.name}' ({node.op_type}): a 1-bit signed Quant is bipolar; "
                                   "write it as BipolarQuant", hint=_HINT)
        qmin = (-(1 << (b - 1)) + int(narrow)) if signed else 0
        qmax = (1 << (b - 1)) - 1 if signed else (1 << b) - 1 - int(narrow)
        z0 = int(z[0])
        if z0 % 2 and mode == "ROUND":  # round(v + z) ≠ round(v) + z at ties for odd z
            log.warning("node '%s': odd zero point %d; ties round as round(x/s + z)", node.name, z0)
        rank = source.ndim if source is not None else self._rank(node.input[0])
        axis = None if scale.size == 1 else _qonnx_axis(scale, source, rank)
        return FakeQuant(node.name, scale.reshape(-1), axis, qmin - z0, qmax - z0, max(b, 2) if signed else b, mode,
                         zero=z0, qonnx=True)

    # -- results --------------------------------------------------------------------------------------
    def _as_constant(self, node: onnx.NodeProto, value: np.ndarray, fq: FakeQuant) -> None:
        self._replace_const(node, value)
        if not (self.dtype(node.input[0]) == TensorProto.INT32 and _kind(node) == "DequantizeLinear"):
            self.found.weights[node.output[0]] = fq  # an int32 DequantizeLinear is a bias: no step

    def _replace_const(self, node: onnx.NodeProto, value: np.ndarray) -> None:
        self.new_inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), node.output[0]))
        self.removed.add(node.name)

    def _as_activation(self, node: onnx.NodeProto, x: str, fq: FakeQuant) -> None:
        if fq.bits > 16:
            raise UnsupportedError(f"node '{node.name}' ({node.op_type}): {fq.bits}-bit activations are not "
                                   "supported (16 bits at most)", hint=_HINT)
        if fq.lo > 0 or fq.hi < 0:
            raise UnsupportedError(f"node '{node.name}' ({node.op_type}): its codes {fq.lo}..{fq.hi} exclude 0",
                                   hint=_HINT)
        readers = self.readers.get(node.output[0], [])
        clamped = bool(readers) and all(r.op_type == "Relu" for r in readers)  # the readers clamp at 0 already
        relu = fq.lo == 0 and not clamped and not self._nonnegative(x)
        op = "Relu" if relu else "Identity"
        self.replaced[node.name] = helper.make_node(op, [x], [node.output[0]], name=node.name)
        self.found.activations[node.output[0]] = fq
        if fq.lo == 0:
            self.nonnegative.add(node.output[0])

    def _nonnegative(self, x: str) -> bool:
        """Whether ``x`` is a Relu's output or an unsigned fake quantizer's, maybe through
        pooling and reshapes (no Relu needs to be inserted after it)."""
        for _ in range(16):
            if x in self.nonnegative:
                return True
            node = self.producer.get(x)
            if node is None:
                return False
            if node.op_type == "Relu":
                return True
            if node.op_type not in (*_PASS_THROUGH, "MaxPool", "AveragePool", "GlobalAveragePool",
                                    "GlobalMaxPool") or node.name in self.replaced:
                return False
            x = node.input[0]
        return False

    def _stray_quantize(self, q: onnx.NodeProto) -> None:
        readers = [r for r in self.readers.get(q.output[0], []) if r.name not in self.removed]
        if readers or q.output[0] in {o.name for o in self.graph.output}:
            who = f"node '{readers[0].name}' ({readers[0].op_type})" if readers else "the graph output"
            raise UnsupportedError(f"{who} reads '{q.output[0]}', the integer output of QuantizeLinear "
                                   f"'{q.name}'; cimc imports Q→DQ pairs only", hint=_HINT)
        self.removed.add(q.name)

    def finish(self) -> None:
        nodes = [self.replaced.get(n.name, n) for n in self.graph.node
                 if n.name not in self.removed or n.name in self.replaced]
        set_repeated(self.graph.node, nodes)
        produced = {t.name for t in self.new_inits}
        set_repeated(self.graph.value_info, [vi for vi in self.graph.value_info if vi.name not in produced])
        read = {t for n in nodes for t in n.input} | {o.name for o in self.graph.output}
        kept = [t for t in self.graph.initializer if t.name in read]
        set_repeated(self.graph.initializer, kept + [t for t in self.new_inits if t.name in read])


def _positive(node: onnx.NodeProto, scale: np.ndarray) -> None:
    if not (np.isfinite(scale).all() and (scale > 0).all()):
        raise InvalidModelError(f"node '{node.name}' ({node.op_type}): scales must be finite and positive")


def _qonnx_axis(scale: np.ndarray, source: np.ndarray | None, rank: int | None = None) -> int | None:
    """The axis a QONNX scale (broadcast like numpy) varies along, ``None`` for one value."""
    if scale.size == 1:
        return None
    shape = scale.shape
    axes = [i for i, d in enumerate(shape) if d > 1]
    if len(axes) != 1:
        raise UnsupportedError(f"a QONNX scale of shape {shape} is not per tensor or per axis", hint=_HINT)
    full = rank if rank is not None else (source.ndim if source is not None else len(shape))
    return axes[0] + full - len(shape)


def _trunc(node: onnx.NodeProto, x: np.ndarray, rw: _Rewriter, attrs: dict[str, Any], mode: str) -> np.ndarray:
    """QONNX ``Trunc`` of a constant (qonnx ``trunc``): round, drop ``log2(s_out/s)`` low bits, clip."""
    s, z = rw.need(node, 1, "the scale"), rw.need(node, 2, "the zero point")
    out_scale, out_bits = rw.need(node, 4, "the output scale"), rw.need(node, 6, "the output bit width")
    _positive(node, np.asarray(out_scale, np.float32))
    if out_bits.size != 1 or not 1 <= int(np.asarray(out_bits).reshape(-1)[0]) <= 32:
        raise UnsupportedError(f"node '{node.name}' (Trunc): output bit width {out_bits.tolist()} is not one integer "
                               "in 1..32", hint=_HINT)
    try:
        np.broadcast_shapes(x.shape, s.shape, z.shape, out_scale.shape)
    except ValueError as exc:
        raise InvalidModelError(f"node '{node.name}' (Trunc): operands do not broadcast: {exc}") from None
    b = int(np.asarray(out_bits).reshape(-1)[0])
    signed, narrow = bool(attrs.get("signed", 1)), bool(attrs.get("narrow", 0))
    lo = (-(1 << (b - 1)) + int(narrow)) if signed else 0
    hi = (1 << (b - 1)) - 1 if signed else (1 << b) - 1 - int(narrow)
    y = np.rint(x.astype(np.float32) / s + z)
    t = 2.0 ** np.rint(np.log2(out_scale / s))
    y = {"ROUND": np.rint, "FLOOR": np.floor, "CEIL": np.ceil}[mode](np.clip(y / t, lo, hi))
    return ((y - z / t) * out_scale).astype(np.float32)


# -- per layer ------------------------------------------------------------------------------------
_PASS_THROUGH = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")


def _output_axis(node: onnx.NodeProto, rank: int) -> int:
    """The weight axis of the output channels: Conv 0, Gemm 0 (transB) or 1, MatMul the last."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        trans = {a.name: helper.get_attribute_value(a) for a in node.attribute}.get("transB", 0)
        return 0 if trans else 1
    return rank - 1


def _input_quantizer(rw: _Rewriter, tensor: str) -> FakeQuant | None:
    """The activation quantizer of ``tensor``, looking through reshapes."""
    for _ in range(8):
        if tensor in rw.found.activations:
            return rw.found.activations[tensor]
        node = rw.producer.get(tensor)
        if node is None or node.op_type not in _PASS_THROUGH or node.name in rw.replaced:
            return None
        tensor = node.input[0]
    return None


def _weight_entry(node: onnx.NodeProto, fq: FakeQuant, rank: int) -> tuple[dict[str, Any], str | None]:
    bits, signed, reason = fq.cim_range()
    if reason is None and not signed:
        reason = f"unsigned weight codes {fq.lo}..{fq.hi} (cimc's cells hold signed codes)"
    if reason is None and fq.axis is not None and fq.axis != _output_axis(node, rank):
        reason = f"per-axis scale along weight axis {fq.axis}, not the output channels"
    if reason is not None:
        return {"w_bits": None, "w_step": None}, f"weights ({fq.node}): {reason}; S_W calibrated"
    return {"w_bits": bits, "w_step": [float(s) for s in fq.step]}, None


def _input_entry(fq: FakeQuant | None) -> tuple[dict[str, Any], str | None]:
    if fq is None:
        return {"a_bits": None, "a_step": None, "a_signed": None}, "input not quantized in the model; S_A calibrated"
    bits, signed, reason = fq.cim_range()
    if reason is None and fq.axis is not None:
        reason = "per-axis activation scale"
    if reason is not None:
        return {"a_bits": None, "a_step": None, "a_signed": None}, f"input ({fq.node}): {reason}; S_A calibrated"
    return {"a_bits": bits, "a_step": float(fq.step[0]), "a_signed": signed}, None


def _layers(rw: _Rewriter) -> dict[str, dict[str, Any]]:
    layers: dict[str, dict[str, Any]] = {}
    for node in rw.graph.node:
        if node.domain not in DEFAULT_DOMAINS or node.op_type not in ("Conv", "Gemm", "MatMul") or \
                len(node.input) < 2 or node.input[1] not in rw.found.weights:
            continue
        weight = next(t for t in rw.new_inits if t.name == node.input[1])
        w, w_note = _weight_entry(node, rw.found.weights[node.input[1]], len(weight.dims))
        a, a_note = _input_entry(_input_quantizer(rw, node.input[0]))
        layers[node.name] = {**w, **a, "notes": [n for n in (w_note, a_note) if n]}
    return layers


def import_quantizers(model: onnx.ModelProto, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> str | None:
    """Rewrite ``model``'s quantizers in place (module doc); the ``cimc.qdq`` document of the
    layers' steps, or ``None`` for a model without quantizers. A constant they decode may take
    ``max_tensor_bytes`` as float32."""
    if not has_quantizers(model.graph):
        return None
    rw = _Rewriter(model, max_tensor_bytes)
    rw.run()
    rw.finish()
    layers = _layers(rw)
    for name, entry in sorted(layers.items()):
        for note in entry["notes"]:
            log.warning("layer '%s': %s", name, note)
    log.info("quantized model: %d weight and %d activation quantizer(s), steps for %d layer(s)",
             len(rw.found.weights), len(rw.found.activations), len(layers))
    return json.dumps({"version": VERSION, "layers": layers}, sort_keys=True)
