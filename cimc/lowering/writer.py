"""Nodes and constants of one CIM layer, named ``L/field`` (``cimc.lowering.layer``'s tensor
contract), and the float form's quantizers: written by the lowering (``LayerEmitter``) and by
the expansion of integer layers back into the float form (``cimc.lowering.expand``), so both
write the same nodes under the same names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import onnx
from onnx import helper, numpy_helper

#: The documentation string of the ADC's full-scale ``Clip`` (``LayerEmitter.saturate``).
FULL_SCALE_DOC = "ADC full scale: rint(p / S_ADC) reaches +-M exactly where |p| reaches U"


class Sink(Protocol):
    """Where nodes and constants go, and the names already taken (``ExportBuilder`` is one)."""

    nodes: list[onnx.NodeProto]
    extra: list[onnx.TensorProto]
    taken: set[str]


@dataclass
class Nodes:
    """A plain ``Sink``."""

    taken: set[str]
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    extra: list[onnx.TensorProto] = field(default_factory=list)


class NodeWriter:
    """Appends the nodes and constants of layer ``prefix`` to ``sink``."""

    def __init__(self, sink: Sink, prefix: str) -> None:
        self.b, self.prefix = sink, prefix

    def const(self, field: str, value: np.ndarray | np.generic) -> str:
        name = self._fresh(f"{self.prefix}/{field}")
        self.b.extra.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op: str, inputs: list[str], out: str, doc: str = "", *, final: bool = False, **attrs: Any) -> str:
        """Append ``op``; its output is ``L/out`` (or exactly ``out`` when ``final``)."""
        name = out if final else self._fresh(f"{self.prefix}/{out}")
        node = helper.make_node(op, inputs, [name], name=self._fresh(f"{name}:{op}"), doc_string=doc, **attrs)
        self.b.nodes.append(node)
        return name

    def _fresh(self, base: str) -> str:
        name, i = base, 0
        while name in self.b.taken:
            i += 1
            name = f"{base}_{i}"
        self.b.taken.add(name)
        return name

    def quantizer(self, x: str, step: np.ndarray | np.generic, lo: int, hi: int, out: str, doc: str) -> str:
        """``Clip(Round(Div(x, step)), lo, hi)``."""
        scaled = self.op("Div", [x, self.const(f"{out}_step", step.astype(np.float32))], f"{out}_scaled", doc)
        rounded = self.op("Round", [scaled], f"{out}_rounded", doc)
        bounds = [self.const(f"{out}_min", np.float32(lo)), self.const(f"{out}_max", np.float32(hi))]
        return self.op("Clip", [rounded, *bounds], out, doc)

    def full_scale_clip(self, raw: str, bound: np.float32 | None, out: str) -> str:
        """``Clip(raw, −U, U)`` with ``U = bound``; ``raw`` itself without one."""
        if bound is None:
            return raw
        limits = [self.const(f"full_scale_{side}", np.float32(v)) for side, v in (("min", -bound), ("max", bound))]
        return self.op("Clip", [raw, *limits], out, FULL_SCALE_DOC)

    def quantized_adc(self, psums: str, step: np.ndarray, m: int, saturated: bool, out: str, doc: str) -> str:
        """``DequantizeLinear(QuantizeLinear(psums, step, int8 0), 1)`` (``step`` flat: one, or
        one per channel along axis 2), then ``Clip(·, −M, M)`` unless ``saturated`` (the sums
        were clipped to the full scale already)."""
        per_channel: dict[str, Any] = {"axis": 2} if step.size > 1 else {}
        zero = self.const(f"{out}_zero", np.zeros(step.shape if per_channel else (), np.int8))
        levels = self.op("QuantizeLinear", [psums, self.const(f"{out}_step", step if per_channel else step.reshape(())),
                                            zero], f"{out}_int8", doc, **per_channel)
        unit_zero = self.const(f"{out}_unit_zero", np.int8(0))
        codes = self.op("DequantizeLinear", [levels, self.const(f"{out}_unit", np.float32(1)), unit_zero],
                        out if saturated else f"{out}_rounded", doc)
        if saturated:
            return codes
        bounds = [self.const(f"{out}_min", np.float32(-m)), self.const(f"{out}_max", np.float32(m))]
        return self.op("Clip", [codes, *bounds], out, doc)
