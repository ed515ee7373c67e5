"""Bit-sliced layers in the executors: emulator == onnxruntime(model.cim.onnx) == numpy
reference, bit for bit, for weights wider than a cell and inputs wider than the DAC, on two
macros (4-bit cells / 4-bit DAC and 2-bit cells / 1-bit DAC), grouped convs, Gemm, a signed
first-layer input, per-layer and per-column steps, with and without scale-to-shift. Plus:
without clipping the shift-add gives the unsliced integer product exactly; an unsliced layer
takes the old code path (the same model.cim.onnx bytes); the build files, golden vectors and
emulator checks of a sliced build."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

import cimc.models as models
from cimc.api import compile_model
from cimc.check.emulator import check_build
from cimc.emulator import Emulator, read_build, write_golden
from cimc.errors import BuildError
from cimc.ir.annotations import QuantParams
from cimc.ir.graph import Graph
from cimc.lowering.model import cim_model, serialize
from cimc.macro import MacroSpec
from cimc.passes.fold_batchnorm import FoldBatchNorm
from cimc.passes.manager import GraphPass, PassContext, run_passes
from cimc.passes.place_bitlines import PlaceBitlines
from cimc.passes.quantize import LayerBits, Quantize
from cimc.passes.scale_to_shift import ScaleToShift
from cimc.passes.select_cim import SelectCim
from cimc.passes.tile_wordlines import TileWordlines
from cimc.quant import slicing
from cimc.quant.cim_layer import cim_spec
from cimc.quant.reference import run_compiled
from tests.cim_helpers import SMALL, assert_three_way, cim_names, small_cnn, write, zoo_onnx

pytestmark = pytest.mark.torch  # the zoo or the training hook

#: 2-bit cells, 1-bit DAC (ISAAC-like), 8-bit ADCs: many slices and cycles.
NARROW = replace(SMALL, name="narrow-test", cell_bits=2, dac_bits=1, adc_bits=8)
BITS = [(8, 4), (4, 8), (8, 8), (6, 7), (3, 2)]
#: (macro, w_bits, a_bits, granularity, shift, group)
CASES = [(m, w, a, "column" if i % 2 else "layer", i % 3 != 2, 2 if i % 2 == 0 else 1)
         for m in (SMALL, NARROW) for i, (w, a) in enumerate(BITS)]


def compile_sliced(graph: Graph, macro: MacroSpec, w_bits: int, a_bits: int, *, granularity: str = "layer",
                   shift: bool = True, adc_bits: int | None = None,
                   weight_digits: str = "twos") -> tuple[Graph, PassContext]:
    passes: list[GraphPass] = [FoldBatchNorm(), SelectCim(map_fc=True), TileWordlines(),
                               Quantize(granularity=granularity, calib_size=8, weight_digits=weight_digits,
                                        default_bits=LayerBits(w_bits, a_bits, adc_bits)),
                               PlaceBitlines()]
    if shift:
        passes.append(ScaleToShift())
    ctx = PassContext(macro=macro)
    return run_passes(graph, passes, ctx), ctx


def _x(batch: int = 2, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, 8, 8)).astype(np.float32)


@pytest.mark.parametrize(("macro", "w_bits", "a_bits", "granularity", "shift", "group"), CASES,
                         ids=[f"{c[0].name}-w{c[1]}a{c[2]}-{c[3]}-{'shift' if c[4] else 'exact'}-g{c[5]}"
                              for c in CASES])
def test_three_way_sliced(tmp_path: Path, macro: MacroSpec, w_bits: int, a_bits: int, granularity: str,
                          shift: bool, group: int) -> None:
    graph, ctx = compile_sliced(small_cnn(group=group, batch=2), macro, w_bits, a_bits,
                                granularity=granularity, shift=shift)
    q = {n: graph.node(n).ann[QuantParams] for n in cim_names(graph)}
    assert q["c1"].a_signed  # the first layer reads the signed model input
    s_count, t_count = slicing.slice_count(w_bits, macro.cell_bits), slicing.slice_count(a_bits, macro.dac_bits)
    assert all((p.w_slices, p.a_slices) == (s_count, t_count) for p in q.values())
    ref = assert_three_way(write(graph, ctx, tmp_path / "b"), graph, _x())
    for name, trace in ref.traces.items():
        segments = cim_spec(graph, graph.node(name)).num_segments
        assert trace.adc_codes.shape[1] == segments * s_count * t_count


def _direct_sums(graph: Graph, name: str, codes: np.ndarray) -> np.ndarray:
    """``Σ_r w_q[o, r] · a_q[r]`` of the whole layer, in float64 (torch), no ADC, no slicing."""
    spec = cim_spec(graph, graph.node(name))
    w = torch.from_numpy(spec.codes().astype(np.float64))
    if spec.kind == "gemm":
        return (torch.from_numpy(codes.astype(np.float64)) @ w.reshape(spec.cout, -1).T).numpy()
    t, left, b, r = spec.pads
    a = F.pad(torch.from_numpy(codes.astype(np.float64)), (left, r, t, b))
    return F.conv2d(a, w, stride=spec.strides, dilation=spec.dilations, groups=spec.groups).numpy()


@pytest.mark.parametrize(("macro", "w_bits", "a_bits"), [(SMALL, 8, 4), (SMALL, 4, 8), (NARROW, 3, 2)])
def test_wide_adc_recombines_the_integer_product(tmp_path: Path, macro: MacroSpec, w_bits: int, a_bits: int) -> None:
    wide = replace(macro, name="wide-adc", adc_bits=16)
    graph, ctx = compile_sliced(small_cnn(batch=2), wide, w_bits, a_bits, shift=False)
    for name in cim_names(graph):  # ADC step 1: every partial sum converts exactly (|p| ≤ 32·15·15 < 2^15)
        node = graph.node(name)
        node.ann.put(replace(node.ann[QuantParams], adc_step=np.ones(1, np.float32), adc_shift=None))
    ref = assert_three_way(write(graph, ctx, tmp_path / "b"), graph, _x())
    for name, trace in ref.traces.items():
        assert np.abs(trace.adc_codes).max() < 2 ** 15 - 1
        np.testing.assert_array_equal(trace.sums, _direct_sums(graph, name, trace.input_codes), err_msg=name)


def test_unsliced_layer_takes_the_old_path(tmp_path: Path) -> None:
    graph, ctx = compile_sliced(small_cnn(group=2, batch=2), SMALL, 4, 4, granularity="column")
    assert all(graph.node(n).ann[QuantParams].w_slices == 1 for n in cim_names(graph))
    old = graph.copy()
    for name in cim_names(old):  # the pre-slicing contract: no cell/DAC widths at all
        node = old.node(name)
        node.ann.put(replace(node.ann[QuantParams], cell_bits=None, dac_bits=None))
    model = cim_model(graph)
    assert serialize(model) == serialize(cim_model(old))
    assert not any(n.name.endswith(("input_digits:Sub", "shifted:Mul")) for n in model.graph.node)
    ref = assert_three_way(write(graph, ctx, tmp_path / "b"), graph, _x())
    assert_same = run_compiled(old, {old.inputs[0]: _x()}, record=True)
    for name, trace in ref.traces.items():
        np.testing.assert_array_equal(trace.adc_codes, assert_same.traces[name].adc_codes)
        np.testing.assert_array_equal(trace.outputs, assert_same.traces[name].outputs)


def test_only_inputs_sliced_takes_the_sliced_path() -> None:
    graph, _ = compile_sliced(small_cnn(batch=1), SMALL, 4, 8)
    names = {n.name for n in cim_model(graph).graph.node}
    assert {"c1/input_digits:Sub", "c1/shifted:Mul", "fc/input_digits:Sub"} <= names


def _zoo_input(name: str, n: int) -> np.ndarray:
    shape = models.input_shape(name)
    return np.random.default_rng(3).standard_normal((n, *shape[1:])).astype(np.float32)


def test_zoo_model_with_per_layer_bits(tmp_path: Path) -> None:
    """A residual net, mixed per-layer bits (some layers sliced, some not), onnxruntime optimized."""
    path = zoo_onnx("tiny_residual")
    names = [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]
    bits = {names[0]: {"w_bits": 8, "a_bits": 4}, names[1]: {"w_bits": 5, "a_bits": 6}}
    result = compile_model(path, tmp_path / "b", macro="small-64", calib_size=8, map_fc=True, a_bits=5,
                           layer_bits=bits, granularity="column")
    slices = [(result.graph.node(n).ann[QuantParams].w_slices, result.graph.node(n).ann[QuantParams].a_slices)
              for n in cim_names(result.graph)]
    assert slices[:2] == [(2, 1), (2, 2)] and (1, 2) in slices[2:]
    assert_three_way(result.out_dir, result.graph, _zoo_input("tiny_residual", 3), optimize=True)


@pytest.mark.slow
def test_vgg9_w8a8(tmp_path: Path) -> None:
    result = compile_model(zoo_onnx("vgg9"), tmp_path / "b", w_bits=8, a_bits=8, map_fc=True)
    assert_three_way(result.out_dir, result.graph, _zoo_input("vgg9", 2), optimize=True)


@pytest.fixture(scope="module")
def sliced_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Graph]:
    graph, ctx = compile_sliced(small_cnn(group=2, batch=2), NARROW, 6, 3, granularity="column")
    return write(graph, ctx, tmp_path_factory.mktemp("sliced") / "b"), graph


@pytest.fixture(scope="module")
def shifted_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Graph]:
    """4-bit cells and DAC, 8-bit weights and inputs: per-kind ADC steps ``S_ADC·2^−m`` (m > 0)."""
    graph, ctx = compile_sliced(small_cnn(batch=2), SMALL, 8, 8, granularity="column", shift=False)
    assert all(graph.node(n).ann[QuantParams].adc_shift.any() for n in cim_names(graph))
    return write(graph, ctx, tmp_path_factory.mktemp("shifted") / "b"), graph


def test_quant_json_records_the_slicing(sliced_build: tuple[Path, Graph]) -> None:
    build, graph = sliced_build
    doc = json.loads((build / "quant.json").read_text())
    for entry in doc["layers"]:
        assert (entry["cell_bits"], entry["dac_bits"], entry["w_slices"], entry["a_slices"]) == (2, 1, 3, 3)
    emu = Emulator.open(build)  # validates quant.json against its schema
    assert [layer.conversions for layer in emu.layers] == [
        9 * cim_spec(graph, graph.node(n)).num_segments for n in cim_names(graph)]


@pytest.mark.parametrize("which", ["sliced_build", "shifted_build"])
def test_golden_vectors_of_a_sliced_build(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    build, graph = request.getfixturevalue(which)
    emu = Emulator.open(build)
    x = _x(3)
    index = write_golden(tmp_path / "g", emu, x)
    ref = run_compiled(graph, {graph.inputs[0]: x}, record=True)
    for layer in index["layers"]:
        files = {k: np.load(tmp_path / "g" / v["file"]) for k, v in layer["files"].items()}
        assert files["adc_codes"].dtype == np.int8 and files["adc_codes"].shape[1] == layer["conversions"]
        c, d, s_count, t_count = layer["cell_bits"], layer["dac_bits"], layer["w_slices"], layer["a_slices"]
        m = np.zeros(s_count * t_count, np.int64) if layer["adc_shift"] is None else np.asarray(layer["adc_shift"])
        expected = [2.0 ** (j * c + t * d - m[t * s_count + j]) for _ in range(layer["segments"])
                    for t in range(t_count) for j in range(s_count)]
        assert layer["conversion_weights"] == expected
        shifted = np.tensordot(files["adc_codes"].astype(np.float64), np.asarray(expected), axes=([1], [0]))
        assert files["sums"].dtype == (np.float32 if m.any() else np.int32)
        np.testing.assert_array_equal(files["sums"], shifted)  # (N, Cout, Ho, Wo) | (L, Cout)
        np.testing.assert_array_equal(files["sums"], ref.traces[layer["node"]].sums)


def test_three_way_with_adc_shifts(shifted_build: tuple[Path, Graph]) -> None:
    build, graph = shifted_build
    assert_three_way(build, graph, _x(3), optimize=True)


def _corrupt(build: Path, value: int, want_slice: int) -> str:
    files = read_build(build)
    mask = np.array([m.slice for m in files.layout.macros]) == want_slice  # (M, BL)
    m, b = (int(v[0]) for v in np.nonzero(mask))
    macros = files.macros.copy()
    macros[m, 0, b] = value
    with pytest.raises(BuildError) as err:
        check_build(replace(files, macros=macros))
    return str(err.value)


def test_checks_accept_digits_in_range_only(sliced_build: tuple[Path, Graph]) -> None:
    build, _ = sliced_build
    check_build(read_build(build))
    assert "[0, 3] of digit 0 of 3" in _corrupt(build, -1, 0)  # lower digits are unsigned
    assert "[-2, 1] of digit 2 of 3" in _corrupt(build, 2, 2)  # the top digit of 6 bits in 2-bit cells is signed
    files = read_build(build)
    for change, message in (({"w_slices": 2}, "w_slices is 2, but 6 bits in 2-bit slices need 3"),
                            ({"adc_shift": [0, 1]}, "adc_shift has 2 values, expected one per kind")):
        first = files.quant.layers[0].model_copy(update=change)
        quant = files.quant.model_copy(update={"layers": [first, *files.quant.layers[1:]]})
        with pytest.raises(BuildError, match=message):
            check_build(replace(files, quant=quant))


def test_golden_input_codes_hold_8_bit_unsigned_codes(shifted_build: tuple[Path, Graph], tmp_path: Path) -> None:
    """An unsigned 8-bit input code reaches 255: the golden file stores it in a type that holds
    it (int16), so every layer's ``input_codes.npy`` equals the reference's codes."""
    build, graph = shifted_build
    x = _x(3)
    index = write_golden(tmp_path / "g", Emulator.open(build), x)
    ref = run_compiled(graph, {graph.inputs[0]: x}, record=True)
    unsigned_top = 0.0
    for layer in index["layers"]:
        codes = np.load(tmp_path / "g" / layer["files"]["input_codes"]["file"])
        np.testing.assert_array_equal(codes, ref.traces[layer["node"]].input_codes)
        if not layer["a_signed"]:
            unsigned_top = max(unsigned_top, float(codes.max()))
    assert unsigned_top > 127  # the case an int8 file would wrap
