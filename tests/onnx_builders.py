"""Helpers for frontend tests: build small ONNX models with ``onnx.helper`` and run them.

``make_model`` wraps nodes, float inputs and numpy initializers into a model;
``run_ort`` runs a model with onnxruntime (graph optimisations off);
``run_cimc`` imports it and runs the reference interpreter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from cimc.frontend import import_onnx
from cimc.ir.interpreter import run

Shape = Sequence[int | str | None]


def make_model(nodes: Sequence[onnx.NodeProto], inputs: Mapping[str, Shape | None],
               outputs: Sequence[str], inits: Mapping[str, np.ndarray] | None = None, *,
               opset: int = 17, ir_version: int | None = None, name: str = "test",
               elem: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """A model over ``nodes`` with float ``inputs`` (name → shape), ``outputs`` of unknown
    shape and ``inits``. With ``ir_version < 4`` initializers are listed as inputs too."""
    inits = dict(inits or {})
    ins = [helper.make_tensor_value_info(k, elem, None if s is None else list(s)) for k, s in inputs.items()]
    if ir_version is not None and ir_version < 4:
        ins += [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
                for k, v in inits.items()]
    outs = [helper.make_tensor_value_info(k, elem, None) for k in outputs]
    tensors = [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()]
    graph = helper.make_graph(list(nodes), name, ins, outs, initializer=tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if ir_version is not None:
        model.ir_version = ir_version
    elif opset <= 21:
        model.ir_version = min(model.ir_version, 10)  # keep onnxruntime happy with new onnx packages
    _type_outputs(model)
    return model


def _type_outputs(model: onnx.ModelProto) -> None:
    """Give the outputs the types shape inference finds (the checker wants a shape field)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a deliberately broken model: leave its outputs alone
        inferred = model
    types = {vi.name: vi.type for vi in inferred.graph.output}
    for vi in model.graph.output:
        if types[vi.name].tensor_type.HasField("shape"):
            vi.type.CopyFrom(types[vi.name])


def single(op: str, inputs: Mapping[str, Shape], inits: Mapping[str, np.ndarray] | None = None, *,
           extra: Sequence[str] = (), opset: int = 17, **attrs: Any) -> onnx.ModelProto:
    """A one-node model ``y = op(*inputs, *inits, *extra)`` (``extra``: '' for absent operands)."""
    names = [*inputs, *(inits or {}), *extra]
    node = helper.make_node(op, names, ["y"], name=f"{op.lower()}0", **attrs)
    return make_model([node], inputs, ["y"], inits, opset=opset)


def rand(*shape: int, seed: int = 0, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, size=shape).astype(np.float32)


