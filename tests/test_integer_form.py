"""The integer form of ``model.cim.onnx`` (``cimc.lowering.integer``): bit-exact with the float
form on every exposed tensor, its requantization check against brute force, and the expansion
back into the float form (``cimc.lowering.expand``) node for node."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from cimc.errors import BuildError
from cimc.ir.annotations import QuantParams
from cimc.lowering.expand import expand_integer_layers
from cimc.lowering.integer import requantization_is_exact
from cimc.lowering.model import cim_model, expose, serialize
from tests.cim_helpers import LAYER_FIELDS, cim_names, compile_ir, small_cnn

pytestmark = pytest.mark.torch  # the compile helpers


@pytest.fixture(scope="module")
def compiled():  # type: ignore[no-untyped-def]
    return compile_ir(small_cnn(group=2))


def _outputs(model: onnx.ModelProto, layers: list[str], x: np.ndarray, optimize: bool) -> dict[str, np.ndarray]:
    opts = ort.SessionOptions()
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(serialize(expose(model, layers)), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"x": x}), strict=True))


def _dac_ties(graph, x: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """``x`` with half of its values on the first layer's rounding edges ``(k + ½)·S_A``."""
    q = graph.node(cim_names(graph)[0]).ann.get_ann(QuantParams)
    k = np.random.default_rng(1).integers(-9, 9, x.shape)
    ties = ((k + 0.5) * np.float32(q.a_step)).astype(np.float32)
    return np.where(np.arange(x.size).reshape(x.shape) % 2 == 0, ties, x).astype(np.float32)


@pytest.mark.parametrize("optimize", [False, True])
def test_integer_and_float_forms_agree_on_every_tensor(compiled, optimize: bool) -> None:  # type: ignore[no-untyped-def]
    graph, _ = compiled
    integer, floating = cim_model(graph), cim_model(graph, integer=False)
    layers = cim_names(graph)
    assert sum(n.op_type == "QLinearConv" for n in integer.graph.node) == len(layers)
    assert not any(n.op_type == "QLinearConv" for n in floating.graph.node)
    x = _dac_ties(graph, np.random.default_rng(0).standard_normal((6, 3, 8, 8)).astype(np.float32) * 3)
    got, want = _outputs(integer, layers, x, optimize), _outputs(floating, layers, x, optimize)
    assert set(got) == set(want) and len(got) == 1 + len(layers) * len(LAYER_FIELDS)
    for name, value in want.items():
        assert got[name].dtype == np.float32
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    first = want[f"{layers[0]}/input_codes"]
    assert (first < 0).any() and (first > 0).any()  # signed codes: the levels' zero point 128 is exercised


def test_expansion_is_the_float_form_node_for_node(compiled) -> None:  # type: ignore[no-untyped-def]
    graph, _ = compiled
    expanded, floating = cim_model(graph), cim_model(graph, integer=False)
    assert expand_integer_layers(expanded) == len(cim_names(graph))
    assert [(n.op_type, n.name, list(n.input), list(n.output), n.doc_string, list(n.attribute))
            for n in expanded.graph.node] == \
        [(n.op_type, n.name, list(n.input), list(n.output), n.doc_string, list(n.attribute))
         for n in floating.graph.node]
    values = [{t.name: numpy_helper.to_array(t) for t in m.graph.initializer} for m in (expanded, floating)]
    assert values[0].keys() == values[1].keys()
    for name, value in values[1].items():
        assert values[0][name].dtype == value.dtype and np.array_equal(values[0][name], value), name
    onnx.checker.check_model(expanded, full_check=True)


def _brute_force(step: float, m: int) -> bool:
    s = np.float32(step)
    top = int(np.ceil((m + 2) * float(s))) + 2
    acc = np.arange(-top, top + 1)
    want = np.clip(np.rint(acc.astype(np.float32) / s), -m, m)
    mu = np.float32(1) / s
    single = np.clip(np.rint(acc.astype(np.float32) * mu), -m, m)
    exact = np.clip(np.rint(acc * np.float64(mu)), -m, m)
    return bool(np.array_equal(single, want) and np.array_equal(exact, want))


STEPS = [18.200000762939453, 10.541666984558105, 1.0, 2.0, 3.0, 6.0, 0.1, 0.3, 7.0 / 3.0, 12.5, 1234.5678, 40000.0]


@pytest.mark.parametrize("m", [1, 15, 127])
def test_requantization_check_equals_brute_force(m: int) -> None:
    rng = np.random.default_rng(m)
    steps = [*STEPS, *rng.uniform(0.5, 200, 60), *np.round(rng.uniform(1, 300, 40))]
    verdicts = [(requantization_is_exact(np.float32(s), m), _brute_force(s, m)) for s in steps]
    assert all(a == b for a, b in verdicts), [s for s, (a, b) in zip(steps, verdicts, strict=True) if a != b]
    assert any(a for a, _ in verdicts) and not all(a for a, _ in verdicts)  # both verdicts occur


def test_requantization_check_refuses_what_is_not_a_step() -> None:
    assert not requantization_is_exact(np.float32(0), 15)
    assert not requantization_is_exact(np.float32(np.inf), 15)
    assert not requantization_is_exact(np.float32(-2), 15)
    assert requantization_is_exact(np.float32(6.0), 15) is False  # ties at 3 + 6k: 3·fl(1/6) > 1/2 exactly


def test_a_layer_that_fails_the_check_keeps_the_float_form(compiled) -> None:  # type: ignore[no-untyped-def]
    graph, _ = compiled
    layer = cim_names(graph)[1]
    node = graph.node(layer)
    q = node.ann.get_ann(QuantParams)
    assert q is not None
    import dataclasses

    node.ann.put(dataclasses.replace(q, adc_step=np.asarray([6.0], np.float32)))
    try:
        model = cim_model(graph)
    finally:
        node.ann.put(q)
    convs = {n.name.split("/")[0]: n.op_type for n in model.graph.node if n.op_type in ("Conv", "QLinearConv")}
    assert convs[layer] == "Conv" and sum(v == "QLinearConv" for v in convs.values()) == len(cim_names(graph)) - 1


def _set(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    for t in model.graph.initializer:
        if t.name == name:
            t.CopyFrom(numpy_helper.from_array(value, name))
            return
    raise AssertionError(name)


@pytest.mark.parametrize("field, value", [("adc_levels_zero", np.uint8(127)), ("unit", np.float32(2)),
                                          ("cells_zero", np.int8(1)), ("adc_step", np.ones(2, np.float32))])
def test_expansion_refuses_a_layer_it_did_not_write(compiled, field: str, value: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    model = cim_model(compiled[0])
    _set(model, f"{cim_names(compiled[0])[0]}/{field}", value)
    with pytest.raises(BuildError, match="integer layer"):
        expand_integer_layers(model)
