"""HardSwish and HardSigmoid (MobileNetV3), each one module of ``cimc.ops.defs``: import from
ONNX files (``onnx.helper`` and torch's exporter), numpy kernel = onnxruntime, torch forward =
numpy kernel, morph sees channel-preserving elementwise ops, export round-trips.

Tolerances (float32): numpy vs onnxruntime and torch vs numpy ``atol = rtol = 1e-6`` (the
formulas are the same, only rounding may differ)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper

from cimc.frontend import export_onnx, import_onnx
from cimc.ir import verify
from cimc.ir.graph import Graph
from cimc.ir.interpreter import run
from cimc.macro import MacroSpec
from cimc.morph.channel_groups import analyze
from cimc.morph.channels_pass import MorphChannels
from cimc.morph.plan import class_scores, identity_plan, prune_plan, ratio_widths, widths_to_plan
from cimc.ops import op_table
from cimc.passes.manager import PassContext, run_passes
from cimc.train.signs import nonnegative_tensors
from tests.ir_builders import add_bn, add_conv, add_unary, graph_with_input
from tests.morph_builders import ort_outputs, random_input, zero_classes
from tests.onnx_builders import make_model, run_ort

pytestmark = pytest.mark.torch  # the torch forwards and the training hook's sign rule

TOL = {"rtol": 1e-6, "atol": 1e-6}
TORCH_SIXTH = float(np.float32(1 / 6))
# (op, ONNX attributes, canonical attributes)
CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("HardSwish", {}, {}),
    ("HardSigmoid", {}, {"alpha": float(np.float32(0.2)), "beta": 0.5}),
    ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}, {"alpha": TORCH_SIXTH, "beta": 0.5}),
]


def _inputs(shape: tuple[int, ...] = (2, 3, 4, 5)) -> np.ndarray:
    """Values over [−5, 5] plus the breakpoints ±3 (HardSwish) and ±2.5 (HardSigmoid, alpha 0.2)."""
    x = np.random.default_rng(0).uniform(-5, 5, size=shape).astype(np.float32)
    x.reshape(-1)[:7] = [-3.0, 3.0, -2.5, 2.5, 0.0, -1e-7, 1e-7]
    return x


def _model(op: str, attrs: dict[str, Any]) -> onnx.ModelProto:
    node = helper.make_node(op, ["x"], ["y"], name="act", **attrs)
    return make_model([node], {"x": (2, 3, 4, 5)}, ["y"])


@pytest.mark.parametrize("op,attrs,canonical", CASES)
def test_import_kernel_matches_onnxruntime_and_export_round_trips(op: str, attrs: dict[str, Any],
                                                                 canonical: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "act.onnx"
    onnx.save(_model(op, attrs), path)
    graph = import_onnx(path)
    (node,) = graph.nodes
    assert (node.op, node.attrs) == (op, canonical)
    feeds = {"x": _inputs()}
    want = run_ort(path.read_bytes(), feeds)["y"]
    np.testing.assert_allclose(run(graph, feeds)["y"], want, **TOL)
    exported = export_onnx(graph)
    np.testing.assert_allclose(run_ort(exported, feeds)["y"], want, **TOL)
    again = import_onnx(exported)
    assert [(n.op, n.attrs) for n in again.nodes] == [(op, canonical)]


@pytest.mark.parametrize("op,attrs,canonical", CASES)
def test_torch_forward_matches_numpy_kernel(op: str, attrs: dict[str, Any], canonical: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    definition = op_table()[op]
    x = _inputs()
    got = definition.torch([torch.from_numpy(x)], canonical).numpy()
    np.testing.assert_allclose(got, definition.kernel([x], canonical), **TOL)


@pytest.mark.parametrize("module_name,op", [("Hardswish", "HardSwish"), ("Hardsigmoid", "HardSigmoid")])
def test_torch_exported_modules_import_and_match_torch(module_name: str, op: str) -> None:
    """torch's exporter writes ``nn.Hardswish`` as HardSwish, ``nn.Hardsigmoid`` as HardSigmoid(alpha=1/6)."""
    torch = pytest.importorskip("torch")
    module = getattr(torch.nn, module_name)()
    x = torch.from_numpy(_inputs())
    buf = io.BytesIO()
    torch.onnx.export(module, (x,), buf, opset_version=17, dynamo=False, input_names=["x"], output_names=["y"])
    graph = import_onnx(onnx.load_from_string(buf.getvalue()))
    assert [n.op for n in graph.nodes] == [op]
    np.testing.assert_allclose(run(graph, {"x": x.numpy()})["y"], module(x).numpy(), **TOL)