def feeds_for(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 inputs for every runtime (non-initializer) graph input."""
    inits = {t.name for t in model.graph.initializer}
    out = {}
    for i, vi in enumerate(model.graph.input):
        if vi.name in inits:
            continue
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        out[vi.name] = rand(*shape, seed=seed + i)
    return out


def run_ort(model: onnx.ModelProto | bytes, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    data = model if isinstance(model, bytes) else model.SerializeToString()
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, dict(feeds)), strict=True))


def run_cimc(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], **kwargs: Any) -> dict[str, np.ndarray]:
    return run(import_onnx(model, **kwargs), feeds)


def assert_close(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray],
                 rtol: float = 1e-5, atol: float = 1e-5) -> None:
    assert sorted(got) == sorted(want)
    for name, ref in want.items():
        assert got[name].shape == ref.shape, name
        np.testing.assert_allclose(got[name], ref, rtol=rtol, atol=atol, err_msg=name)


# -- models shared by the frontend tests ---------------------------------------------------
def node(op: str, ins: Sequence[str], outs: Sequence[str], **kw: Any) -> onnx.NodeProto:
    return helper.make_node(op, list(ins), list(outs), **kw)


def opset7_cnn() -> onnx.ModelProto:
    """Conv→BN→Relu→MaxPool→Dropout→Flatten→Gemm→Softmax at opset 7 / IR 3 (initializers are inputs)."""
    inits = {"w": rand(4, 3, 3, 3), "b": rand(4), "s": rand(4), "bb": rand(4), "m": rand(4),
             "v": rand(4, low=0.5, high=1.5), "fw": rand(5, 64), "fb": rand(5)}
    nodes = [node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], epsilon=1e-3),
             node("Relu", ["n"], ["r"]), node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             node("Dropout", ["p"], ["d"], ratio=0.3), node("Flatten", ["d"], ["f"]),
             node("Gemm", ["f", "fw", "fb"], ["g"], transB=1), node("Softmax", ["g"], ["y"])]
    return make_model(nodes, {"x": (1, 3, 8, 8)}, ["y"], inits, opset=7, ir_version=3)


def opset10_model() -> onnx.ModelProto:
    """Clip/Pad with attributes, Slice-10, SAME_UPPER conv, ceil-mode pool, pre-13 Softmax (2-D coercion)."""
    inits = {"w": rand(4, 3, 3, 3), "st": np.array([1, 0], np.int64), "en": np.array([100, -1], np.int64),
             "ax": np.array([2, 3], np.int64)}
    nodes = [node("Conv", ["x", "w"], ["c"], auto_pad="SAME_UPPER"),
             node("Clip", ["c"], ["k"], min=-0.5, max=0.5),
             node("Pad", ["k"], ["pd"], pads=[0, 0, 1, 1, 0, 0, 1, 1], mode="constant", value=0.25),
             node("AveragePool", ["pd"], ["a"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
             node("Slice", ["a", "st", "en", "ax"], ["s"]), node("Softmax", ["s"], ["y"], axis=1)]
    return make_model(nodes, {"x": (2, 3, 9, 9)}, ["y"], inits, opset=10, ir_version=5)


def shape_chain_model() -> onnx.ModelProto:
    """``y = Reshape(r, Concat(Unsqueeze(Gather(Shape(r), 0)), [-1]))``, as torch's ``view`` exports."""
    nodes = [node("Relu", ["x"], ["r"]), node("Shape", ["r"], ["s"]),
             node("Gather", ["s", "zero"], ["n"], axis=0), node("Unsqueeze", ["n", "zero1"], ["n1"]),
             node("Concat", ["n1", "minus1"], ["shape"], axis=0), node("Reshape", ["r", "shape"], ["y"])]
    inits = {"zero": np.array(0, np.int64), "zero1": np.array([0], np.int64), "minus1": np.array([-1], np.int64)}
    return make_model(nodes, {"x": (2, 3, 4)}, ["y"], inits)


def loop_node() -> onnx.NodeProto:
    """A valid Loop carrying ``x`` (2 floats) for ``trip`` iterations."""
    vi = helper.make_tensor_value_info
    body = helper.make_graph(
        [node("Identity", ["cond"], ["cond_out"]), node("Identity", ["v"], ["v_out"])], "body",
        [vi("i", TensorProto.INT64, []), vi("cond", TensorProto.BOOL, []), vi("v", TensorProto.FLOAT, [2])],
        [vi("cond_out", TensorProto.BOOL, []), vi("v_out", TensorProto.FLOAT, [2])])
    return node("Loop", ["trip", "", "x"], ["lp"], body=body, name="loop")


def external_model(folder: Path, location: str, offset: int = 0) -> Path:
    """``folder/m.onnx``: a 1×1 Conv whose 12-byte weight ``w`` lives in external data ``location``."""
    weight = numpy_helper.from_array(np.zeros((3, 1, 1, 1), np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", "12")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    model = single("Conv", {"x": (1, 1, 2, 2)}, {"w": np.zeros((3, 1, 1, 1), np.float32)})
    model.graph.initializer[0].CopyFrom(weight)
    folder.mkdir(exist_ok=True)
    (folder / "m.onnx").write_bytes(model.SerializeToString())
    return folder / "m.onnx"
