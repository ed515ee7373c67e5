"""``model.cim.onnx``'s float form rewritten by graph surgery, each variant checked bit for bit
against the build's own file and timed against the float model in one process (issue 19: what
the float lowering could still gain; ``benchmarks/results/emulator.md``, sessions 13 and 14).

The build's file holds integer layers where it can (``cimc.lowering.integer``); the variants
start from its float form (``orig``: every integer layer expanded, ``cimc.lowering.expand``) and
the build's own file runs as ``integer``.

    python3 -m benchmarks.cim_onnx_variants --model resnet50 --batch 8 --rounds 10 --work /tmp/emu \\
        --variants fold s1 relu dac3 bn mm fold+s1+relu

The build is ``benchmarks.emulator_ratio``'s (compiled into ``--work`` unless there). Variants
combine with ``+`` and apply in ``ORDER``:

* ``relu``: a ``Relu`` (not a graph output) read only by DACs of unsigned codes is dropped; the
  DAC's clip at 0 does its work;
* ``fold``: a power-of-two output scale ``2^−k`` becomes the ADC ``DequantizeLinear``'s scale
  (per channel, axis 2) and its ``Mul`` is dropped: ``Σ_s c_s·2^−k = (Σ_s c_s)·2^−k`` exactly,
  but ``L/adc_codes`` then holds scaled codes (a per-channel ADC step clips its codes after the
  ``DequantizeLinear``, with scalar bounds: those layers are left as they are);
* ``s1``: a one-segment layer's ``ReduceSum`` (a copy) becomes a ``Squeeze`` (the lowering
  writes that itself since session 14);
* ``bn``: ``Add(Mul(P, 2^−k), b)`` becomes one ``BatchNormalization`` (mean 0, variance 1,
  ε 0): ``P·2^−k`` is exact, so a fused multiply-add rounds as the two ops do;
* ``dac3``: the DAC ``Clip(Round(Div(x, S)), lo, hi)`` becomes ``Cast(QuantizeLinear(Clip(x,
  L, U), S))`` with ``U = fl(hi·S)``, ``L = 0`` or ``−U`` (``layer.adc_full_scale``'s argument);
* ``qdqdac``: the same DAC with ``DequantizeLinear`` for the ``Cast``: onnxruntime's
  optimizations then quantize the convolution's weights themselves, and codes come out one
  off (reported as ``bit_exact: false``);
* ``mm``: a stride-1, unpadded ``1 × 1`` layer's grouped ``Conv`` becomes a ``MatMul`` of the
  segments' cells with the input seen as ``(N, S, C/S, H·W)`` (no blocked layout, no reorders).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from benchmarks.emulator_ratio import (
    float_session,
    median_ratio,
    median_seconds,
    model_arguments,
    prepare,
    rotate,
    session_options,
)
from cimc.lowering.expand import expand_integer_layers


class Surgery:
    """A model's nodes, constants, producers and readers, rewritten one node at a time."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.graph = model.graph
        self.values = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.outputs = {o.name for o in self.graph.output}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.readers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        self.dropped: set[str] = set()  # names of the nodes the current rewrite removes
        self._index()

    def _index(self) -> None:
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.readers.clear()
        for n in self.graph.node:
            for i in n.input:
                self.readers[i].append(n)

    def const(self, name: str, value: np.ndarray | np.generic) -> str:
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        self.values[name] = np.asarray(value)
        return name

    def only_reader(self, tensor: str, op: str) -> onnx.NodeProto | None:
        readers = self.readers.get(tensor, [])
        return readers[0] if len(readers) == 1 and readers[0].op_type == op and tensor not in self.outputs else None

    def rewrite(self, change: Callable[[onnx.NodeProto], list[onnx.NodeProto] | None]) -> None:
        """Each node replaced by ``change(node)`` (``None``: kept), then the nodes ``change``
        passed to ``drop`` removed (before or after it in order); ``change`` renames the readers
        of a dropped node's output itself."""
        nodes = []
        for n in list(self.graph.node):
            new = change(n)
            nodes.extend([n] if new is None else new)
        del self.graph.node[:]
        self.graph.node.extend(n for n in nodes if not n.name or n.name not in self.dropped)
        self.dropped.clear()
        self._index()

    def drop(self, *nodes: onnx.NodeProto) -> None:
        """Remove ``nodes`` (named: the lowering names every node; new ones stay unnamed)."""
        assert all(n.name for n in nodes)
        self.dropped.update(n.name for n in nodes)

    def rename_input(self, old: str, new: str) -> None:
        for n in self.graph.node:
            n.input[:] = [new if i == old else i for i in n.input]


def _is_power_of_two(v: np.ndarray) -> bool:
    mantissa, exponent = np.frexp(v.astype(np.float32))
    return bool(np.all(mantissa == 0.5) and np.all(exponent > -120))


