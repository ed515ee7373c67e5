"""The numerical equivalence check of ``cimc validate`` (``outputs``): the emulator, which
reads only the emulator's files (``graph.json``, ``digital.safetensors``, ``quant.json``,
``layout.json``, ``weights.safetensors``), and onnxruntime on ``model.cim.onnx`` (graph
optimisations off) run the same seeded random batches (``cimc.quant.reference.PROBES``:
standard normal ×1 and ×8, the batches the compile itself checks), and every tensor both name
(each node output of ``graph.json``: each CIM layer and each digital op) must be equal bit for
bit, of the same dtype and shape (docs/build-format.md, the numerical contract), the outputs finite. Every output of
``graph.json`` that a node computes must be a tensor of ``model.cim.onnx`` too: a renamed
output would drop out of the comparison. An edited scale, bias,
step, op or constant that changes any value on these inputs is a violation, whichever file it
is in; an onnxruntime that cannot load or run the model is one too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from cimc.build.reader import BuildDir
from cimc.check.equivalence import emulator_files
from cimc.check.quant import ONNX_FILE, read_onnx
from cimc.check.violations import Validation, Violation
from cimc.emulator.run import Emulator
from cimc.limits import TENSOR_BYTES
from cimc.quant.reference import PROBES, probe_feeds

EXAMPLES = 3
#: The most bytes of one probe batch (a valid build's inputs are within the model's tensor limit).
PROBE_BYTES = TENSOR_BYTES


def check_outputs(build: BuildDir, result: Validation) -> Iterator[Violation]:
    """Emulator and onnxruntime on the same random inputs, every shared tensor bit for bit."""
    model = read_onnx(build)
    if model is None:  # reported by check_graph_structure
        return
    emulator = Emulator(emulator_files(build))
    probe = sum(math.prod(t.shape) for t in emulator.inputs) * 8  # float64 while drawn
    if probe > PROBE_BYTES:
        yield Violation("outputs", "graph.json", f"its inputs hold {probe:,} bytes per probe batch, more than the "
                        f"limit of {PROBE_BYTES:,}: not run")
        return
    names = [t for node, _ in emulator.nodes for t in node.outputs]
    produced = {t for n in model.graph.node for t in n.output}
    shared = [t for t in dict.fromkeys(names) if t in produced]
    unmatched = [t.name for t in emulator.files.graph.outputs if t.name in names and t.name not in produced]
    if unmatched:  # else the comparison would silently skip the model's outputs
        yield Violation("outputs", "graph.json", f"output '{unmatched[0]}' is computed by no node of {ONNX_FILE}: "
                        "the emulator's outputs cannot be compared with it")
        return
    try:
        session = _session(model, shared)
    except Exception as exc:  # onnxruntime's own error types
        yield Violation("outputs", ONNX_FILE, f"onnxruntime cannot load it: {type(exc).__name__}: {str(exc)[:160]}")
        return
    for seed, scale in PROBES:
        feeds = _feeds(emulator, seed, scale)
        got = emulator.tensors(feeds)
        broken = [t.name for t in emulator.files.graph.outputs if not _finite(got.get(t.name))]
        if broken:
            yield Violation("outputs", "graph.json", f"the emulator computes non-finite outputs on random inputs "
                            f"(seed {seed}, scale {scale}), first '{broken[0]}'")
            return
        try:
            want = dict(zip(shared, session.run(shared, feeds), strict=True))
        except Exception as exc:  # onnxruntime's own error types (a failed allocation among them)
            yield Violation("outputs", ONNX_FILE, f"onnxruntime cannot run it: {type(exc).__name__}: {str(exc)[:160]}")
            return
        bad = {t: why for t in shared if (why := _difference(got.get(t), want[t])) is not None}
        if bad:
            yield Violation("outputs", "graph.json", f"the emulator and onnxruntime on {ONNX_FILE} differ on "
                            f"{len(bad)} tensor(s) for random inputs (seed {seed}, scale {scale}), first "
                            + ", ".join(f"'{t}' ({why})" for t, why in list(bad.items())[:EXAMPLES]))
            return
    result.notes.append(f"emulator equal to onnxruntime on {ONNX_FILE} bit for bit ({len(shared)} tensors, "
                        f"{len(PROBES)} random batches)")


def _session(model: Any, names: list[str]) -> Any:
    """An onnxruntime session of ``model`` whose outputs are ``names`` (no graph optimisation)."""
    import onnxruntime as ort
    from onnx import helper

    exposed = type(model)()
    exposed.CopyFrom(model)
    have = {o.name for o in exposed.graph.output}
    exposed.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in names if t not in have)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(exposed.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _feeds(emulator: Any, seed: int, scale: float) -> dict[str, np.ndarray]:
    return probe_feeds({t.name: t.shape for t in emulator.inputs}, seed, scale)


def _finite(value: np.ndarray | None) -> bool:
    return value is not None and (np.asarray(value).dtype.kind != "f" or bool(np.isfinite(value).all()))


def _difference(a: np.ndarray | None, b: np.ndarray) -> str | None:
    """How the emulator's ``a`` differs from onnxruntime's ``b`` (``None``: the same dtype, shape
    and every value; NaN equal to NaN): a float64 output where the contract says float32 is a
    difference even when every value converts exactly."""
    if a is None:
        return "not computed by the emulator"
    a = np.asarray(a)
    if a.dtype != b.dtype:
        return f"dtype {a.dtype} vs {b.dtype}"
    if a.shape != b.shape:
        return f"shape {list(a.shape)} vs {list(b.shape)}"
    return None if np.array_equal(a, b, equal_nan=a.dtype.kind in "fc") else "values"
