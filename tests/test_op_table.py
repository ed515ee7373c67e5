"""The op table (``cimc.ops``) is complete and is the single place the concerns get their ops."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import MISSING, fields
from pathlib import Path

import pytest
from onnx import helper

import cimc
from cimc.errors import InvalidModelError, UnsupportedError
from cimc.frontend import import_onnx
from cimc.frontend.unsupported import check_supported
from cimc.ir import verify
from cimc.ir.interpreter import run
from cimc.ops import find, op_table
from cimc.ops.base import CONCERNS, OpDef, Unsupported
from tests.ir_builders import add_unary, graph_with_input
from tests.onnx_builders import feeds_for, make_model
from tests.test_interpreter import CASES


def test_concerns_are_required_fields() -> None:
    """An ``OpDef`` cannot be built without every concern: a half-added op fails at import."""
    required = {f.name for f in fields(OpDef) if f.default is MISSING and f.default_factory is MISSING}
    assert set(CONCERNS) <= required
    relu = op_table()["Relu"]
    with pytest.raises(TypeError, match="missing"):
        OpDef("Half", (1, 1), (), relu.canonicalize, relu.shape, relu.kernel)  # type: ignore[call-arg]


@pytest.mark.parametrize("name", sorted(op_table()))
def test_every_op_implements_or_declines_every_concern(name: str) -> None:
    op = op_table()[name]
    assert op.name == name
    low, high = op.inputs
    assert 1 <= low <= high and op.outputs == 1
    assert all(0 < i < high for i in op.weight_inputs)
    for concern in CONCERNS:
        rule = getattr(op, concern)
        assert callable(rule), (name, concern)
        if isinstance(rule, Unsupported):
            assert (rule.op, rule.concern) == (name, concern) and len(rule.reason) > 10


def test_declined_concerns_are_the_expected_ones() -> None:
    declined = {(n, c) for n, op in op_table().items() for c in CONCERNS if isinstance(getattr(op, c), Unsupported)}
    # Split, CastLike, ConvTranspose and Upsample never reach the IR: the frontend imports them as other ops
    # (``OpDef.replace``: Slices; a Cast; a Conv and data movement; Resize through the opset upgrade)
    replaced = {(op, c) for op in ("Split", "CastLike", "ConvTranspose", "Upsample") for c in CONCERNS}
    assert declined == {("Conv", "torch"), ("BatchNormalization", "torch")} | replaced


def test_frontend_and_verify_accept_exactly_the_table() -> None:
    """The frontend's supported-op list and verify's op set are the table's."""
    model = make_model([helper.make_node("Foo", ["x"], ["y"], name="foo")], {"x": (1, 2)}, ["y"])
    with pytest.raises(UnsupportedError) as info:
        check_supported(model.graph, frozenset())
    assert (info.value.hint or "").endswith("; the ops cimc takes: " + ", ".join(sorted(op_table())))
    assert {name for name in [*op_table(), "Foo"] if "unsupported op" not in _verify_problems(name)} == set(op_table())


def test_test_cases_cover_exactly_the_table() -> None:
    """Every op imports, runs in the interpreter and torch and exports in the per-op cases of
    ``tests/test_interpreter.py`` (which ``tests/test_train_module.py`` reuses): an op added to
    the table without a case fails here."""
    covered = {node.op for case in CASES.values() for node in import_onnx(case()).nodes}
    # an op without a canonical form (Split) is always imported as other ops (``OpDef.replace``)
    replaced = {name for name, op in op_table().items() if isinstance(op.canonicalize, Unsupported)}
    assert all(op_table()[name].replace is not None for name in replaced)
    in_cases = {node.op_type for case in CASES.values() for node in case().graph.node}
    assert covered == set(op_table()) - replaced and replaced <= in_cases
    assert find("Foo") is None and all(find(name) is op for name, op in op_table().items())


@pytest.mark.parametrize("case", sorted(CASES))
def test_shape_rule_gives_the_kernel_output_shape(case: str) -> None:
    model = CASES[case]()
    graph = import_onnx(model)
    values = run(graph, feeds_for(model), keep=True)
    for node in graph.nodes:
        shapes = [values[t].shape for t in node.inputs if t]
        assert op_table()[node.op].shape(shapes, node.attrs) == values[node.outputs[0]].shape, node.name


def test_no_other_per_op_table_is_left() -> None:
    """The retired per-concern modules are gone (looked up as files: importing ``cimc.train``
    needs torch)."""
    package = Path(cimc.__file__).parent
    assert [m for m in ("ir/ops.py", "ir/kernels.py", "train/ops.py") if (package / m).exists()] == []


def test_importing_the_table_loads_no_torch() -> None:
    code = ("import sys, cimc.ops as o; t = o.op_table(); "
            "print(sorted(m for m in ('torch', 'onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _verify_problems(op: str) -> str:
    """What ``verify`` says about a one-node graph ``y = op(x)`` (attributes missing)."""
    graph = graph_with_input((1, 2))
    add_unary(graph, op, "x", "n")
    try:
        verify(graph)
    except InvalidModelError as exc:
        return str(exc)
    return ""
