"""The ONNX frontend: old opsets, torch exports, constant folding, canonical form, export and
every user-facing error (unsupported ops, symbolic shapes, size limits, external data)."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cimc.errors import InvalidModelError, ResourceLimitError, SecurityError, UnsupportedError, UsageError
from cimc.frontend import export_onnx, import_onnx, load_model, loader, save_onnx
from cimc.frontend.fold_constants import fold_constants
from cimc.frontend.onnx_export import serialize
from cimc.ir.interpreter import run
from cimc.ops import op_table
from tests.onnx_builders import (
    assert_close,
    external_model,
    feeds_for,
    loop_node,
    make_model,
    opset7_cnn,
    opset10_model,
    rand,
    run_cimc,
    run_ort,
    shape_chain_model,
    single,
)
from tests.onnx_builders import node as _node

I64 = np.int64


def _check(model: onnx.ModelProto, **kwargs: Any) -> None:
    """Interpreter == onnxruntime, and import → export → onnxruntime == onnxruntime."""
    feeds = feeds_for(model)
    want = run_ort(model, feeds)
    graph = import_onnx(model, **kwargs)
    assert_close(run(graph, feeds), want)
    assert_close(run_ort(export_onnx(graph), feeds), want)


# -- old opsets ----------------------------------------------------------------------------
def test_opset7_model_with_initializer_inputs() -> None:
    model = opset7_cnn()
    _check(model)
    graph = import_onnx(model)
    assert graph.inputs == ["x"]  # old-style inputs that are initializers are constants
    assert {"w", "fw"} <= set(graph.initializers)


def test_opset10_model_with_attribute_operands() -> None:
    model = opset10_model()
    _check(model)
    assert {n.op for n in import_onnx(model).nodes} <= set(op_table())


# -- torch exports -------------------------------------------------------------------------
def _torch_cnn(torch: Any) -> Any:
    """conv+bn+relu+pool+flatten(view)+linear in eval mode, with non-trivial BN statistics."""
    nn = torch.nn

    class Net(nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
            self.pool, self.fc = nn.MaxPool2d(2), nn.Linear(8 * 4 * 4, 10)

        def forward(self, x: Any) -> Any:
            x = self.pool(torch.relu(self.bn(self.conv(x))))
            return self.fc(x.view(x.size(0), -1))

    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    return net


def _torch_export(torch: Any, net: Any, x: Any, path: Path, mode: str) -> None:
    if mode == "dynamo":  # optimize=False keeps BatchNormalization and the Shape→…→Reshape chain
        torch.onnx.export(net, (x,), path, dynamo=True, optimize=False, verbose=False,
                          dynamic_shapes=({0: torch.export.Dim("batch")},))
    elif mode == "dynamo_optimized":  # static shapes, BN fused into the conv by torch's optimizer
        torch.onnx.export(net, (x,), path, dynamo=True, verbose=False)
    else:
        torch.onnx.export(net, (x,), path, dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "batch"}})


@pytest.mark.parametrize("mode", ["dynamo", "dynamo_optimized", "torchscript"])
def test_torch_export_matches_onnxruntime(tmp_path: Path, mode: str) -> None:
    torch = pytest.importorskip("torch")
    net, x, path = _torch_cnn(torch), torch.randn(2, 3, 8, 8), tmp_path / "net.onnx"
    _torch_export(torch, net, x, path, mode)
    model = onnx.load(str(path))
    shapes = {}
    if mode != "dynamo_optimized":  # dynamic batch: the view exports as a Shape→…→Concat→Reshape chain
        assert {"Shape", "Concat"} <= {n.op_type for n in model.graph.node}
        with pytest.raises(InvalidModelError, match="--input-shape x=1,3,8,8"):
            import_onnx(path)
        shapes = {"x": (2, 3, 8, 8)}
    graph = import_onnx(path, input_shapes=shapes)
    expected = {"Conv", "Relu", "MaxPool", "Reshape", "Gemm"} | ({"BatchNormalization"} if mode == "dynamo" else set())
    assert {n.op for n in graph.nodes} == expected
    assert next(n for n in graph.nodes if n.op == "Reshape").attrs["shape"] == (2, 128)
    feeds = {"x": x.numpy()}
    want = run_ort(model, feeds)
    assert_close(run(graph, feeds), want)
    assert_close(run_ort(export_onnx(graph), feeds), want)
    np.testing.assert_allclose(next(iter(want.values())), net(x).detach().numpy(), rtol=1e-4, atol=1e-5)


# -- constant folding ----------------------------------------------------------------------
def test_shape_gather_concat_reshape_folds_away() -> None:
    model = shape_chain_model()
    _check(model)
    graph = import_onnx(model)
    assert [n.op for n in graph.topo_order()] == ["Relu", "Reshape"]
    assert graph.topo_order()[1].attrs["shape"] == (2, 12)
    assert not graph.initializers  # int64 shape constants became attributes


def test_folder_evaluates_constant_subgraphs() -> None:
    nodes = [_node("Constant", [], ["c"], value_ints=[2, 3]),
             _node("ConstantOfShape", ["c"], ["k"], value=numpy_helper.from_array(np.array([0.5], np.float32))),
             _node("Range", ["r0", "r1", "r2"], ["rg"]), _node("Cast", ["rg"], ["rf"], to=TensorProto.FLOAT),
             _node("Expand", ["rf", "c"], ["e"]), _node("Mul", ["k", "e"], ["m"]), _node("Add", ["x", "m"], ["y"])]
    inits = {"r0": np.array(0, I64), "r1": np.array(3, I64), "r2": np.array(1, I64)}
    model = make_model(nodes, {"x": (2, 3)}, ["y"], inits)
    folded = fold_constants(onnx.shape_inference.infer_shapes(model))
    assert [n.op_type for n in folded.graph.node] == ["Add"]
    _check(model)


def test_fold_budget_is_enforced_before_evaluation() -> None:
    big = _node("ConstantOfShape", ["dims"], ["k"])
    model = make_model([big, _node("Add", ["x", "k"], ["y"])], {"x": (1,)}, ["y"],
                       {"dims": np.array([2**15, 2**14], I64)})  # 2 GiB of float32 zeros
    with pytest.raises(ResourceLimitError, match=r"ConstantOfShape.*--max-tensor-bytes"):
        import_onnx(model)
    expand = make_model([_node("Expand", ["one", "dims"], ["k"]), _node("Add", ["x", "k"], ["y"])], {"x": (1,)},
                        ["y"], {"one": np.ones(1, np.float32), "dims": np.array([100, 100], I64)})
    with pytest.raises(ResourceLimitError, match="40000 bytes"):  # 10^4 float32 elements
        import_onnx(expand, max_tensor_bytes=39_999)
    folded = import_onnx(expand, max_tensor_bytes=40_000)  # the same budget in bytes lets it fold
    assert [n.op for n in folded.nodes] == ["Add"] and folded.shape("y") == (100, 100)


# -- canonical form ------------------------------------------------------------------------
def test_canonical_attributes() -> None:
    nodes = [_node("Conv", ["x", "w"], ["c"], auto_pad="SAME_LOWER", strides=[2, 2]),
             _node("Clip", ["c", "lo"], ["k"]),
             _node("LRN", ["k"], ["l"], size=3),
             _node("LeakyRelu", ["l"], ["lr"]),
             _node("Slice", ["lr", "st", "en", "ax"], ["s"]),
             _node("Pad", ["s", "pads", "", "pax"], ["p"]),
             _node("Transpose", ["p"], ["t"]),
             _node("Softmax", ["t"], ["y"])]
    inits = {"w": rand(4, 3, 2, 2), "lo": np.array(0.0, np.float32), "st": np.array([-3], I64),
             "en": np.array([2**40], I64), "ax": np.array([-1], I64), "pads": np.array([1, 2], I64),
             "pax": np.array([-2], I64)}
    model = make_model(nodes, {"x": (1, 3, 7, 7)}, ["y"], inits, opset=18)
    _check(model)
    attrs = {n.op: n.attrs for n in import_onnx(model).nodes}
    assert attrs["Conv"] == {"kernel_shape": (2, 2), "strides": (2, 2), "pads": (1, 1, 0, 0),
                             "dilations": (1, 1), "group": 1}
    assert attrs["Clip"] == {"min": 0.0, "max": math.inf}
    assert attrs["LRN"] == {"alpha": 1e-4, "beta": 0.75, "bias": 1.0, "size": 3}
    assert attrs["LeakyRelu"] == {"alpha": 0.01}
    assert attrs["Slice"] == {"starts": (1,), "ends": (4,), "axes": (3,), "steps": (1,)}
    assert attrs["Pad"] == {"pads": (0, 0, 1, 0, 0, 0, 2, 0), "mode": "constant", "value": 0.0}
    assert attrs["Transpose"] == {"perm": (3, 2, 1, 0)}
    assert attrs["Softmax"] == {"axis": 3}


def test_identity_feeding_graph_outputs_keeps_output_names() -> None:
    nodes = [_node("Relu", ["x"], ["r"]), _node("Identity", ["r"], ["y1"]), _node("Identity", ["r"], ["y2"]),
             _node("Identity", ["x"], ["y3"])]
    model = make_model(nodes, {"x": (2, 3)}, ["y1", "y2", "y3"])
    _check(model)
    graph = import_onnx(model)
    assert graph.outputs == ["y1", "y2", "y3"]
    assert sorted(n.op for n in graph.nodes) == ["Relu", "Reshape", "Reshape"]


def test_unnamed_nodes_get_op_index_names() -> None:
    model = make_model([_node("Relu", ["x"], ["a"]), _node("Sigmoid", ["a"], ["y"], name="sig")], {"x": (2,)}, ["y"])
    assert sorted(n.name for n in import_onnx(model).nodes) == ["Relu_0", "sig"]


def test_unsorted_graph_is_sorted_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    nodes = [_node("Sigmoid", ["a"], ["y"], name="second"), _node("Relu", ["x"], ["a"], name="first")]
    model = make_model(nodes, {"x": (2, 3)}, ["y"])
    with caplog.at_level(logging.WARNING):
        graph = import_onnx(model)
    assert "not topologically sorted" in caplog.text
    assert [n.name for n in graph.topo_order()] == ["first", "second"]


def test_cycle_is_reported() -> None:
    nodes = [_node("Add", ["x", "b"], ["a"], name="n1"), _node("Relu", ["a"], ["b"], name="n2"),
             _node("Relu", ["a"], ["y"], name="n3")]
    model = make_model(nodes, {"x": (2,)}, ["y"])
    with pytest.raises(InvalidModelError, match=r"cycle: n\d -> n\d -> n\d"):
        import_onnx(model)


# -- export --------------------------------------------------------------------------------
def test_export_is_deterministic_and_checked(tmp_path: Path) -> None:
    model = make_model([_node("Clip", ["x", "lo", "hi"], ["c"]), _node("Reshape", ["c", "s"], ["y"])],
                       {"x": (2, 3)}, ["y"], {"lo": np.array(-1, np.float32), "hi": np.array(1, np.float32),
                                              "s": np.array([-1], I64)})
    graph = import_onnx(model)
    first, second = serialize(export_onnx(graph)), serialize(export_onnx(import_onnx(model)))
    assert first == second
    save_onnx(graph, tmp_path / "out.onnx")
    assert (tmp_path / "out.onnx").read_bytes() == first
    exported = onnx.load_model_from_string(first)
    onnx.checker.check_model(exported, full_check=True)
    assert exported.opset_import[0].version == 17
    assert {t.name for t in exported.graph.initializer} == {"Clip_0_min", "Clip_0_max", "Reshape_1_shape"}
    assert [vi.name for vi in exported.graph.value_info] == ["c"]


# -- errors --------------------------------------------------------------------------------
def test_all_unsupported_ops_reported_at_once() -> None:
    nodes = [loop_node(), _node("Cos", ["lp"], ["e"], name="cos"), _node("Cos", ["e"], ["e2"]),
             _node("Custom", ["e2"], ["y"], domain="com.example", name="custom")]
    model = make_model(nodes, {"x": (2,)}, ["y"], {"trip": np.array(2, I64)})
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(UnsupportedError) as info:
        import_onnx(model)
    message, err = str(info.value), info.value
    assert "Cos (node 'cos', also 'Cos_2'; 2 nodes)" in err.message and "Loop (node 'loop')" in err.message
    assert "com.example::Custom (node 'custom')" in err.message
    assert err.details["counts"] == {"Cos": 2, "Loop": 1, "com.example::Custom": 1}
    assert err.details["nodes"]["Cos"] == ["cos", "Cos_2"] and err.details["ops"]["Loop"] == "loop"
    hint = err.hint or ""  # one remedy per op: its family's, its domain's, or the generic one
    assert "Loop: control flow: export with static shapes" in hint
    assert "com.example::Custom: a custom op of domain 'com.example'" in hint
    assert "Cos: cimc has no kernel for it: cut the model before it" in hint
    assert "the ops cimc takes: Abs, Add" in hint and message.endswith(")")


def test_gather_with_computed_indices_is_unsupported() -> None:
    """A Gather of constant indices is an op (``cimc.ops.defs.gather``); indices read from an input are not."""
    model = single("Gather", {"x": (4, 3)}, axis=0, extra=["i"])
    model.graph.input.append(helper.make_tensor_value_info("i", TensorProto.INT64, [2]))
    with pytest.raises(UnsupportedError, match=r"Gather\): indices 'i' must be a constant"):
        import_onnx(model)


def test_symbolic_batch_needs_input_shape() -> None:
    model = single("Relu", {"x": ("N", 3, 8, 8)})
    with pytest.raises(InvalidModelError, match=r"--input-shape x=1,3,8,8"):
        import_onnx(model)
    graph = import_onnx(model, input_shapes={"x": (1, 3, 8, 8)})
    assert graph.tensors["y"].shape == (1, 3, 8, 8)
    with pytest.raises(UsageError, match="unknown input"):
        import_onnx(model, input_shapes={"z": (1, 3, 8, 8)})
    with pytest.raises(UsageError, match="fixed to 3"):
        import_onnx(model, input_shapes={"x": (1, 4, 8, 8)})


def test_batchnorm_training_mode_is_unsupported() -> None:
    inits = {k: np.ones(3, np.float32) for k in ("s", "b", "m", "v")}
    node = _node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "mean", "var"], training_mode=1)
    model = make_model([node], {"x": (2, 3, 4, 4)}, ["y"], inits)
    with pytest.raises(UnsupportedError, match="training_mode"):
        import_onnx(model)


def test_runtime_weights_and_non_float_tensors_are_unsupported() -> None:
    model = single("Conv", {"x": (1, 2, 4, 4), "w": (3, 2, 1, 1)})
    with pytest.raises(UnsupportedError, match=r"conv0.*'w'"):
        import_onnx(model)
    ints = make_model([_node("Relu", ["x"], ["y"])], {"x": (2,)}, ["y"], elem=TensorProto.INT64)
    with pytest.raises(UnsupportedError, match="float32"):
        import_onnx(ints)


def test_version_checks() -> None:
    model = single("Relu", {"x": (2,)})
    model.ir_version = onnx.IR_VERSION + 1
    with pytest.raises(UnsupportedError, match="IR version"):
        import_onnx(model)
    model = single("Relu", {"x": (2,)})
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(UnsupportedError, match="opset"):
        import_onnx(model)


def test_file_limits_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\xff" * 4096)
    with pytest.raises(ResourceLimitError, match="--max-model-bytes"):
        load_model(path, max_bytes=1000)  # garbage, but refused on size before any parsing
    with pytest.raises(InvalidModelError):
        import_onnx(path)
    good = single("Relu", {"x": (2,)}).SerializeToString()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(InvalidModelError):
        import_onnx(path)
    with pytest.raises(UsageError):
        import_onnx(tmp_path / "missing.onnx")


def test_external_data_inside_folder_loads(tmp_path: Path) -> None:
    path = external_model(tmp_path / "model", "w.bin")
    (path.parent / "w.bin").write_bytes(rand(3, 1, 1, 1).tobytes())
    graph = import_onnx(path)
    np.testing.assert_array_equal(graph.initializers["w"], rand(3, 1, 1, 1))


def _no_read(*args: Any) -> None:
    raise AssertionError("external data was read")


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink"])
def test_external_data_escaping_the_folder_is_refused(tmp_path: Path, kind: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "x.bin"
    outside.write_bytes(rand(3, 1, 1, 1).tobytes())
    location = {"dotdot": "../x.bin", "absolute": str(outside)}.get(kind, "w.bin")
    path = external_model(tmp_path / "model", location)
    if kind == "symlink":
        os.symlink(outside, path.parent / "w.bin")
    elif kind == "hardlink":
        os.link(outside, path.parent / "w.bin")
    with monkeypatch.context() as patch:  # refused before any external byte is read
        patch.setattr(onnx, "load_external_data_for_model", _no_read)
        patch.setattr(loader, "_read_into", _no_read)
        with pytest.raises(SecurityError):
            import_onnx(path)
    graph = import_onnx(path, allow_external_outside=True)
    np.testing.assert_array_equal(graph.initializers["w"], rand(3, 1, 1, 1))


def test_external_data_past_end_of_file(tmp_path: Path) -> None:
    path = external_model(tmp_path / "model", "w.bin", offset=8)
    (path.parent / "w.bin").write_bytes(b"\0" * 16)
    with pytest.raises(InvalidModelError, match="past the end"):
        import_onnx(path)


def test_run_cimc_helper_matches_onnxruntime() -> None:
    model = single("Relu", {"x": (2, 3)})
    feeds = feeds_for(model)
    assert_close(run_cimc(model, feeds), run_ort(model, feeds))


def test_metadata_props_round_trip() -> None:
    """Model metadata (QAT step sizes travel as ``cimc.quant``) survives import and export."""
    from onnx import helper as h

    from cimc.frontend import export_onnx, import_onnx

    x = h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])
    y = h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])
    model = h.make_model(h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                         opset_imports=[h.make_opsetid("", 17)])
    h.set_model_props(model, {"cimc.quant": '{"version": 1}'})
    graph = import_onnx(model)
    assert graph.metadata == {"cimc.quant": '{"version": 1}'}
    assert {p.key: p.value for p in export_onnx(graph).metadata_props} == graph.metadata


def _renamed(value: Any, names: dict[str, str]) -> Any:
    """``value`` (parsed JSON) with every string and key found in ``names`` replaced."""
    if isinstance(value, dict):
        return {names.get(k, k): _renamed(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, names) for v in value]
    return names.get(value, value) if isinstance(value, str) else value


def test_default_torch_export_of_adaptive_avg_pool_compiles_like_the_legacy_export(tmp_path: Path) -> None:
    """``torch.onnx.export(m, (x,), path)`` (torch 2.13's default, the dynamo exporter, opset 18+)
    writes ``AdaptiveAvgPool2d(1)`` as ``ReduceMean(axes=[2, 3] as an input, keepdims=1)``;
    cimc imports it as the ``GlobalAveragePool`` the legacy exporter writes, so the builds agree.

    They are not byte-identical: the exporters name nodes and tensors differently
    (``node_conv2d`` against ``/0/Conv``), and the dynamo export flattens with a
    ``Reshape`` where the legacy one has a ``Flatten`` (both the same digital reshape). So
    ``layout.json`` and ``quant.json`` are compared with the dynamo names mapped to the
    legacy ones (the two IR graphs pair up node by node)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    from click.testing import CliRunner

    from cimc.cli.main import main

    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 4)).eval()
    x = torch.randn(1, 3, 8, 8)
    dyn, leg = tmp_path / "dynamo.onnx", tmp_path / "legacy.onnx"
    torch.onnx.export(net, (x,), dyn)
    torch.onnx.export(net, (x,), leg, dynamo=False)
    assert "ReduceMean" in {n.op_type for n in onnx.load(str(dyn)).graph.node}
    graphs = [import_onnx(dyn), import_onnx(leg)]
    assert [n.op for n in graphs[0].nodes] == ["Conv", "Relu", "GlobalAveragePool", "Reshape", "Gemm"]
    assert [n.op for n in graphs[1].nodes] == ["Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm"]
    feeds = {"x": x.numpy()}
    for graph in graphs:
        out = run(graph, {graph.inputs[0]: feeds["x"]})
        np.testing.assert_allclose(next(iter(out.values())), net(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    names = dict(zip(graphs[0].inputs, graphs[1].inputs, strict=True))
    for a, b in zip(graphs[0].nodes, graphs[1].nodes, strict=True):
        names |= {a.name: b.name} | dict(zip(a.outputs, b.outputs, strict=True))
    builds = []
    for src in (dyn, leg):
        result = CliRunner().invoke(main, ["compile", str(src), "-o", str(tmp_path / src.stem)])
        assert result.exit_code == 0, result.output
        builds.append(tmp_path / src.stem)
    for doc in ("layout.json", "quant.json"):
        mine, theirs = (json.loads((b / doc).read_text()) for b in builds)
        if doc == "layout.json":  # the dynamo export also records each layer's torch module
            assert [x.pop("module") for x in mine["layers"]] == ["0"]  # the Conv, nn.Sequential's module 0
        assert _renamed(mine, names) == theirs, doc


def test_reduce_axes_computed_at_run_time_or_noop_are_refused() -> None:
    """A ReduceMean whose axes are a runtime input, or an identity ReduceSum
    (``noop_with_empty_axes=1`` without axes), are unsupported with a clear message."""
    node = helper.make_node("ReduceMean", ["x", "a"], ["y"], name="mean0")
    model = make_model([node], {"x": (1, 2, 3, 3), "a": (2,)}, ["y"], opset=18)
    model.graph.input[1].type.tensor_type.elem_type = TensorProto.INT64
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 1, 1]))
    with pytest.raises(UnsupportedError, match=r"mean0.*axes 'a' must be a constant"):
        import_onnx(model)
    noop = helper.make_node("ReduceSum", ["x"], ["y"], name="sum0", noop_with_empty_axes=1)
    with pytest.raises(UnsupportedError, match="noop_with_empty_axes"):
        import_onnx(make_model([noop], {"x": (1, 2, 3, 3)}, ["y"], opset=18))


