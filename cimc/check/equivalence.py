"""Structural equivalence check of ``cimc validate``: the files the emulator executes
(``graph.json``, ``digital.safetensors``) against ``model.cim.onnx``, the independent
description of the same compiled model.

A re-hashed ``manifest.json`` makes any edit of a build file pass the sha256 check, so the
check here compares what the emulator would run with what ``model.cim.onnx`` says (``graph``):
every digital node of ``graph.json`` is a node of the same name and op type in
``model.cim.onnx`` (ops the reference computes in float64 keep their name between ``Cast``
nodes), its tensor inputs are the ONNX node's first inputs (read through those casts) once the
operands that only the ONNX form has are set aside (initializers that are not constants of
``graph.json``: attributes written as operands, such as a Reshape's shape, or Where's constant
condition, which ONNX puts before the two branches), every
attribute both files carry is equal, and every constant of ``digital.safetensors`` equals, bit
for bit in float32, the ONNX initializer of its name. A build with ``graph.json`` but no
``model.cim.onnx`` cannot be proven and is a violation.

The numerical half, the emulator against onnxruntime on ``model.cim.onnx`` (``outputs``,
which also covers ``quant.json``), needs the emulator, a layer above this package: it is
``cimc.emulator.equivalence``, added to the checks by ``cimc.emulator.validate``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from cimc.build.reader import BuildDir
from cimc.check.quant import ONNX_FILE, read_onnx
from cimc.check.violations import Validation, Violation

EXAMPLES = 3


def lowered_ops() -> frozenset[str]:
    """Digital ops that ``model.cim.onnx`` may write as other ops, so their name need not be there:
    GlobalAveragePool, LRN (``cimc.lowering.lrn``) and every op with a ``decompose``
    rule (``cimc.ops``: written as basic float64 ONNX ops). Their numbers are still checked by
    the ``outputs`` check."""
    from cimc.ops import op_table

    return frozenset({"GlobalAveragePool", "LRN"} | {n for n, op in op_table().items() if op.decompose is not None})
def emulator_files(build: BuildDir) -> Any:
    """The authenticated files the emulator reads (``cimc.build.emulator_files``), read once
    per validation."""
    from cimc.build.emulator_files import read_build

    cached = build.__dict__.get("_emulator_files")
    if cached is None:
        cached = build.__dict__["_emulator_files"] = read_build(build.path)
    return cached


def _casts(model: Any) -> dict[str, str]:
    """Output → input of every ``Cast`` (the float64 wrapping of digital ops)."""
    return {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Cast" and n.input and n.output}


def check_graph_structure(build: BuildDir, result: Validation) -> Iterator[Violation]:
    """The digital part of ``graph.json`` and ``digital.safetensors`` against ``model.cim.onnx``."""
    model = read_onnx(build)
    if model is None:
        if build.has("graph.json"):  # the quantized part always comes with its ONNX twin
            yield Violation("graph", ONNX_FILE, "missing: graph.json and digital.safetensors cannot be proven")
        else:
            result.notes.append(f"no graph.json nor {ONNX_FILE}: a float build, nothing for the emulator")
        return
    files = emulator_files(build)
    by_name = {n.name: n for n in model.graph.node}
    casts = _casts(model)
    operands = {t.name for t in model.graph.initializer} - set(files.graph.constants)
    yield from _check_inputs(files.graph.inputs, model)
    for node in files.graph.nodes:
        if node.cim_layer is None:
            yield from _check_node(node, by_name.get(node.name), casts, operands)
    yield from _check_constants(files.graph.constants, files.constants, model)
    result.notes.append(f"graph.json and digital.safetensors compared with {ONNX_FILE} node by node")


def _check_inputs(inputs: Any, model: Any) -> Iterator[Violation]:
    """``graph.json``'s inputs are ``model.cim.onnx``'s, in order, with the same shape but for a
    free batch dimension (``N``): the emulator and validate's probes take their shapes from
    ``graph.json``."""
    onnx_inputs = [(t.name, [d.dim_value if d.HasField("dim_value") else None for d in t.type.tensor_type.shape.dim])
                   for t in model.graph.input]
    if [t.name for t in inputs] != [name for name, _ in onnx_inputs]:
        yield Violation("graph", "graph.json inputs", f"{[t.name for t in inputs][:4]}, {ONNX_FILE} says "
                        f"{[name for name, _ in onnx_inputs][:4]}")
        return
    for spec, (name, dims) in zip(inputs, onnx_inputs, strict=True):
        shape = list(spec.shape)
        if len(shape) != len(dims) or any(d is not None and d != s for d, s in zip(dims, shape, strict=True)):
            yield Violation("graph", f"graph.json input '{name}'", f"shape {shape[:6]}, {ONNX_FILE} says "
                            f"{['N' if d is None else d for d in dims][:6]}")


def _check_node(node: Any, proto: Any, casts: dict[str, str], operands: set[str]) -> Iterator[Violation]:
    """``node`` of ``graph.json`` against ``proto``, its ONNX node; ``operands`` are the initializers
    only the ONNX form reads (module doc)."""
    from onnx import helper

    where = f"graph.json node '{node.name}'"
    if proto is None:
        if node.op not in lowered_ops():
            yield Violation("graph", where, f"{ONNX_FILE} has no node of this name")
        return
    if proto.op_type != node.op:
        yield Violation("graph", where, f"op {node.op}, {ONNX_FILE} says {proto.op_type}")
        return
    read = [casts.get(t, t) if t == f"{node.name}/f64_in{i}" else t for i, t in enumerate(proto.input)]
    given = [t for t in read if t not in operands][:len(node.inputs)]
    if [t for t in node.inputs] != given:
        yield Violation("graph", where, f"reads {node.inputs[:4]}, {ONNX_FILE} {given[:4]}")
    onnx_attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}
    for key in sorted(set(onnx_attrs) & set(node.attrs)):
        if not _same(node.attrs[key], onnx_attrs[key]):
            yield Violation("graph", where, f"attribute {key} is {str(node.attrs[key])[:60]}, "
                            f"{ONNX_FILE} says {str(onnx_attrs[key])[:60]}")


def _same(doc_value: Any, onnx_value: Any) -> bool:
    """``graph.json``'s encoded attribute equals the ONNX attribute (float32 for floats)."""
    from cimc.backend.compute_files import decode_attr

    value = decode_attr(doc_value)
    if isinstance(onnx_value, bytes):
        onnx_value = onnx_value.decode("utf-8", "replace")
    if isinstance(onnx_value, (list, tuple)):
        onnx_value = tuple(onnx_value)
    try:
        a, b = np.asarray(value), np.asarray(onnx_value)
        if a.dtype.kind in "fiub" and b.dtype.kind in "fiub":
            return a.shape == b.shape and np.array_equal(a.astype(np.float32), b.astype(np.float32), equal_nan=True)
    except (TypeError, ValueError):
        return False
    return bool(value == onnx_value)


def _check_constants(names: dict[str, str], arrays: dict[str, np.ndarray], model: Any) -> Iterator[Violation]:
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    for tensor, key in sorted(names.items()):
        where = f"digital.safetensors {key} ('{tensor}')"
        if tensor not in inits:
            yield Violation("graph", where, f"{ONNX_FILE} has no initializer of this name")
            continue
        want = numpy_helper.to_array(inits[tensor])
        got = arrays[key]
        if want.shape != got.shape:
            yield Violation("graph", where, f"shape {list(got.shape)}, {ONNX_FILE} {list(want.shape)}")
        elif not np.array_equal(got, want.astype(np.float32), equal_nan=True):
            count = int((got != want.astype(np.float32)).sum())
            yield Violation("graph", where, f"{count} value(s) differ from {ONNX_FILE}")
