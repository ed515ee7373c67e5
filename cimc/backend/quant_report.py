"""The quantization and accuracy sections of ``report.json`` and ``report.md``.

``quantization``: how the steps were obtained (QAT or calibration, on which data), the
granularity, and per CIM layer its bits, steps (one value, or min and max over columns),
shift ``k`` values, relative scale error ``|2^−k − s|/s``, where the remainder was folded, and
the SQNR of the layer's output against the unshifted model (dB; ``"inf"`` when identical).
``accuracy``: top-1 of the float model and of the compiled model on the same samples (with
labels), how often they agree, the output SQNR, per CIM layer its SQNR and loss by source
(``cimc.evaluation``, ``cimc.quant.loss``) and the warning above the threshold — what the
hardware numerics cost; without evaluation data, ``accuracy_unknown`` says why it is unknown.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np

from cimc.documents.base import Decibels
from cimc.documents.quant import Source
from cimc.documents.report import Accuracy, Calibration, LayerLoss, Quantization, QuantRow, Report, Span
from cimc.ir.annotations import Shift
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.quant.cim_layer import cim_spec


def _span(values: np.ndarray) -> Span:
    v = np.asarray(values, dtype=np.float32)
    return Span(min=float(v.min()), max=float(v.max()))


def _db(value: float | None) -> Decibels:
    if value is None or math.isfinite(value):
        return value
    return "inf" if value > 0 else "-inf"


def layer_entry(graph: Graph, node: Node) -> QuantRow:
    spec = cim_spec(graph, node)
    q, shift = spec.q, node.ann.get_ann(Shift)
    shifted: dict[str, Any] = {} if shift is None else {
        "shift_k": sorted({int(k) for k in shift.k}), "scale_error": float(shift.relative_error),
        "fold": shift.fold, "sqnr_db": _db(shift.sqnr_db)}
    return QuantRow(name=node.name, source=cast(Source, q.source), w_bits=q.w_bits, a_bits=q.a_bits,
                    adc_bits=q.adc_bits, a_signed=q.a_signed, a_step=float(q.a_step), w_step=_span(q.w_step),
                    adc_step=_span(q.adc_step), **shifted)


def quantization_section(graph: Graph, nodes: list[Node], info: dict[str, Any]) -> Quantization:
    """``report.json["quantization"]``; ``info`` holds the compile's calibration facts."""
    shifted = any(Shift in n.ann for n in nodes)
    cal = info.get("calibration")
    return Quantization(calibration=None if cal is None else Calibration(**cal),
                        granularity=info.get("granularity", "layer"), weight_method=info.get("weight_method", "mse"),
                        qat_layers=info.get("qat_layers", []), shift=shifted,
                        output_sqnr_db=_db(info.get("output_sqnr_db")),
                        layers=[layer_entry(graph, n) for n in nodes])


def _step(span: Span) -> str:
    return f"{span.min:.4g}" if span.min == span.max else f"{span.min:.4g}…{span.max:.4g}"


def quantization_markdown(doc: Report) -> str:
    """The markdown of both sections (empty when the report has neither)."""
    lines: list[str] = []
    quant = doc.quantization
    if quant is not None:
        cal = quant.calibration
        source = f"calibrated on {cal.source} ({cal.samples} samples)" if cal else "from QAT"
        lines += ["", "## Quantization", "",
                  f"Steps {source}, per {quant.granularity}; "
                  f"{'power-of-two shifts' if quant.shift else 'exact output scales'}.", "",
                  "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        lines += [_quant_row(layer) for layer in quant.layers]
        if quant.output_sqnr_db is not None:
            lines += ["", f"Model output SQNR, shifted vs exact scales: {_db_text(quant.output_sqnr_db)} dB."]
    lines += accuracy_markdown(doc)
    return "\n".join(lines) + ("\n" if lines else "")


HEADERS = ("layer", "source", "bits w/a/adc", "S_A", "S_W", "S_ADC", "shift k", "scale error", "fold", "SQNR dB")


def quant_cells(layer: QuantRow) -> list[str]:
    """One layer's row of the quantization table (``HEADERS``)."""
    bits = f"{layer.w_bits}/{layer.a_bits}{'s' if layer.a_signed else ''}/{layer.adc_bits}"
    shift = ",".join(str(k) for k in layer.shift_k or []) or "—"
    error = "—" if layer.scale_error is None else f"{100 * layer.scale_error:.1f}%"
    sqnr_text = _db_text(layer.sqnr_db)
    return [layer.name, layer.source, bits, f"{layer.a_step:.4g}", _step(layer.w_step), _step(layer.adc_step),
            shift, error, layer.fold or "—", sqnr_text]


def _quant_row(layer: QuantRow) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in quant_cells(layer)) + " |"


LOSS_HEADERS = ("layer", "SQNR dB", "alone dB", "weights dB", "DAC dB", "ADC dB", "shift dB", "dominant")


def _db_text(value: Decibels) -> str:
    return "—" if value is None else value if isinstance(value, str) else f"{value:.1f}"


def loss_cells(layer: LayerLoss) -> list[str]:
    """One layer's row of the loss table (``LOSS_HEADERS``)."""
    return [layer.name, *(_db_text(v) for v in (layer.sqnr_db, layer.local_sqnr_db, layer.weights_db, layer.dac_db,
                                                layer.adc_db, layer.shift_db)), layer.dominant]


def accuracy_lines(acc: Accuracy) -> list[str]:
    """The accuracy summary in words: top-1 (with labels), agreement and output SQNR."""
    where = f"On {acc.samples} {acc.dataset} {acc.split} samples"
    sqnr = f"output SQNR {_db_text(acc.output_sqnr_db)} dB"
    if acc.float_top1 is None or acc.compiled_top1 is None:
        return [f"{where} (no labels): top-1 agreement {100 * acc.agreement:.2f}%, {sqnr}."]
    return [f"{where}: float {100 * acc.float_top1:.2f}%, compiled {100 * acc.compiled_top1:.2f}% "
            f"(drop {acc.drop:.2f} points; top-1 agreement {100 * acc.agreement:.2f}%, {sqnr})."]


def accuracy_markdown(doc: Report) -> list[str]:
    """``## Accuracy``: the summary, the per-layer loss table and the warning — or that the
    accuracy is unknown."""
    acc = doc.accuracy
    if acc is None:
        return [] if doc.accuracy_unknown is None else ["", "## Accuracy", "", f"Unknown: {doc.accuracy_unknown}."]
    lines = ["", "## Accuracy", "", *accuracy_lines(acc)]
    if acc.warning is not None:
        lines += ["", f"**Warning**: {acc.warning}."]
    if acc.layers:
        lines += ["", f"Per layer, on {acc.layer_samples} samples: SQNR of its output against the float model "
                      "(end to end, and the layer alone on the float input) and the alone loss by source.", "",
                  "| " + " | ".join(LOSS_HEADERS) + " |", "|" + "---|" * len(LOSS_HEADERS)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in loss_cells(layer)) + " |" for layer in acc.layers]
    return lines
