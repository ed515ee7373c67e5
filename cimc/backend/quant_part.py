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
from pydantic import ValidationError

from cimc.backend.compute_files import digital_parts, graph_document, quant_document
from cimc.backend.layout import macro_arrays
from cimc.build.file_parts import FileData
from cimc.documents import dumps
from cimc.documents.quant import Quant
from cimc.errors import InvalidModelError
from cimc.ir.annotations import QuantParams
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.lowering.model import cim_model_parts
from cimc.macro import MacroSpec
from cimc.quant.cim_layer import cell_dtype, digit_matrix
from cimc.quant.reference import PROBES, probe_feeds, run_compiled

if TYPE_CHECKING:
    from cimc.passes.context import PassContext


def is_quantized(nodes: list[Node]) -> bool:
    return all(QuantParams in n.ann for n in nodes)


def code_arrays(graph: Graph, nodes: list[Node], macro: MacroSpec, macros: int) -> np.ndarray:
    """``(macros, WL, BL)`` cell codes (weight digits) of every macro (idle cells 0)."""
    sliced = any(n.ann[QuantParams].w_slices > 1 for n in nodes)
    dtype = cell_dtype(macro.cell_bits + 1 if sliced else macro.cell_bits)  # unsigned lower digits
    return macro_arrays(graph, nodes, macro, macros, dtype=dtype, matrix=digit_matrix)


def quantized_files(graph: Graph, nodes: list[Node]) -> dict[str, FileData]:
    """``quant.json``, ``graph.json``, ``digital.safetensors`` and ``model.cim.onnx``; a
    non-finite or underflowing number is an ``InvalidModelError``, never a NaN build. The last
    two are pieces (``FileParts``) whose large weights are ``graph``'s arrays, not copies."""
    doc, constants = graph_document(graph, nodes)
    try:
        quant = quant_document(graph, nodes)
    except ValidationError as exc:  # a step of 0 or NaN from exploding or vanishing values
        first = exc.errors()[0]
        where = "/".join(str(p) for p in first.get("loc", ()))
        raise InvalidModelError(f"the quantization of this model is not representable: quant.json {where}: "
                                f"{str(first.get('msg', ''))[:120]} (input {str(first.get('input'))[:40]})",
                                hint="the weights or activations are too small, too large or not finite "
                                     "to quantize") from exc
    check_finite(quant, constants)
    check_probes(graph)
    return {"quant.json": dumps(quant, compact=True), "graph.json": dumps(doc, compact=True),
            "digital.safetensors": digital_parts(constants), "model.cim.onnx": cim_model_parts(graph)}


def check_probes(graph: Graph) -> None:
    """The compiled model's outputs are finite on the random batches ``cimc validate`` runs
    (``reference.PROBES``): a model whose values overflow float32 is an ``InvalidModelError``,
    not a build that validate refuses."""
    shapes = {name: graph.shape(name) for name in graph.inputs}
    for seed, scale in PROBES:
        with np.errstate(all="ignore"):
            outputs = run_compiled(graph, probe_feeds(shapes, seed, scale)).outputs
        broken = [name for name, value in outputs.items() if value.dtype.kind == "f" and not np.isfinite(value).all()]
        if broken:
            raise InvalidModelError(f"the compiled model computes non-finite values in output '{broken[0]}' on "
                                    f"random inputs (standard normal × {scale}): its values overflow float32",
                                    hint="the weights or activations are too large to compile")


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