def test_split_is_imported_as_slices_of_its_used_parts() -> None:
    """A Split becomes one Slice per read output (an unread part makes no node); a computed
    ``split`` is unsupported."""
    nodes = [helper.make_node("Split", ["x"], ["a", "b", "c"], name="sp", axis=1),
             helper.make_node("Relu", ["a"], ["y"], name="r")]
    model = make_model(nodes, {"x": (1, 6, 2, 2)}, ["y", "c"], opset=13)
    graph = import_onnx(model)
    assert [(n.name, n.op, n.attrs.get("starts")) for n in graph.nodes] == [
        ("sp", "Slice", (0,)), ("sp_2", "Slice", (4,)), ("r", "Relu", None)]
    feeds = feeds_for(model)
    want, got = run_ort(model, feeds), run(graph, feeds)
    assert all(np.array_equal(want[k], got[k]) for k in want)
    computed = helper.make_node("Split", ["x", "s"], ["a", "b"], name="sp", axis=1)
    model = make_model([computed], {"x": (1, 6, 2, 2), "s": (2,)}, ["a", "b"], opset=13)
    model.graph.input[1].type.tensor_type.elem_type = TensorProto.INT64
    for out in model.graph.output:
        out.CopyFrom(helper.make_tensor_value_info(out.name, TensorProto.FLOAT, [1, 3, 2, 2]))
    with pytest.raises(UnsupportedError, match=r"split 's' must be a constant"):
        import_onnx(model)