def _dac(s: Surgery, div: onnx.NodeProto) -> tuple[onnx.NodeProto, onnx.NodeProto] | None:
    """``(Round, Clip)`` of a DAC ``Clip(Round(Div(x, S)), lo, hi)`` starting at ``div``."""
    if div.op_type != "Div" or not div.output[0].endswith("/input_codes_scaled"):
        return None
    rnd = s.only_reader(div.output[0], "Round")
    clip = s.only_reader(rnd.output[0], "Clip") if rnd is not None else None
    return None if rnd is None or clip is None else (rnd, clip)


def relu(s: Surgery) -> None:
    drop = []
    for n in s.graph.node:
        readers = s.readers.get(n.output[0], [])
        if n.op_type != "Relu" or n.output[0] in s.outputs or not readers:
            continue
        dacs = [_dac(s, r) for r in readers]
        if all(d is not None and float(s.values[d[1].input[1]]) == 0 for d in dacs):
            drop.append(n)
    for n in drop:
        s.rename_input(n.output[0], n.input[0])
    s.drop(*drop)
    s.rewrite(lambda n: None)


def fold(s: Surgery) -> None:
    def change(n: onnx.NodeProto) -> list[onnx.NodeProto] | None:
        if n.op_type != "DequantizeLinear" or not n.output[0].endswith("/adc_codes"):
            return None
        total = s.only_reader(n.output[0], "ReduceSum") or s.only_reader(n.output[0], "Squeeze")
        mul = s.only_reader(total.output[0], "Mul") if total is not None else None
        if total is None or mul is None or not _is_power_of_two(s.values[mul.input[1]]):
            return None
        scale = s.values[mul.input[1]].astype(np.float32).reshape(-1)
        name = n.output[0]
        attrs = {"axis": 2} if scale.size > 1 else {}
        zero = np.zeros(scale.shape if scale.size > 1 else (), np.int8)
        s.rename_input(mul.output[0], total.output[0])
        s.drop(mul)
        return [helper.make_node("DequantizeLinear", [n.input[0], s.const(f"{name}_fold_scale", scale if scale.size > 1
                                 else scale.reshape(())), s.const(f"{name}_fold_zero", zero)], [name], **attrs)]

    s.rewrite(change)


def s1(s: Surgery) -> None:
    def change(n: onnx.NodeProto) -> list[onnx.NodeProto] | None:
        if n.op_type != "ReduceSum" or not n.output[0].endswith("/sums"):
            return None
        reshape = s.producer.get(s.producer[n.input[0]].input[0]) if n.input[0] in s.producer else None
        while reshape is not None and reshape.op_type != "Reshape":
            reshape = s.producer.get(reshape.input[0])
        if reshape is None or int(s.values[reshape.input[1]][1]) != 1:
            return None
        return [helper.make_node("Squeeze", [n.input[0], s.const(f"{n.output[0]}_axis", np.array([1], np.int64))],
                                 [n.output[0]])]

    s.rewrite(change)


def bn(s: Surgery) -> None:
    def change(n: onnx.NodeProto) -> list[onnx.NodeProto] | None:
        if n.op_type != "Mul" or not n.output[0].endswith("/scaled") or not _is_power_of_two(s.values[n.input[1]]):
            return None
        add = s.only_reader(n.output[0], "Add")
        if add is None or add.input[1] not in s.values:
            return None
        bias = s.values[add.input[1]].astype(np.float32).reshape(-1)
        scale = np.broadcast_to(s.values[n.input[1]].astype(np.float32).reshape(-1), bias.shape)
        s.drop(add)
        name = n.output[0]
        stats = [s.const(f"{name}_{k}", v) for k, v in (("gamma", np.ascontiguousarray(scale)), ("beta", bias),
                                                         ("mean", np.zeros_like(bias)), ("var", np.ones_like(bias)))]
        return [helper.make_node("BatchNormalization", [n.input[0], *stats], [add.output[0]], epsilon=0.0)]

    s.rewrite(change)


def _quantized_dac(s: Surgery, restore: str) -> None:
    """The DAC as ``Clip → QuantizeLinear → restore`` (``Cast`` or ``DequantizeLinear``)."""
    def change(n: onnx.NodeProto) -> list[onnx.NodeProto] | None:
        found = _dac(s, n)
        if found is None:
            return None
        rnd, clip = found
        lo, hi, step = (float(s.values[t]) for t in (clip.input[1], clip.input[2], n.input[1]))
        top = np.float32(hi) * np.float32(step)
        if np.rint(top / np.float32(step)) != hi or (lo != 0 and lo != -hi):
            return None
        s.drop(rnd, clip)
        out = clip.output[0]
        zero = s.const(f"{out}_zero", np.zeros((), np.uint8 if lo == 0 else np.int8))
        bounds = [s.const(f"{out}_low", np.float32(0) if lo == 0 else -top), s.const(f"{out}_high", top)]
        nodes = [helper.make_node("Clip", [n.input[0], *bounds], [f"{out}_clipped"]),
                 helper.make_node("QuantizeLinear", [f"{out}_clipped", n.input[1], zero], [f"{out}_int"])]
        if restore == "Cast":
            return [*nodes, helper.make_node("Cast", [f"{out}_int"], [out], to=TensorProto.FLOAT)]
        return [*nodes, helper.make_node("DequantizeLinear", [f"{out}_int", s.const(f"{out}_unit", np.float32(1)),
                                                              zero], [out])]

    s.rewrite(change)


