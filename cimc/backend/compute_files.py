"""The build files that say how the macros compute, next to ``layout.json`` and the cell codes
in ``weights.safetensors``. The emulator reads these and nothing else.

* ``quant.json``: per CIM layer (in ``layout.json``'s layer order) its bits, steps
  (``w_step``, ``a_step``, ``adc_step``; 1 or Cout values), ``a_signed``, the output scale it
  applies (``2^−k`` or ``S_W·S_ADC·S_A``), the bias ``b'`` it adds, and its shift
  (``k``, exact scale, relative error, fold, gain, SQNR) or ``null``; and its bit-slicing
  (``cimc.quant.slicing``): the macro's ``cell_bits`` and ``dac_bits`` (``null``: not sliced),
  ``w_slices = ceil(w_bits / cell_bits)`` digit columns per output channel and
  ``a_slices = ceil(a_bits / dac_bits)`` DAC cycles (1 and 1: the unsliced contract), and
  ``adc_shift``: ``m_{t,j}`` per kind of conversion in the order ``(t, j)`` (ADC step
  ``S_ADC·2^−m``, shift-add weight ``2^(j·cell_bits + t·dac_bits − m)``) or ``null`` (all 0);
  ``w_digits: "offset"`` when the weight digits are all signed (absent: two's complement).
* ``graph.json``: every node in execution order: ``op``, inputs, outputs, attributes
  (lists for tuples, ``{"float": "inf"}`` for non-finite numbers), and for a CIM layer its
  ``cim_layer`` index (its weights and bias are not listed: they live in the macros and in
  ``quant.json``). Reshapes keep the batch free (``-1``). ``constants`` maps the tensors
  digital ops read to keys of ``digital.safetensors``.
* ``digital.safetensors``: those constants (``const_0000`` …), float32.

Every float is a float32 value written as the shortest decimal that reads back to it.
"""

from __future__ import annotations

import math
from typing import Any, Literal, cast

import numpy as np

from cimc.build.file_parts import FileParts
from cimc.build.weights_file import safetensors_parts
from cimc.documents.base import Decibels
from cimc.documents.graph import GRAPH_FORMAT, GraphDoc, NodeDoc, TensorDoc
from cimc.documents.quant import QUANT_FORMAT, VERSION, Fold, Granularity, Quant, QuantLayer, ShiftDoc, Source
from cimc.ir.annotations import Shift
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.quant.batching import batch_generic, static_batch
from cimc.quant.cim_layer import CimSpec, cim_spec


def floats(values: np.ndarray | float) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float32).reshape(-1)]


def quant_document(graph: Graph, nodes: list[Node]) -> Quant:
    """``quant.json`` (module doc)."""
    specs = [cim_spec(graph, n) for n in nodes]
    per_column = [s.q.per_column for s in specs]
    granularity = "column" if all(per_column) and specs else "layer" if not any(per_column) else "mixed"
    return Quant(format=QUANT_FORMAT, version=VERSION, granularity=cast(Granularity, granularity),
                 layers=[_layer(i, spec) for i, spec in enumerate(specs)])


def _layer(index: int, spec: CimSpec) -> QuantLayer:
    q = spec.q
    offset: dict[str, Literal["offset"]] = {"w_digits": "offset"} if q.w_digits == "offset" and q.w_slices > 1 else {}
    return QuantLayer(index=index, node=spec.name, source=cast(Source, q.source), w_bits=q.w_bits, a_bits=q.a_bits,
                      adc_bits=q.adc_bits, w_step=floats(q.w_step), a_step=floats(q.a_step)[0], a_signed=q.a_signed,
                      adc_step=floats(q.adc_step), scale=floats(spec.scale()), bias=floats(spec.applied_bias()),
                      shift=_shift(spec.shift), cell_bits=q.cell_bits, dac_bits=q.dac_bits, w_slices=q.w_slices,
                      a_slices=q.a_slices, adc_shift=None if q.adc_shift is None else [int(m) for m in q.adc_shift],
                      **offset)


def _shift(shift: Shift | None) -> ShiftDoc | None:
    if shift is None:
        return None
    sqnr: Decibels = shift.sqnr_db
    if shift.sqnr_db is not None and not math.isfinite(shift.sqnr_db):
        sqnr = "inf" if shift.sqnr_db > 0 else "-inf"
    return ShiftDoc(k=[int(k) for k in shift.k], exact_scale=floats(shift.exact_scale),
                    relative_error=float(shift.relative_error), fold=cast(Fold, shift.fold), gain=float(shift.gain),
                    sqnr_db=sqnr)


def encode_attr(value: Any) -> Any:
    """JSON form of an attribute value (module doc)."""
    if isinstance(value, (list, tuple)):
        return [encode_attr(v) for v in value]
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else {"float": repr(float(value))}
    raise TypeError(f"cannot write attribute value {value!r}")


def decode_attr(value: Any) -> Any:
    """Inverse of ``encode_attr`` (lists come back as tuples)."""
    if isinstance(value, list):
        return tuple(decode_attr(v) for v in value)
    if isinstance(value, dict):
        return float(value["float"])
    return value


def graph_document(graph: Graph, nodes: list[Node]) -> tuple[GraphDoc, dict[str, np.ndarray]]:
    """``graph.json`` and the arrays of ``digital.safetensors`` (module doc)."""
    generic = batch_generic(graph)
    index = {n.name: i for i, n in enumerate(nodes)}
    constants: dict[str, str] = {}
    arrays: dict[str, np.ndarray] = {}
    entries = []
    for node in generic.topo_order():
        inputs = list(node.inputs[:1]) if node.name in index else list(node.inputs)
        for t in inputs:
            if t in generic.initializers and t not in constants:
                constants[t] = f"const_{len(constants):04d}"
                arrays[constants[t]] = np.ascontiguousarray(generic.initializers[t], dtype=np.float32)
        entries.append(NodeDoc(name=node.name, op=node.op, inputs=inputs, outputs=list(node.outputs),
                               attrs={k: encode_attr(v) for k, v in sorted(node.attrs.items())},
                               cim_layer=index.get(node.name)))
    doc = GraphDoc(format=GRAPH_FORMAT, version=VERSION, batch=static_batch(graph),
                   inputs=[_tensor(graph, t) for t in graph.inputs],
                   outputs=[_tensor(graph, t) for t in graph.outputs], nodes=entries, constants=constants)
    return doc, arrays


def _tensor(graph: Graph, name: str) -> TensorDoc:
    return TensorDoc(name=name, shape=list(graph.shape(name)))


def digital_parts(arrays: dict[str, np.ndarray]) -> FileParts:
    """``digital.safetensors``: ``safetensors.numpy.save(arrays, metadata=...)`` byte for byte, as
    pieces that are the arrays themselves (float32, so one dtype: ``safetensors_parts``)."""
    return safetensors_parts(arrays, {"format": "cimc-digital-constants"})
