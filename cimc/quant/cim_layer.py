"""One CIM layer as the numerical contract sees it (docs/build-format.md, 'The numerical contract'),
read off an annotated node.

Every CIM layer is a (grouped) 2-D convolution: a ``Conv`` as is, a ``Gemm``/``MatMul`` as a
1×1 convolution over ``K`` input channels with ``W = α · B'ᵀ`` of shape ``(Cout, K, 1, 1)``
(``B' = Bᵀ`` when ``transB``) and bias ``b = β · C``. With ``QuantParams`` and, after
scale-to-shift, ``Shift``:

    scale = 2^−k                           if the layer has a Shift
          = S_W · S_ADC · S_A              otherwise (``numerics.output_scale``)
    b'    = b · gain                       (``gain ≠ 1`` only when the shift was folded
                                             into the readers' activation steps)

``CimSpec`` bundles what every executor needs (the numpy reference, the ONNX exporter and the
build files the emulator reads), so all of them derive codes, scales and biases one way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cimc.errors import InvalidModelError, UnsupportedError
from cimc.ir.annotations import CimLayer, QuantParams, Shift, WordlineTiling
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.ops.windows import window_out
from cimc.quant import numerics, slicing


@dataclass(frozen=True, eq=False)
class CimSpec:
    """A CIM layer: float weights ``(Cout, Cin_g, kh, kw)``, bias ``(Cout,)``, geometry,
    segment bounds (rows of one group) and its quantization (``None`` before quantize)."""

    name: str
    kind: str
    weight: np.ndarray
    bias: np.ndarray
    groups: int
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    dilations: tuple[int, int]
    bounds: tuple[int, ...]
    quant: QuantParams | None
    shift: Shift | None

    @property
    def cout(self) -> int:
        return int(self.weight.shape[0])

    @property
    def cin_g(self) -> int:
        return int(self.weight.shape[1])

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weight.shape[2]), int(self.weight.shape[3])

    @property
    def rows(self) -> int:
        return self.cin_g * self.kernel[0] * self.kernel[1]

    def out_hw(self, hw: tuple[int, ...]) -> tuple[int, int]:
        """Output ``(Ho, Wo)`` on an ``hw`` input: ``⌊(size + pads − (k − 1)·d − 1) / s⌋ + 1``."""
        (kh, kw), (dh, dw) = self.kernel, self.dilations
        return window_out(hw, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), self.strides, self.pads)

    @property
    def num_segments(self) -> int:
        return len(self.bounds) - 1

    @property
    def q(self) -> QuantParams:
        if self.quant is None:
            raise InvalidModelError(f"CIM layer '{self.name}' is not quantized (run the quantize pass)")
        return self.quant

    def codes(self) -> np.ndarray:
        """Cell codes ``w_q`` of shape ``(Cout, Cin_g, kh, kw)`` (integer-valued float32)."""
        q = self.q
        return numerics.weight_codes(self.weight, q.w_step, q.w_bits, slicing.code_max(q.w_bits, q.cell_bits,
                                                                                       q.w_digits))

    def scale(self) -> np.ndarray:
        """The output scale the hardware applies: ``2^−k`` or ``S_W·S_ADC·S_A`` (float32)."""
        if self.shift is not None:
            return numerics.shift_scale(self.shift.k)
        return numerics.output_scale(self.q.w_step, self.q.adc_step, self.q.a_step)

    def applied_bias(self) -> np.ndarray:
        """``b' = b · gain`` in float32 (``b`` itself when no gain was folded)."""
        if self.shift is None or self.shift.gain == 1.0:
            return self.bias
        return (self.bias * np.float32(self.shift.gain)).astype(np.float32)


