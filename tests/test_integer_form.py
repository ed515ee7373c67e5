"""The integer form of ``model.cim.onnx`` (``cimc.lowering.integer``): bit-exact with the float
form on every exposed tensor, its requantization check against brute force, and the expansion
back into the float form (``cimc.lowering.expand``) node for node."""

from __future__ import annotations

import dataclasses

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
    assert (first < 0).any() and (first > 0).any()  # signed codes: the levels' zero point 7 is exercised


@pytest.mark.parametrize("adc_bits", [None, 2])
def test_expansion_is_the_float_form_node_for_node(compiled, adc_bits: int | None) -> None:  # type: ignore[no-untyped-def]
    """Also with 2-bit ADCs (``M = 1``, the smallest a macro allows)."""
    graph, _ = compiled
    for layer in cim_names(graph) if adc_bits else []:
        graph = _with(graph, layer, adc_bits=adc_bits)
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


def _with(graph, layer: str, **changes: object):  # type: ignore[no-untyped-def]
    """``graph`` (a copy) with fields of ``layer``'s ``QuantParams`` replaced."""
    copy = graph.copy()
    node = copy.node(layer)
    q = node.ann.get_ann(QuantParams)
    assert q is not None
    node.ann.put(dataclasses.replace(q, **changes))  # type: ignore[arg-type]
    return copy


def _forms(model: onnx.ModelProto) -> dict[str, str]:
    return {n.name.split("/")[0]: n.op_type for n in model.graph.node if n.op_type in ("Conv", "QLinearConv")}


UNSLICED = {"cell_bits": None, "dac_bits": None}  # whole codes on the cells and DACs, whatever their width


@pytest.mark.parametrize("change", [{"adc_step": np.asarray([6.0], np.float32)}, {"adc_bits": 9, **UNSLICED},
                                    {"a_bits": 9, **UNSLICED}, {"w_bits": 9, **UNSLICED},
                                    {"w_bits": 8, "a_bits": 8, **UNSLICED}])
def test_a_layer_the_integer_form_cannot_hold_keeps_the_float_form(compiled, change) -> None:  # type: ignore[no-untyped-def]
    """A failed requantization check; an ADC, DAC codes or cell codes of 9 bits; 8-bit cells
    under 8-bit unsigned codes (``2·255·127`` past int16: ``vpmaddubsw``'s saturation)."""
    graph, _ = compiled
    layer = cim_names(graph)[1]
    forms = _forms(cim_model(_with(graph, layer, **change)))
    assert forms[layer] == "Conv" and sum(v == "QLinearConv" for v in forms.values()) == len(forms) - 1


def test_eight_bit_cells_under_eight_bit_signed_codes_keep_the_float_form(compiled) -> None:  # type: ignore[no-untyped-def]
    """Signed codes ``[−127, 127]`` span 254 levels: ``2·254·127`` is past int16 too."""
    graph, _ = compiled
    layer = cim_names(graph)[0]  # signed codes
    assert _forms(cim_model(_with(graph, layer, w_bits=8, a_bits=8, **UNSLICED)))[layer] == "Conv"


def test_eight_bit_cells_under_seven_bit_codes_take_the_integer_form(compiled) -> None:  # type: ignore[no-untyped-def]
    """``2·127·127 = 32258``: every pair of products fits int16, at the limit."""
    graph, _ = compiled
    layer = cim_names(graph)[1]  # unsigned codes
    assert _forms(cim_model(_with(graph, layer, w_bits=8, a_bits=7, **UNSLICED)))[layer] == "QLinearConv"