def test_default_torch_export_of_split_sub_div_neg_silu_and_reductions_compiles(tmp_path: Path) -> None:
    """torch's default (dynamo) export of chunk (Split), SiLU (Sigmoid·Mul), Sub, Div, Neg,
    amax/sum over single axes (ReduceMax/ReduceSum) and ``mean((2, 3))`` (ReduceMean,
    keepdims=0: GlobalAveragePool + Flatten) imports, matches torch and compiles; the emulator
    and onnxruntime on ``model.cim.onnx`` agree bit for bit (the reductions in float64)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    from click.testing import CliRunner

    from cimc.cli.main import main

    nn = torch.nn

    class Net(nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.c2, self.act = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(4, 6, 1), nn.SiLU()
            self.fc = nn.Linear(6, 5)

        def forward(self, x: Any) -> Any:
            x = self.act(self.c1(x))
            a, b = torch.chunk(x, 2, dim=1)
            x = self.c2(a - b / 2) - x.amax(dim=1, keepdim=True)
            return self.fc((-x).sum(dim=3, keepdim=True).mean((2, 3)))

    torch.manual_seed(0)
    net, x, path = Net().eval(), torch.randn(1, 3, 8, 8), tmp_path / "net.onnx"
    torch.onnx.export(net, (x,), path)
    exported = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Split", "Sub", "Div", "Neg", "ReduceMax", "ReduceSum", "ReduceMean"} <= exported
    graph = import_onnx(path)
    assert {"Slice", "ReduceMax", "ReduceSum", "GlobalAveragePool", "Flatten"} <= {n.op for n in graph.nodes}
    assert not {"Split", "ReduceMean"} & {n.op for n in graph.nodes}
    out = run(graph, {graph.inputs[0]: x.numpy()})
    np.testing.assert_allclose(next(iter(out.values())), net(x).detach().numpy(), rtol=1e-5, atol=1e-5)
    result = CliRunner().invoke(main, ["compile", str(path), "-o", str(tmp_path / "build")])
    assert result.exit_code == 0, result.output
    batch = np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", batch)
    result = CliRunner().invoke(main, ["emulate", str(tmp_path / "build"), "--inputs", str(tmp_path / "x.npy"),
                                       "--save-outputs", str(tmp_path / "emulated.npy")])
    assert result.exit_code == 0, result.output
    compiled = run_ort(onnx.load(str(tmp_path / "build" / "model.cim.onnx")), {graph.inputs[0]: batch})
    np.testing.assert_array_equal(next(iter(compiled.values())), np.load(tmp_path / "emulated.npy"))  # bit-exact