def _morph_graph() -> Graph:
    """conv+BN → HardSwish → conv+BN → HardSigmoid → conv: two activations between layers."""
    rng = np.random.default_rng(0)
    g = graph_with_input((2, 3, 6, 6))
    a = add_unary(g, "HardSwish", add_bn(g, add_conv(g, "x", 8, 3, pad=1, rng=rng, name="c1"), rng, "bn1"), "hswish")
    b = add_unary(g, "HardSigmoid", add_bn(g, add_conv(g, a, 6, 3, pad=1, rng=rng, name="c2"), rng, "bn2"), "hsig",
                  alpha=0.2, beta=0.5)
    g.outputs.append(add_conv(g, b, 4, 1, rng=rng, name="c3"))
    verify(g)
    return g


def test_morph_ties_channels_through_both_activations() -> None:
    graph = _morph_graph()
    groups = analyze(graph)
    for node in ("hswish", "hsig"):
        x, y = graph.node(node).inputs[0], graph.node(node).outputs[0]
        np.testing.assert_array_equal(groups.classes(x), groups.classes(y))
    assert groups.changeable[groups.class_group[groups.classes("hswish.y")]].all()


def test_morph_widening_and_pruning_keep_outputs() -> None:
    """Copy-widening keeps the outputs of any elementwise op; removing zero-γ channels keeps them
    before HardSwish (``HardSwish(0) = 0``)."""
    graph = _morph_graph()
    groups = analyze(graph)
    ctx = PassContext(macro=MacroSpec())
    plan = widths_to_plan(groups, identity_plan(groups, class_scores(graph, groups)),
                          ratio_widths(groups.group_size, 3, 2, groups.changeable))
    wide = run_passes(graph, [MorphChannels(plan=plan, init="copy", noise=0.0)], ctx)
    x = random_input(graph)
    np.testing.assert_allclose(ort_outputs(wide, x), ort_outputs(graph, x), rtol=1e-4, atol=1e-4)
    dead = np.zeros(groups.num_classes, bool)
    dead[groups.classes("hswish.y")[[1, 4, 6]]] = True
    zeroed = zero_classes(graph, groups, dead)
    plan = prune_plan(groups, class_scores(zeroed, groups), threshold=0.0)
    pruned = run_passes(zeroed, [MorphChannels(plan=plan)], ctx)
    assert pruned.shape("hswish.y")[1] == 5
    np.testing.assert_allclose(ort_outputs(pruned, x), ort_outputs(zeroed, x), rtol=1e-5, atol=1e-5)


def test_sign_homogeneity_and_batch_rules() -> None:
    """HardSigmoid's output is ≥ 0 (the next CIM layer gets unsigned codes), HardSwish's is not;
    neither is homogeneous (scale-to-shift does not move scales through them) or mixes samples."""
    graph = _morph_graph()
    known = nonnegative_tensors(graph)
    assert "hsig.y" in known and "hswish.y" not in known
    for name in ("HardSwish", "HardSigmoid"):
        op = op_table()[name]
        node = graph.node("hswish" if name == "HardSwish" else "hsig")
        assert not op.homogeneous(node) and not op.mixes_batch(node.attrs) and not op.double