def test_eight_bit_codes_and_adc_take_the_integer_form(compiled) -> None:  # type: ignore[no-untyped-def]
    """8-bit DAC codes, signed (``[−127, 127]`` at zero point 127) and unsigned (``[0, 255]``),
    and an 8-bit ADC (``±127`` at 128), on 4-bit cells: the levels fill uint8, the forms agree."""
    graph, _ = compiled
    for layer in cim_names(graph):
        q = graph.node(layer).ann.get_ann(QuantParams)
        assert q is not None
        graph = _with(graph, layer, a_bits=8, w_bits=4, adc_bits=8, **UNSLICED,
                      a_step=np.float32(q.a_step / 16),
                      adc_step=(q.adc_step / np.float32(64)).astype(np.float32))
    integer = cim_model(graph)
    assert set(_forms(integer).values()) == {"QLinearConv"}
    x = np.random.default_rng(2).standard_normal((4, 3, 8, 8)).astype(np.float32) * 4
    got, want = _outputs(integer, cim_names(graph), x, True), _outputs(cim_model(graph, integer=False),
                                                                       cim_names(graph), x, True)
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    first, second = (want[f"{layer}/input_codes"] for layer in cim_names(graph)[:2])
    assert first.min() == -127 and first.max() == 127 and second.min() == 0 and second.max() == 255
    assert np.abs(want[f"{cim_names(graph)[0]}/adc_codes"]).max() == 127