def cim_spec(graph: Graph, node: Node) -> CimSpec:
    """The ``CimSpec`` of a node annotated ``CimLayer`` and ``WordlineTiling``."""
    layer = node.ann.get_ann(CimLayer)
    tiling = node.ann.get_ann(WordlineTiling)
    if layer is None or tiling is None:
        raise InvalidModelError(f"node '{node.name}' is not a tiled CIM layer")
    if node.op == "Conv":
        geometry = (tuple(node.attrs["strides"]), tuple(node.attrs["pads"]), tuple(node.attrs["dilations"]))
    else:
        geometry = ((1, 1), (0, 0, 0, 0), (1, 1))
    strides, pads, dilations = geometry
    return CimSpec(node.name, layer.kind, layer_weight(graph, node), layer_bias(graph, node), layer.groups,
                   strides, pads, dilations, tiling.bounds,
                   node.ann.get_ann(QuantParams), node.ann.get_ann(Shift))


def layer_weight(graph: Graph, node: Node) -> np.ndarray:
    """Float32 weights ``(Cout, Cin_g, kh, kw)``; a Gemm/MatMul gives ``(Cout, K, 1, 1)``."""
    w = np.asarray(graph.initializers[node.inputs[1]], dtype=np.float32)
    if node.op == "Conv":
        return w
    if node.op == "Gemm":
        w = w if node.attrs["transB"] else w.T
        alpha = float(node.attrs["alpha"])
        w = w if alpha == 1.0 else (w * np.float32(alpha)).astype(np.float32)
    else:
        w = w.T
    return np.ascontiguousarray(w).reshape(w.shape[0], w.shape[1], 1, 1)


def layer_bias(graph: Graph, node: Node) -> np.ndarray:
    """Float32 bias ``(Cout,)`` added after the scale (zeros when the layer has none)."""
    cout = int(graph.shape(node.inputs[1])[0 if node.op == "Conv" or node.attrs.get("transB") else 1])
    if node.op == "MatMul" or len(node.inputs) < 3 or not node.inputs[2]:
        return np.zeros(cout, dtype=np.float32)
    b = np.asarray(graph.initializers.get(node.inputs[2], np.empty(0)), dtype=np.float32)
    if node.inputs[2] not in graph.initializers:
        raise UnsupportedError(f"CIM layer '{node.name}' ({node.op}) has a non-constant bias '{node.inputs[2]}'")
    if node.op == "Gemm":
        if b.size not in (1, cout) or (b.ndim == 2 and b.shape[0] != 1):
            raise UnsupportedError(f"CIM layer '{node.name}' (Gemm) has a bias of shape {b.shape}; "
                                   f"only one value per output column ({cout}) can be mapped")
        beta = float(node.attrs["beta"])
        b = b if beta == 1.0 else (b * np.float32(beta)).astype(np.float32)
    return np.ascontiguousarray(np.broadcast_to(b.reshape(-1), (cout,)), dtype=np.float32)


def code_matrix(graph: Graph, node: Node) -> np.ndarray:
    """Cell codes as the macro stores them: ``(Cout, rows)``, row ``r = c·kh·kw + i·kw + j``
    (integer-valued float32; the macro backend stores them as int8)."""
    codes = cim_spec(graph, node).codes()
    return codes.reshape(codes.shape[0], -1)


def digit_matrix(graph: Graph, node: Node) -> np.ndarray:
    """Weight digits as the macro's cells hold them: ``(Cout·S, rows)``, row ``o·S + j`` being
    digit ``j`` (``cimc.quant.slicing.weight_digits``: two's complement, the last signed, or offset
    digits, all signed) of channel ``o``'s codes, so ``Σ_j 2^(j·cell_bits) · row[o·S + j] =
    code_matrix[o]``. One slice: the codes."""
    codes = code_matrix(graph, node)
    q = cim_spec(graph, node).q
    return slicing.digit_columns(codes, q.w_bits, q.cell_bits, q.w_digits)


def cell_dtype(cell_bits: int) -> type[np.signedinteger]:
    """The integer type holding codes of ``cell_bits``: int8 up to 8 bits, else int16. (A
    sliced layer's lower digits are unsigned ``[0, 2^cell_bits − 1]``: 8-bit cells holding
    them need ``cell_dtype(9)``.)"""
    return np.int8 if cell_bits <= 8 else np.int16
