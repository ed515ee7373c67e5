"""The bitline product of a CIM layer as a small onnxruntime model, pixel-major.

Per segment part ``k`` (``MacroLayer.parts``) the pixel-major im2col rows ``rows{k}`` ``(S_k,
G, M, R_k)`` (``run.patches``, wordlines in ``layers.feed_order``; a part of thin or gathered
channels, ``layers.pixel_rows``, comes channel-major, ``(S_k, G, R_k, M)``, and is transposed
inside the model) are multiplied by the constant columns ``(S_k, G, R_k, W)``, ``W =
Cout_g·S_w``, their wordlines in the same order (the weights on the right, where onnxruntime
prepacks them): ``sums{k}`` ``(S_k, G, M, W)``, one row of partial sums per pixel.

The product is onnxruntime's ``MatMulInteger`` (uint8 input digits, int8 weight digits, int32
sums; exact) when the digits fit and cannot saturate (``integer_product``), else its float
``MatMul`` (exact too: the quantize pass refuses a layer whose sums could reach ``2^24``). A
signed input digit ``d ∈ [lo, hi]`` is fed as ``d − lo`` with ``a_zero_point = −lo``
(onnxruntime's signed×signed kernel was 7–13× slower than its unsigned×signed one on
ResNet-50's shapes). On x86 without VNNI the unsigned×signed kernel multiplies with
``VPMADDUBSW``, which adds two products in saturating int16: the integer product is chosen
only when ``2 · max a · max|w| ≤ 32767`` for the fed digits ``a``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from cimc.emulator.layers import MacroLayer, feed_order, pixel_rows
from cimc.frontend.onnx_export import EXPORT_IR_VERSION, EXPORT_OPSET
from cimc.quant import slicing

#: The largest pair sum ``a0·w0 + a1·w1`` a saturating int16 holds (``VPMADDUBSW``).
INT16_MAX = 32767


@dataclass(frozen=True, eq=False)
class BitlineProduct:
    """A layer's bitline product: the session, the dtype of its rows (``uint8`` for the
    integer product, else ``float32``) and the ``offset`` added to each input digit to feed it
    (``−lo`` for signed digits of the integer product, else 0)."""

    session: ort.InferenceSession
    dtype: type[np.generic]
    offset: int

    @property
    def integer(self) -> bool:
        return self.dtype == np.uint8


def input_digit_range(layer: MacroLayer) -> tuple[int, int]:
    """``(lo, hi)`` over every DAC cycle's input digits of the layer (``slicing.digit_range``)."""
    width = layer.dac_bits if layer.a_slices > 1 else None
    ranges = [slicing.digit_range(layer.a_bits, width, layer.a_signed, j) for j in range(layer.a_slices)]
    return min(lo for lo, _ in ranges), max(hi for _, hi in ranges)


def integer_product(lo: int, hi: int, w_max: int) -> bool:
    """Whether input digits in ``[lo, hi]`` (fed as ``d − min(lo, 0)``) and weight digits of
    magnitude at most ``w_max`` run exactly in ``MatMulInteger`` u8×s8: the fed digits fit
    uint8, the weights int8, and no pair of products saturates int16 (module doc)."""
    a_max = hi - min(lo, 0)
    return a_max <= 255 and w_max <= 127 and 2 * a_max * w_max <= INT16_MAX


def weight_max(layer: MacroLayer) -> int:
    """``max |w|`` over the layer's cells."""
    return int(max(np.abs(part.weight).max(initial=0) for part in layer.parts))


def bitline_product(layer: MacroLayer, threads: int = 0) -> BitlineProduct:
    """The layer's bitline product (module doc) on ``threads`` onnxruntime threads (0: its
    default, one per core, as the float model it is compared with uses; 1: on the calling
    thread, for the emulator's lanes, ``cimc.emulator.lanes``); they do not spin between runs,
    where they would take a core from the numpy work between two layers."""
    lo, hi = input_digit_range(layer)
    integer = integer_product(lo, hi, weight_max(layer))
    offset = -min(lo, 0) if integer else 0
    nodes, inputs, outputs, inits = [], [], [], []
    for k, part in enumerate(layer.parts):
        s_count, groups, _, rows = part.weight.shape
        weight = part.weight[..., feed_order(part, layer.kernel)]
        columns = np.ascontiguousarray(weight.transpose(0, 1, 3, 2), dtype=np.int8 if integer else np.float32)
        inits.append(numpy_helper.from_array(columns, f"columns{k}"))
        pixel_major = pixel_rows(part, layer.kernel)
        pixels = f"rows{k}" if pixel_major else f"pixels{k}"
        if not pixel_major:
            nodes.append(helper.make_node("Transpose", [f"rows{k}"], [pixels], perm=[0, 1, 3, 2]))
        if integer:
            nodes.append(helper.make_node("MatMulInteger", [pixels, f"columns{k}", "zero"], [f"sums{k}"]))
        else:
            nodes.append(helper.make_node("MatMul", [pixels, f"columns{k}"], [f"sums{k}"]))
        dtype = TensorProto.UINT8 if integer else TensorProto.FLOAT
        shape = [s_count, groups, "m", rows] if pixel_major else [s_count, groups, rows, "m"]
        inputs.append(helper.make_tensor_value_info(f"rows{k}", dtype, shape))
        outputs.append(helper.make_tensor_value_info(f"sums{k}", TensorProto.INT32 if integer else TensorProto.FLOAT,
                                                     None))
    if integer:
        inits.append(numpy_helper.from_array(np.array(offset, dtype=np.uint8), "zero"))
    session = quiet_session(helper.make_graph(nodes, "bitline_sums", inputs, outputs, inits), threads)
    return BitlineProduct(session, np.uint8 if integer else np.float32, offset)


def quiet_session(graph: onnx.GraphProto, threads: int) -> ort.InferenceSession:
    """An onnxruntime session of ``graph`` (the exporter's opset and IR version) on the CPU with
    ``threads`` intra-op threads (0: its default), which do not spin between runs, where they
    would take a core from the numpy work between two layers."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", EXPORT_OPSET)],
                              ir_version=EXPORT_IR_VERSION)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