def dac3(s: Surgery) -> None:
    _quantized_dac(s, "Cast")


def qdqdac(s: Surgery) -> None:
    _quantized_dac(s, "DequantizeLinear")


def mm(s: Surgery) -> None:
    def change(n: onnx.NodeProto) -> list[onnx.NodeProto] | None:
        if n.op_type != "Conv" or not n.output[0].endswith("/bitlines"):
            return None
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        cast = s.producer[n.input[1]]
        w = s.values[cast.input[0]]
        source = s.producer.get(n.input[0])
        if w.shape[2:] != (1, 1) or list(attrs.get("strides", [1, 1])) != [1, 1] or any(attrs.get("pads", [])) or \
                (source is not None and source.op_type == "Gather"):
            return None
        groups, (rows, width) = int(attrs.get("group", 1)), w.shape[:2]
        out = n.output[0]
        cells = s.const(f"{out}_mm_cells", w.reshape(groups, rows // groups, width))
        return [helper.make_node("Cast", [cells], [f"{out}_mm_float"], to=TensorProto.FLOAT),
                helper.make_node("Reshape", [n.input[0], s.const(f"{out}_mm_in", np.array([0, groups, width, -1]))],
                                 [f"{out}_mm_x"]),
                helper.make_node("MatMul", [f"{out}_mm_float", f"{out}_mm_x"], [f"{out}_mm"]),
                helper.make_node("Reshape", [f"{out}_mm", s.const(f"{out}_mm_out", np.array([0, rows, -1]))], [out])]

    s.rewrite(change)


#: The order variants apply in (``relu`` looks for the DACs ``dac3`` replaces).
ORDER: dict[str, Callable[[Surgery], None]] = {"relu": relu, "fold": fold, "s1": s1, "bn": bn, "dac3": dac3,
                                               "qdqdac": qdqdac, "mm": mm}


def variant(model: onnx.ModelProto, name: str) -> bytes:
    """``model``'s float form rewritten by the ``+``-joined variants of ``name`` (``orig``: the
    float form alone)."""
    wanted = set(name.split("+")) - {"orig"}
    unknown = wanted - set(ORDER)
    if unknown:
        raise SystemExit(f"unknown variant(s): {', '.join(sorted(unknown))} (known: {', '.join(ORDER)})")
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    expand_integer_layers(copy)
    surgery = Surgery(copy)
    for key, apply in ORDER.items():
        if key in wanted:
            apply(surgery)
    return copy.SerializeToString()


def measure(model: str, batch: int, rounds: int, work: Path, variants: list[str]) -> dict[str, Any]:
    """Per variant: bit-exactness against the build's file and the median per-round ratio of
    its wall time to the float model's (rotating order)."""
    import onnxruntime as ort

    build = prepare(model, work, fresh=False)
    cim = onnx.load(str(build / "model.cim.onnx"))
    sessions = {"float": float_session(model, work),
                "integer": ort.InferenceSession(cim.SerializeToString(), session_options(),
                                                providers=["CPUExecutionProvider"])}
    for name in ["orig", *variants]:
        sessions[name] = ort.InferenceSession(variant(cim, name), session_options(), providers=["CPUExecutionProvider"])
    feed = sessions["float"].get_inputs()[0]
    x = np.random.default_rng(0).standard_normal([batch, *feed.shape[1:]]).astype(np.float32)
    want = sessions["integer"].run(None, {feed.name: x})
    exact = {k: all(np.array_equal(a.view(np.uint32), b.view(np.uint32))
                    for a, b in zip(want, sessions[k].run(None, {feed.name: x}), strict=True))
             for k in ["orig", *variants]}
    times = rotate({k: (lambda s=s: s.run(None, {feed.name: x})) for k, s in sessions.items()}, rounds)
    return {"model": model, "batch": batch, "rounds": rounds, "bit_exact": exact,
            "wall_ratio": {k: median_ratio(times, k, 0) for k in sessions if k != "float"},
            "median_wall_s": median_seconds(times, 0), "onnxruntime": ort.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_arguments(parser, "resnet50", 8, 10)
    parser.add_argument("--variants", nargs="+", default=["fold", "s1", "relu", "dac3", "bn", "mm", "fold+s1+relu"])
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.model, args.batch, args.rounds, args.work, args.variants)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
