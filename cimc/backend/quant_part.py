"""The quantized part of a build directory, written by the macro backend when every CIM layer
carries ``QuantParams``:

* ``weights.safetensors`` holds the cell codes (int8; int16 above 8-bit cells, or for
  8-bit cells holding unsigned digits) instead of float weights (``code_arrays``): one weight
  digit per cell in a bit-sliced layer (``cim_layer.digit_matrix``), the code itself else;
* ``quant.json``, ``graph.json``, ``digital.safetensors`` (``cim_files``) and
  ``model.cim.onnx`` (``cim_onnx``) are added (``quantized_files``);
* ``report.json`` gains ``quantization`` and, with evaluation data, ``accuracy``
  (``cim_report``).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from cimc.backend.compute_files import digital_bytes, graph_document, quant_document
from cimc.backend.layout import macro_arrays
from cimc.documents import dumps
from cimc.documents.quant import Quant
from cimc.errors import InvalidModelError
from cimc.ir.annotations import QuantParams
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.lowering.model import cim_model, serialize
from cimc.macro import MacroSpec
from cimc.quant.cim_layer import cell_dtype, digit_matrix

if TYPE_CHECKING:
    from cimc.passes.context import PassContext


def is_quantized(nodes: list[Node]) -> bool:
    return all(QuantParams in n.ann for n in nodes)


def code_arrays(graph: Graph, nodes: list[Node], macro: MacroSpec, macros: int) -> np.ndarray:
    """``(macros, WL, BL)`` cell codes (weight digits) of every macro (idle cells 0)."""
    sliced = any(n.ann[QuantParams].w_slices > 1 for n in nodes)
    dtype = cell_dtype(macro.cell_bits + 1 if sliced else macro.cell_bits)  # unsigned lower digits
    return macro_arrays(graph, nodes, macro, macros, dtype=dtype, matrix=digit_matrix)


def quantized_files(graph: Graph, nodes: list[Node]) -> dict[str, bytes]:
    """``quant.json``, ``graph.json``, ``digital.safetensors`` and ``model.cim.onnx``; a
    non-finite or underflowing number is an ``InvalidModelError``, never a NaN build."""
    doc, constants = graph_document(graph, nodes)
    quant = quant_document(graph, nodes)
    check_finite(quant, constants)
    return {"quant.json": dumps(quant, compact=True), "graph.json": dumps(doc, compact=True),
            "digital.safetensors": digital_bytes(constants), "model.cim.onnx": serialize(cim_model(graph))}


def check_finite(quant: Quant, constants: dict[str, np.ndarray]) -> None:
    """Every step and scale of every CIM layer a normal positive float32 (``≥ 2^−126``, finite:
    a step that underflows to 0 or to a denormal divides by zero or loses the codes), every
    bias and digital constant finite."""
    tiny, huge = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)
    for layer in quant.layers:
        for key in ("w_step", "a_step", "adc_step", "scale"):
            values = np.atleast_1d(np.asarray(getattr(layer, key), dtype=np.float64))
            bad = values[~((values >= tiny) & (values <= huge))]  # NaN is bad too
            if bad.size:
                raise InvalidModelError(f"layer '{layer.node}': the quantization {key} is {float(bad[0])}, not a "
                                        "normal positive float32",
                                        hint="the weights or activations are too small, too large or not finite "
                                             "to quantize (denormal weights, vanishing or exploding activations)")
        if not np.isfinite(np.asarray(layer.bias, dtype=np.float64)).all():
            raise InvalidModelError(f"layer '{layer.node}': the folded bias is not finite")
    for key, array in constants.items():
        if not np.isfinite(array).all():
            raise InvalidModelError(f"digital constant {key} holds non-finite values")


def quant_info(ctx: PassContext) -> dict[str, Any]:
    """The facts of the compile the report needs, from the pass context's typed results."""
    info: dict[str, Any] = asdict(ctx.quantize) if ctx.quantize is not None else {}
    cal = ctx.calibration
    if cal is not None and info.get("calibrated_layers"):
        info["calibration"] = {"source": cal.source, "samples": cal.size}
    info.update(asdict(ctx.shift) if ctx.shift is not None else {})
    return info