def test_a_bit_sliced_layer_keeps_the_float_form(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """8-bit weights and inputs on 4-bit cells and DACs, one ADC step per layer."""
    from cimc.api import compile_model
    from cimc.lowering.qdq import read_cim_model

    compile_model("tiny_cnn", tmp_path / "b", w_bits=8, a_bits=8)
    model = read_cim_model(tmp_path / "b")
    assert not any(n.op_type == "QLinearConv" for n in model.graph.node) and _forms(model)


def _set(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    for t in model.graph.initializer:
        if t.name == name:
            t.CopyFrom(numpy_helper.from_array(value, name))
            return
    raise AssertionError(name)


@pytest.mark.parametrize("field, value", [("adc_levels_zero", np.uint8(127)), ("unit", np.float32(2)),
                                          ("cells_zero", np.int8(1)), ("adc_step", np.ones(2, np.float32)),
                                          ("adc_levels_max", np.uint8(140)), ("adc_levels_min", np.uint8(128)),
                                          ("adc_levels_min", np.uint8(0))])
def test_expansion_refuses_a_layer_it_did_not_write(compiled, field: str, value: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """Constants the lowering never writes: a scale not 1, a zero point not 128, a step per
    channel, ADC bounds not ``128 ± M``."""
    model = cim_model(compiled[0])
    _set(model, f"{cim_names(compiled[0])[0]}/{field}", value)
    with pytest.raises(BuildError, match=r"integer layer|layer's ADC codes"):
        expand_integer_layers(model)


def test_expansion_refuses_an_adc_without_codes(compiled) -> None:  # type: ignore[no-untyped-def]
    """Bounds ``128 ± 0``: every code 0, which no ADC of 2 bits or more writes."""
    model = cim_model(compiled[0])
    for side in ("min", "max"):
        _set(model, f"{cim_names(compiled[0])[0]}/adc_levels_{side}", np.uint8(128))
    with pytest.raises(BuildError, match="layer's ADC codes"):
        expand_integer_layers(model)


def _rewired(model: onnx.ModelProto, layer: str, how: str) -> onnx.ModelProto:
    """``model`` with ``layer``'s integer chain broken in one way."""
    nodes = {n.output[0]: n for n in model.graph.node}
    conv = nodes[f"{layer}/adc_levels_raw"]
    if how == "no DAC":  # the graph input straight into the QLinearConv
        conv.input[0] = model.graph.input[0].name
    elif how == "two readers":  # the raw levels read by a second node
        model.graph.node.append(onnx.helper.make_node("Identity", [conv.output[0]], ["spy"]))
    elif how == "cells not constant":
        conv.input[3] = conv.input[0]
    elif how == "renamed codes":
        dq = nodes[f"{layer}/adc_codes"]
        for n in model.graph.node:
            n.input[:] = ["elsewhere" if i == dq.output[0] else i for i in n.input]
        dq.output[0] = "elsewhere"
    elif how == "seven inputs":
        del conv.input[7]
    elif how == "a constant named as the codes":  # the float form's ADC codes would be renamed
        model.graph.initializer.append(numpy_helper.from_array(np.asarray(np.float32(0)), f"{layer}/adc_codes"))
    return model


@pytest.mark.parametrize("how", ["no DAC", "two readers", "cells not constant", "renamed codes", "seven inputs",
                                 "a constant named as the codes"])
def test_expansion_refuses_a_chain_it_did_not_write(compiled, how: str) -> None:  # type: ignore[no-untyped-def]
    model = _rewired(cim_model(compiled[0]), cim_names(compiled[0])[0], how)
    with pytest.raises(BuildError, match=r"model\.cim\.onnx"):
        expand_integer_layers(model)


def test_expansion_of_a_float_form_model_changes_nothing(compiled) -> None:  # type: ignore[no-untyped-def]
    floating = cim_model(compiled[0], integer=False)
    before = floating.SerializeToString()
    assert expand_integer_layers(floating) == 0 and floating.SerializeToString() == before


def test_onnx_reference_evaluator_agrees(compiled) -> None:  # type: ignore[no-untyped-def]
    """onnx's reference evaluator rounds ``QLinearConv``'s exact (float64) product, onnxruntime
    the float32 one: both equal the float form (the reference needs opset ≥ 19 for Q/DQ)."""
    from onnx import version_converter
    from onnx.reference import ReferenceEvaluator

    graph, _ = compiled
    x = _dac_ties(graph, np.random.default_rng(5).standard_normal((3, 3, 8, 8)).astype(np.float32) * 3)
    want = _outputs(cim_model(graph, integer=False), [], x, True)
    reference = ReferenceEvaluator(version_converter.convert_version(cim_model(graph), 21))
    got = reference.run(None, {"x": x})
    assert len(got) == len(want) == 1
    np.testing.assert_array_equal(got[0], next(iter(want.values())))


def test_node_writer_names_are_fresh_and_taken() -> None:
    """``L/field``, then ``L/field_1``, ``L/field_2`` past names already taken; nodes named
    ``output:Op``; every name it gives is taken from then on."""
    from cimc.lowering.writer import Nodes, NodeWriter

    sink = Nodes({"L/a", "L/b", "L/b_1"})
    w = NodeWriter(sink, "L")
    assert [w.const("a", np.float32(i)) for i in range(2)] == ["L/a_1", "L/a_2"]
    assert w.op("Relu", ["x"], "b") == "L/b_2" and sink.nodes[0].name == "L/b_2:Relu"
    assert w.op("Relu", ["x"], "y", final=True) == "y" and sink.nodes[1].name == "y:Relu"
    assert {"L/a_1", "L/a_2", "L/b_2", "L/b_2:Relu", "y:Relu"} <= sink.taken
    assert [t.name for t in sink.extra] == ["L/a_1", "L/a_2"]


def test_a_per_channel_adc_over_two_channels_is_exact() -> None:
    """A step per output channel (float form) with two channels: a two-element step per axis."""
    from tests.ir_builders import add_conv, graph_with_input

    g = graph_with_input((2, 3, 6, 6))
    g.outputs.append(add_conv(g, "x", 2, 3, pad=1, rng=np.random.default_rng(0), name="c"))
    graph, _ = compile_ir(g, granularity="column")
    model = cim_model(graph)
    steps = [numpy_helper.to_array(t) for t in model.graph.initializer if t.name == "c/adc_codes_step"]
    assert len(steps) == 1 and steps[0].shape == (2,)
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    got = _outputs(model, ["c"], x, True)
    from cimc.quant.reference import run_compiled

    ref = run_compiled(graph, {"x": x}, record=True)
    np.testing.assert_array_equal(got["c/adc_codes"], ref.traces["c"].adc_codes)
