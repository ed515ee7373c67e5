"""Generate the corpus of small hostile and broken ONNX models in this folder.

    python3 tests/corpus/make_corpus.py        # rewrites tests/corpus/*.onnx and ext_*/

Every model is built with ``onnx.helper`` from fixed numbers (no randomness, explicit IR
version), so the bytes are reproducible and ``tests/test_hostile.py`` checks that the
committed files equal what this script writes. ``CASES`` says what ``cimc compile`` must do
with each file: its exit code (0 = compiles), a regular expression its message must match,
and any extra command-line arguments. Symlinks and hard links are made by the tests
themselves (git keeps neither safely).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
IR_VERSION = 8
OPSET = 17
I64 = np.int64


def weights(*shape: int, seed: int = 0) -> np.ndarray:
    """Deterministic small float32 weights (a fixed linear ramp, no RNG)."""
    n = int(np.prod(shape))
    return ((np.arange(n, dtype=np.float64) * 0.37 + seed) % 2.0 - 1.0).astype(np.float32).reshape(shape)


def node(op: str, ins: Sequence[str], outs: Sequence[str], **kw: Any) -> onnx.NodeProto:
    return helper.make_node(op, list(ins), list(outs), **kw)


def model(nodes: Sequence[onnx.NodeProto], inputs: dict[str, Sequence[int | str]], outputs: dict[str, Sequence[int]],
          inits: dict[str, np.ndarray] | None = None, *, name: str = "corpus", opset: int | None = OPSET,
          ir_version: int = IR_VERSION) -> onnx.ModelProto:
    """A model over ``nodes`` with float inputs/outputs of the given shapes and ``inits``."""
    vi = helper.make_tensor_value_info
    ins = [vi(k, TensorProto.FLOAT, list(s)) for k, s in inputs.items()]
    outs = [vi(k, TensorProto.FLOAT, list(s)) for k, s in outputs.items()]
    tensors = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    graph = helper.make_graph(list(nodes), name, ins, outs, initializer=tensors)
    opsets = [] if opset is None else [helper.make_opsetid("", opset)]
    out = helper.make_model(graph, opset_imports=opsets)
    out.ir_version = ir_version
    return out


def valid() -> onnx.ModelProto:
    """A tiny valid CNN: Conv→BN→Relu→MaxPool→Flatten→Gemm (the seed of most cases)."""
    inits = {"w": weights(4, 3, 3, 3), "b": weights(4, seed=1), "s": weights(4, seed=2) + 1.5,
             "bb": weights(4, seed=3), "m": weights(4, seed=4), "v": np.abs(weights(4, seed=5)) + 0.5,
             "fw": weights(10, 16, seed=6), "fb": weights(10, seed=7)}
    nodes = [node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], name="bn"),
             node("Relu", ["n"], ["r"], name="relu"),
             node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             node("Flatten", ["p"], ["f"], name="flatten"),
             node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1)]
    return model(nodes, {"x": (1, 3, 4, 4)}, {"y": (1, 10)}, inits, name="valid")


def residual() -> onnx.ModelProto:
    """A richer valid model (fuzz seed): Pad, grouped and strided Conv, Clip, a residual Add,
    Concat, AveragePool, Reshape with a constant shape, MatMul, Softmax."""
    inits = {"w1": weights(4, 3, 3, 3), "b1": weights(4, seed=1), "w2": weights(4, 2, 3, 3, seed=2),
             "w3": weights(4, 4, 1, 1, seed=3), "shape": np.array([1, -1], I64), "fw": weights(32, 5, seed=4),
             "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32), "pads": np.zeros(8, I64)}
    nodes = [node("Pad", ["x", "pads"], ["xp"], name="pad"),
             node("Conv", ["xp", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             node("Clip", ["c1", "lo", "hi"], ["a1"], name="relu6"),
             node("Conv", ["a1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1], group=2),
             node("Add", ["a1", "c2"], ["s"], name="add"),
             node("Conv", ["s", "w3"], ["c3"], name="conv3", strides=[2, 2]),
             node("Concat", ["c3", "c3"], ["cat"], name="cat", axis=1),
             node("AveragePool", ["cat"], ["ap"], name="avg", kernel_shape=[2, 2], strides=[2, 2]),
             node("Reshape", ["ap", "shape"], ["flat"], name="reshape"),
             node("MatMul", ["flat", "fw"], ["mm"], name="fc"),
             node("Softmax", ["mm"], ["y"], name="softmax")]
    return model(nodes, {"x": (1, 3, 8, 8)}, {"y": (1, 5)}, inits, name="residual")


def one_conv(x_shape: Sequence[int | str] = (1, 3, 4, 4), **kw: Any) -> onnx.ModelProto:
    """``y = Relu(Conv(x, w))`` with 3×3 weights."""
    nodes = [node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]), node("Relu", ["c"], ["y"], name="relu")]
    out_shape = (*x_shape[:1], 4, *x_shape[2:])
    return model(nodes, {"x": x_shape}, {"y": out_shape}, {"w": weights(4, 3, 3, 3)}, **kw)  # type: ignore[arg-type]


def with_initializer(m: onnx.ModelProto, name: str, edit: Callable[[onnx.TensorProto], None]) -> onnx.ModelProto:
    tensor = next(t for t in m.graph.initializer if t.name == name)
    edit(tensor)
    return m


def external(location: str, offset: int = 0, length: int = 432) -> onnx.ModelProto:
    """``one_conv`` whose 432-byte weight ``w`` lives in the external file ``location``."""
    def edit(t: onnx.TensorProto) -> None:
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
    return with_initializer(one_conv(), "w", edit)


def _raw(t: onnx.TensorProto, data: bytes) -> None:
    t.raw_data = data


# -- the cases --------------------------------------------------------------------------------
def truncated() -> bytes:
    data = valid().SerializeToString()
    return data[: len(data) // 2]


def unsupported_ops() -> onnx.ModelProto:
    nodes = [node("Cos", ["x"], ["a"], name="cos"), node("Sin", ["a"], ["b"], name="sin"),
             node("Cos", ["b"], ["c"], name="cos2"), node("Hardmax", ["c"], ["y"], name="hardmax")]
    return model(nodes, {"x": (1, 3, 4, 4)}, {"y": (1, 3, 4, 4)})


def control_flow() -> onnx.ModelProto:
    vi = helper.make_tensor_value_info
    then = helper.make_graph([node("Relu", ["x"], ["t"])], "then", [], [vi("t", TensorProto.FLOAT, [2])])
    other = helper.make_graph([node("Neg", ["x"], ["e"])], "else", [], [vi("e", TensorProto.FLOAT, [2])])
    body = helper.make_graph([node("Identity", ["cond"], ["cond_out"]), node("Identity", ["v"], ["v_out"])], "body",
                             [vi("i", TensorProto.INT64, []), vi("cond", TensorProto.BOOL, []),
                              vi("v", TensorProto.FLOAT, [2])],
                             [vi("cond_out", TensorProto.BOOL, []), vi("v_out", TensorProto.FLOAT, [2])])
    scan_body = helper.make_graph([node("Add", ["s", "e"], ["s2"]), node("Identity", ["s2"], ["o"])], "scan",
                                  [vi("s", TensorProto.FLOAT, []), vi("e", TensorProto.FLOAT, [])],
                                  [vi("s2", TensorProto.FLOAT, []), vi("o", TensorProto.FLOAT, [])])
    nodes = [node("Greater", ["x0", "zero"], ["flag"], name="gt"),
             node("If", ["flag"], ["a"], name="if", then_branch=then, else_branch=other),
             node("Loop", ["trip", "", "a"], ["b"], name="loop", body=body),
             node("Scan", ["zero", "b"], ["acc", "y"], name="scan", body=scan_body, num_scan_inputs=1)]
    inits = {"zero": np.array(0.0, np.float32), "trip": np.array(2, I64), "x0": np.array(1.0, np.float32)}
    return model(nodes, {"x": (2,)}, {"y": (2,)}, inits)


def custom_domain() -> onnx.ModelProto:
    nodes = [node("Relu", ["x"], ["a"], name="relu"), node("Evil", ["a"], ["y"], name="evil", domain="com.hostile")]
    m = model(nodes, {"x": (1, 3, 4, 4)}, {"y": (1, 3, 4, 4)})
    m.opset_import.append(helper.make_opsetid("com.hostile", 1))
    return m


def future_ir() -> onnx.ModelProto:
    m = one_conv()
    m.ir_version = 99
    return m


def constant_of_shape_bomb() -> onnx.ModelProto:
    value = numpy_helper.from_array(np.array([1.0], np.float32))
    nodes = [node("ConstantOfShape", ["dims"], ["k"], name="bomb", value=value), node("Add", ["x", "k"], ["y"])]
    return model(nodes, {"x": (1,)}, {"y": (1 << 20, 1 << 20)}, {"dims": np.array([1 << 20, 1 << 20], I64)})


def expand_bomb() -> onnx.ModelProto:
    nodes = [node("Expand", ["one", "dims"], ["k"], name="bomb"), node("Add", ["x", "k"], ["y"])]
    inits = {"one": np.ones(1, np.float32), "dims": np.array([1 << 16, 1 << 16, 1 << 16], I64)}
    return model(nodes, {"x": (1,)}, {"y": (1 << 16, 1 << 16, 1 << 16)}, inits)


def cycle() -> onnx.ModelProto:
    nodes = [node("Add", ["x", "b"], ["a"], name="add"), node("Relu", ["a"], ["b"], name="relu"),
             node("Sigmoid", ["a"], ["y"], name="sig")]
    return model(nodes, {"x": (2,)}, {"y": (2,)})


def unsorted() -> onnx.ModelProto:
    m = valid()
    nodes = list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(nodes[::-1])
    return m


def missing_initializer() -> onnx.ModelProto:
    m = one_conv()
    del m.graph.initializer[:]
    return m


def weights_as_inputs() -> onnx.ModelProto:
    nodes = [node("Conv", ["x", "w"], ["y"], name="conv")]
    return model(nodes, {"x": (1, 3, 4, 4), "w": (4, 3, 3, 3)}, {"y": (1, 4, 2, 2)})


def two_producers() -> onnx.ModelProto:
    nodes = [node("Relu", ["x"], ["a"], name="r1"), node("Sigmoid", ["x"], ["a"], name="s1"),
             node("Relu", ["a"], ["y"], name="r2")]
    return model(nodes, {"x": (2,)}, {"y": (2,)})


def duplicate_node_names() -> onnx.ModelProto:
    m = one_conv()
    for n in m.graph.node:
        n.name = "same"
    return m


def duplicate_initializers() -> onnx.ModelProto:
    m = one_conv()
    m.graph.initializer.append(numpy_helper.from_array(weights(4, 3, 3, 3, seed=9), "w"))
    return m


LONG = "L" * 10_000
HOSTILE = ["../../../../tmp/cimc-escape", "/etc/passwd", "nul\0byte", LONG, "line\nbreak\x1b[31mred", "[bold]x[/]"]


def hostile_names() -> onnx.ModelProto:
    """``valid`` with every node, tensor and the graph named by path-like or huge strings."""
    m = valid()
    rename = {t: f"{HOSTILE[i % len(HOSTILE)]}#{i}" for i, t in enumerate(["x", "c", "n", "r", "p", "f", "y",
                                                                          "w", "b", "s", "bb", "m", "v", "fw", "fb"])}
    for i, n in enumerate(m.graph.node):
        n.name = f"{HOSTILE[(i + 5) % len(HOSTILE)]}@{i}"
        n.input[:] = [rename.get(t, t) for t in n.input]
        n.output[:] = [rename.get(t, t) for t in n.output]
    for item in [*m.graph.input, *m.graph.output, *m.graph.initializer]:
        item.name = rename[item.name]
    m.graph.name = "../../graph/" + LONG
    return m


def hostile_unsupported() -> onnx.ModelProto:
    """An unsupported op on a node with a 10 kB name full of control characters."""
    return model([node("Cos", ["x"], ["y"], name="\x1b[2J\n" + LONG + "\0end")], {"x": (2,)}, {"y": (2,)})


def bn_model(**overrides: np.ndarray) -> onnx.ModelProto:
    inits = {"w": weights(4, 3, 3, 3), "s": np.ones(4, np.float32), "bb": np.zeros(4, np.float32),
             "m": np.zeros(4, np.float32), "var": np.ones(4, np.float32), **overrides}
    nodes = [node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             node("BatchNormalization", ["c", "s", "bb", "m", "var"], ["y"], name="bn")]
    return model(nodes, {"x": (1, 3, 4, 4)}, {"y": (1, 4, 4, 4)}, inits)


def bn_training() -> onnx.ModelProto:
    m = bn_model()
    m.graph.node[1].output.extend(["run_mean", "run_var"])
    m.graph.node[1].attribute.append(helper.make_attribute("training_mode", 1))
    return m


def nonfinite(value: float) -> onnx.ModelProto:
    w = weights(4, 3, 3, 3)
    w[1, 2, 0, 0] = value
    return bn_model(w=w)


def with_attr(m: onnx.ModelProto, op: str, key: str, value: Any, new_op: str | None = None) -> onnx.ModelProto:
    """``m`` with attribute ``key = value`` on every ``op`` node (renamed to ``new_op``)."""
    for n in m.graph.node:
        if n.op_type == op:
            n.op_type = new_op or op
            n.attribute.append(helper.make_attribute(key, value))
    return m


def bn_eps(eps: float, var: float = 1.0) -> onnx.ModelProto:
    return with_attr(bn_model(var=np.full(4, var, np.float32)), "BatchNormalization", "epsilon", eps)


def clip_nan() -> onnx.ModelProto:
    """``valid`` with its Relu a Clip whose lower bound (a constant input) is NaN."""
    m = valid()
    relu = next(n for n in m.graph.node if n.op_type == "Relu")
    relu.op_type = "Clip"
    relu.input.extend(["lo", "hi"])
    m.graph.initializer.extend([numpy_helper.from_array(np.array(np.nan, np.float32), "lo"),
                                numpy_helper.from_array(np.array(6.0, np.float32), "hi")])
    return m


def table_names() -> onnx.ModelProto:
    """Names that would break a line or a markdown table (report.md) or drive a terminal."""
    m = valid()
    m.graph.name = "g\nname"
    m.graph.node[0].name = "~\n\U00041386 | x "
    m.graph.node[5].name = " fc|\x1b[2J"
    return m


def conv_bias_shape() -> onnx.ModelProto:
    """``valid`` whose Conv reads its weight as its bias (found by the fuzzer: exit 9)."""
    m = valid()
    m.graph.node[0].input[2] = "w"
    return m


def gemm_bias_shape() -> onnx.ModelProto:
    """``valid`` whose Gemm adds a 4-vector to 10 outputs (found by the fuzzer: exit 9)."""
    m = valid()
    m.graph.node[5].input[2] = "bb"
    return m


def input_is_initializer() -> onnx.ModelProto:
    """The only graph input also has an initializer: nothing is left to feed."""
    m = one_conv()
    m.graph.initializer.append(numpy_helper.from_array(np.zeros((1, 3, 4, 4), np.float32), "x"))
    return m


def lrn_huge() -> onnx.ModelProto:
    nodes = [node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             node("LRN", ["c"], ["y"], name="lrn", size=2**31 - 1)]
    return model(nodes, {"x": (1, 3, 4, 4)}, {"y": (1, 4, 4, 4)}, {"w": weights(4, 3, 3, 3)})


def deep_metadata() -> onnx.ModelProto:
    m = valid()
    m.metadata_props.append(onnx.StringStringEntryProto(key="cimc.quant", value="[" * 20000 + "]" * 20000))
    return m


def scaled(name: str, factor: float, m: onnx.ModelProto | None = None) -> onnx.ModelProto:
    """``valid`` (or ``m``) with initializer ``name`` multiplied by ``factor`` in float32."""
    def edit(t: onnx.TensorProto) -> None:
        t.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(t) * np.float32(factor)).astype(np.float32), name))
    return with_initializer(m or valid(), name, edit)


def exploding() -> onnx.ModelProto:
    """Weights within ±2^60 whose products overflow float32 in the digital Gemm."""
    return scaled("fw", 1e17, scaled("s", 1e17, scaled("w", 1e17)))


def npy(array: np.ndarray) -> bytes:
    """The ``.npy`` bytes of ``array`` (no pickle)."""
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def calib_case(name: str, files: dict[str, bytes], code: int, match: str) -> Case:
    """``valid.onnx`` compiled with ``--calib calib_<name>`` (a folder of the given files)."""
    return Case(f"calib_{name}/valid.onnx", valid, code, match, ("--calib", str(HERE / f"calib_{name}" / "data")),
                {f"calib_{name}/data/{k}": v for k, v in files.items()})


@dataclass(frozen=True)
class Case:
    """One corpus file and what ``cimc compile FILE [args]`` must do with it."""

    name: str  # file name relative to this folder
    build: Callable[[], onnx.ModelProto | bytes]
    exit_code: int  # 0: compiles
    match: str = ""  # regular expression the error message must match
    args: tuple[str, ...] = ()
    extra: dict[str, bytes] = field(default_factory=dict)  # side files: relative path → bytes


W_BYTES = weights(4, 3, 3, 3).tobytes()
CASES: tuple[Case, ...] = (
    Case("valid.onnx", valid, 0),
    Case("residual.onnx", residual, 0),
    Case("not_a_model.onnx", lambda: b"GIF89a\x01\x00\x01\x00" + b"this is not an ONNX model\n" * 8, 3,
         "not a valid ONNX model"),
    Case("truncated.onnx", truncated, 3, "not a valid ONNX model"),
    Case("oversize.onnx", valid, 5, r"more than the limit of 100 bytes", ("--max-model-bytes", "100")),
    Case("ext_dotdot/model/m.onnx", lambda: external("../w.bin"), 7, r"contains '\.\.'", (),
         {"ext_dotdot/w.bin": W_BYTES}),
    Case("ext_absolute/m.onnx", lambda: external("/nonexistent/cimc-corpus/w.bin"), 7, "absolute path"),
    Case("ext_past_end/m.onnx", lambda: external("w.bin", offset=400), 3, "past the end",
         (), {"ext_past_end/w.bin": W_BYTES}),
    Case("ext_short/m.onnx", lambda: external("w.bin", length=400), 3, r"'w'.*400 bytes.*432",
         (), {"ext_short/w.bin": W_BYTES}),
    Case("raw_data_short.onnx", lambda: with_initializer(one_conv(), "w", lambda t: _raw(t, b"\0" * 100)), 3,
         r"'w'.*100 bytes.*432"),
    Case("float_data_short.onnx", lambda: with_initializer(
        one_conv(), "w", lambda t: (t.ClearField("raw_data"), t.float_data.extend([1.0, 2.0]))), 3,
         r"'w'.*2 values.*108"),
    Case("huge_declared_initializer.onnx", lambda: with_initializer(
        one_conv(), "w", lambda t: t.dims.extend([1 << 40, 1 << 40])), 3, r"'w'"),
    Case("unsupported_ops.onnx", unsupported_ops, 4, r"Cos \(node 'cos', also 'cos2'; 2 nodes\).*Hardmax.*Sin"),
    Case("control_flow.onnx", control_flow, 4, r"If \(node 'if'\).*Loop \(node 'loop'\).*Scan \(node 'scan'\)"),
    Case("custom_domain.onnx", custom_domain, 4, r"com\.hostile::Evil"),
    Case("no_opset_import.onnx", lambda: one_conv(opset=None), 3, "opset_import"),
    Case("future_ir_version.onnx", future_ir, 4, "IR version 99"),
    Case("future_opset.onnx", lambda: one_conv(opset=99), 4, "opset 99"),
    Case("symbolic_dims.onnx", lambda: one_conv(("N", 3, 4, 4)), 3, r"--input-shape x=1,3,4,4"),
    Case("symbolic_dims_fixed.onnx", lambda: one_conv(("N", 3, 4, 4)), 0, "", ("--input-shape", "x=2,3,4,4")),
    Case("huge_input.onnx", lambda: one_conv((1, 3, 100_000, 100_000)), 5, r"'x'.*30000000000 elements"),
    Case("empty_input.onnx", lambda: one_conv((1, 3, 0, 4)), 4, r"'x' \(graph input\) is empty"),
    Case("overflow_dims.onnx", lambda: one_conv((1 << 62, 3, 1 << 62, 4)), 5, r"'x'"),
    Case("constant_of_shape_bomb.onnx", constant_of_shape_bomb, 5, r"node .bomb.,? .?ConstantOfShape"),
    Case("expand_bomb.onnx", expand_bomb, 5, r"node .bomb.,? .?Expand"),
    Case("cycle.onnx", cycle, 3, r"cycle: (add -> relu -> add|relu -> add -> relu)"),
    Case("unsorted.onnx", unsorted, 0),
    Case("missing_initializer.onnx", missing_initializer, 3, r"'w'"),
    Case("weights_as_inputs.onnx", weights_as_inputs, 4, r"conv.*weight input 'w'.*constant"),
    Case("two_producers.onnx", two_producers, 3, r"'a' has two producers: node 'r1' and node 's1'"),
    Case("duplicate_node_names.onnx", duplicate_node_names, 0),
    Case("duplicate_initializers.onnx", duplicate_initializers, 3, r"initializer 'w' is defined twice"),
    Case("hostile_names.onnx", hostile_names, 0),
    Case("hostile_unsupported.onnx", hostile_unsupported, 4, r"Cos \(node '.*LLL…"),
    Case("bn_training.onnx", bn_training, 4, "training_mode"),
    Case("bn_negative_variance.onnx", lambda: bn_model(var=np.array([1, -0.5, 1, 1], np.float32)), 3,
         r"'var'.*negative"),
    Case("nan_weights.onnx", lambda: nonfinite(float("nan")), 3, r"'w'.*holds 1 NaN"),
    Case("inf_weights.onnx", lambda: nonfinite(float("inf")), 3, r"'w'.*1 inf"),
    Case("huge_weights.onnx", lambda: nonfinite(1e38), 3, r"'w'.*1 value\(s\) beyond ±2\^60"),
    Case("infeasible_bl.onnx", valid, 6, r"smallest feasible --bl is 256", ("--bl", "10")),
    # round 2 (issue 16): bad values are typed errors, never a NaN build
    Case("bn_eps_negative.onnx", lambda: bn_eps(-2.0), 3, r"'bn'.*epsilon is -2\.0, must be ≥ 0"),
    Case("bn_eps_nan.onnx", lambda: bn_eps(float("nan")), 3, r"'bn'.*epsilon is nan"),
    Case("bn_eps_zero_var.onnx", lambda: bn_eps(0.0, var=0.0), 3, r"'bn'.*σ² \+ ε is 0 for 4 channel"),
    Case("gemm_alpha_inf.onnx", lambda: with_attr(valid(), "Gemm", "alpha", float("inf")), 3, r"'fc'.*alpha is inf"),
    Case("leakyrelu_alpha_nan.onnx", lambda: with_attr(valid(), "Relu", "alpha", float("nan"), "LeakyRelu"), 3,
         r"'relu' \(LeakyRelu\).*alpha is nan"),
    Case("clip_min_nan.onnx", clip_nan, 3, r"'relu' \(Clip\).*min is nan"),
    Case("denormal_weights.onnx", lambda: scaled("w", 1e-41), 3, r"'conv'.*w_step.*not a normal positive float32"),
    Case("exploding.onnx", exploding, 3, r"non-finite values in output 'y'"),
    Case("table_names.onnx", table_names, 0),  # compiles into a build validate accepts
    # round 2: each bad input its typed error, never exit 1 or 9
    Case("input_is_initializer.onnx", input_is_initializer, 3, r"no runtime input"),
    Case("lrn_huge_size.onnx", lrn_huge, 4, r"'lrn' \(LRN\): size 2147483647 is over the supported 4096"),
    Case("deep_quant_metadata.onnx", deep_metadata, 3, r"'cimc\.quant' nests arrays or tables [0-9,]+ deep"),
    Case("conv_bias_shape.onnx", conv_bias_shape, 3, r"'conv' \(Conv\): bias 'w' has shape \[4, 3, 3, 3\]"),
    Case("gemm_bias_shape.onnx", gemm_bias_shape, 3, r"'fc' \(Gemm\): C 'bb' of shape \[4\]", ("--map-fc",)),
    Case("bn_param_shape.onnx", lambda: bn_model(s=np.ones(7, np.float32)), 3,
         r"bn.*(Dimension mismatch|has shape \[7\])"),
    calib_case("nan", {"a.npy": npy(np.full((1, 3, 4, 4), np.nan, np.float32))}, 2, r"NaN, infinite or out-of-range"),
    calib_case("huge", {"a.npy": npy(np.full((1, 3, 4, 4), 1e300))}, 2, r"NaN, infinite or out-of-range"),
    calib_case("zero_samples", {"a.npy": npy(np.zeros((0, 3, 4, 4), np.float32))}, 2, r"holds no samples"),
    calib_case("pickle", {"a.npy": b"\x80\x04\x95" + b"\0" * 16}, 2, r"cannot read a\.npy"),
    calib_case("wrong_shape", {"a.npy": npy(np.zeros((5, 7), np.float32))}, 2, r"shape \[3, 4, 4\]"),
    calib_case("strings", {"a.npy": npy(np.array(["x"] * 48).reshape(1, 3, 4, 4))}, 2, r"shape|not numbers"),
    calib_case("empty_file", {"a.npy": b""}, 2, r"cannot read a\.npy"),
)


def serialized(case: Case) -> bytes:
    built = case.build()
    return built if isinstance(built, bytes) else built.SerializeToString()


def write_corpus(folder: Path = HERE) -> list[Path]:
    """Write every case (and its side files) under ``folder``; returns the paths written."""
    written = []
    for case in CASES:
        for rel, data in [(case.name, serialized(case)), *case.extra.items()]:
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            written.append(path)
    return written


if __name__ == "__main__":
    paths = write_corpus(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
    print(f"wrote {len(paths)} files, {sum(p.stat().st_size for p in paths)} bytes")
