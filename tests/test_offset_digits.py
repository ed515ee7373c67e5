"""Offset weight digits (``--weight-digits offset``, ``cimc.quant.slicing``): every digit signed,
codes within ``±code_max``; the emulator, ``model.cim.onnx`` (onnxruntime) and the numpy
reference agree bit for bit on such builds, the checks accept them (and only digits a cell holds),
and the ADC sees zero-mean partial sums where two's complement gives one-signed ones."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cimc.check.emulator import check_build
from cimc.emulator import read_build
from cimc.errors import BuildError
from cimc.ir.annotations import QuantParams
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.passes.manager import PassContext
from cimc.passes.quantize import Quantize
from cimc.quant import numerics, slicing
from cimc.quant.calibration import partial_sums
from cimc.quant.cim_layer import cim_spec
from cimc.quant.step_search import mse_step
from tests.cim_helpers import SMALL, assert_three_way, cim_names, small_cnn, write
from tests.test_sliced_exact import _x, compile_sliced

pytestmark = pytest.mark.torch  # small_cnn and the three-way check run torch

NARROW = replace(SMALL, name="narrow-test", cell_bits=2, dac_bits=1, adc_bits=8)


def _brute_code_max(bits: int, width: int) -> int:
    """The largest ``m ≤ 2^(bits−1) − 1`` such that every ``|q| ≤ m`` has offset digits that a
    ``width``-bit cell holds, found by trying every code (independent of ``code_max``'s formula)."""
    narrow = (1 << (bits - 1)) - 1
    q = np.arange(-narrow, narrow + 1)
    d = slicing.offset_digits(q, bits, width)
    fits = ((d >= -(1 << (width - 1))) & (d <= (1 << (width - 1)) - 1)).all(axis=0)
    bad = np.abs(q[~fits])
    return narrow if bad.size == 0 else int(bad.min()) - 1


@given(bits=st.integers(2, 14), width=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_offset_digits_recombine_and_stay_in_a_cell(bits: int, width: int, seed: int) -> None:
    top = slicing.code_max(bits, width, "offset")
    codes = np.random.default_rng(seed).integers(-top, top + 1, size=200).astype(np.float32)
    codes[:2] = -top, top
    d = slicing.offset_digits(codes, bits, width)
    assert d.shape == (slicing.slice_count(bits, width), 200) and d.dtype == np.float32
    np.testing.assert_array_equal((d * slicing.digit_weights(bits, width)[:, None]).sum(0), codes)
    half = 1 << (width - 1)
    for j in range(d.shape[0]):
        lo, hi = slicing.digit_range(bits, width, True, j, "offset")
        assert lo <= d[j].min() and d[j].max() <= hi
        if d.shape[0] > 1:  # every digit, the top one too, is what a width-bit cell holds with its offset
            assert -half <= lo and hi <= half - 1


@pytest.mark.parametrize(("bits", "width"), [(8, 4), (6, 4), (5, 4), (12, 4), (8, 2), (6, 3), (4, 4), (9, 1)])
def test_code_max_is_the_largest_range_that_fits(bits: int, width: int) -> None:
    assert slicing.code_max(bits, width, "offset") == _brute_code_max(bits, width)
    assert slicing.code_max(bits, width, "twos") == numerics.signed_max(bits)


def test_offset_digits_by_hand() -> None:
    # 8-bit codes on 4-bit cells: q = d0 + 16·d1, both in [-8, 7]
    np.testing.assert_array_equal(slicing.offset_digits(np.float32([-3, 100, 119, -127, 8, -8]), 8, 4),
                                  [[-3, 4, 7, 1, -8, -8], [0, 6, 7, -8, 1, 0]])
    assert slicing.code_max(8, 4, "offset") == 119 and slicing.code_max(8, None, "offset") == 127
    assert slicing.digit_range(8, 4, True, 0, "offset") == (-8, 7)
    assert slicing.digit_range(8, 4, True, 1, "offset") == (-7, 7)
    np.testing.assert_array_equal(numerics.weight_codes(np.float32([[300], [-300], [50]]), np.float32([1]), 8, 119),
                                  [[119], [-119], [50]])
    # two's complement: -3 = 13 + 16·(−1), the scheme's default
    np.testing.assert_array_equal(slicing.digit_columns(np.float32([[-3]]), 8, 4), [[13], [-1]])
    np.testing.assert_array_equal(slicing.digit_columns(np.float32([[-3]]), 8, 4, "offset"), [[-3], [0]])


def compile_offset(graph: Graph, macro: MacroSpec, w_bits: int, a_bits: int, *, granularity: str = "layer",
                   shift: bool = True, digits: str = "offset") -> tuple[Graph, PassContext]:
    """``compile_sliced`` with offset weight digits (``digits``)."""
    return compile_sliced(graph, macro, w_bits, a_bits, granularity=granularity, shift=shift, weight_digits=digits)


CASES = [(SMALL, 8, 8, "layer", True), (SMALL, 8, 8, "column", False), (SMALL, 8, 4, "column", True),
         (NARROW, 6, 3, "layer", False)]


@pytest.mark.parametrize(("macro", "w_bits", "a_bits", "granularity", "shift"), CASES,
                         ids=[f"{c[0].name}-w{c[1]}a{c[2]}-{c[3]}-{'shift' if c[4] else 'exact'}" for c in CASES])
def test_three_way_offset_digits(tmp_path: Path, macro: MacroSpec, w_bits: int, a_bits: int, granularity: str,
                                 shift: bool) -> None:
    graph, ctx = compile_offset(small_cnn(group=2, batch=2), macro, w_bits, a_bits, granularity=granularity,
                                shift=shift)
    names = cim_names(graph)
    top = slicing.code_max(w_bits, macro.cell_bits, "offset")
    for name in names:
        spec = cim_spec(graph, graph.node(name))
        assert spec.q.w_digits == "offset" and np.abs(spec.codes()).max() <= top
    build = write(graph, ctx, tmp_path / "b")
    doc = json.loads((build / "quant.json").read_text())
    assert [x.get("w_digits") for x in doc["layers"]] == ["offset"] * len(names)
    files = read_build(build)
    check_build(files)  # the structural and quant checks accept signed lower digits
    lower = np.array([m.slice for m in files.layout.macros]) == 0
    assert (files.macros[:, :, :][np.broadcast_to(lower[:, None, :], files.macros.shape)] < 0).any()
    assert_three_way(build, graph, _x(3), optimize=True)


def test_wide_adc_offset_digits_recombine_the_integer_product(tmp_path: Path) -> None:
    wide = replace(SMALL, name="wide-adc", adc_bits=16)
    graph, ctx = compile_offset(small_cnn(batch=2), wide, 8, 8, shift=False)
    for name in cim_names(graph):  # ADC step 1: every partial sum converts exactly
        node = graph.node(name)
        node.ann.put(replace(node.ann[QuantParams], adc_step=np.ones(1, np.float32), adc_shift=None))
    ref = assert_three_way(write(graph, ctx, tmp_path / "b"), graph, _x())
    for name, trace in ref.traces.items():
        spec = cim_spec(graph, graph.node(name))
        codes = spec.codes().reshape(spec.cout, -1).astype(np.float64)
        if spec.kind == "gemm":
            direct = trace.input_codes.astype(np.float64) @ codes.T
            np.testing.assert_array_equal(trace.sums, direct, err_msg=name)


def test_checks_refuse_a_lower_digit_a_cell_does_not_hold(tmp_path: Path) -> None:
    graph, ctx = compile_offset(small_cnn(batch=2), SMALL, 8, 8, shift=False)
    files = read_build(write(graph, ctx, tmp_path / "b"))
    mask = np.array([m.slice for m in files.layout.macros]) == 0
    m, b = (int(v[0]) for v in np.nonzero(mask))
    for value, ok in ((-8, True), (7, True), (8, False), (-9, False)):
        macros = files.macros.copy()
        macros[m, 0, b] = value
        if ok:
            try:
                check_build(replace(files, macros=macros))
            except BuildError as exc:  # a changed code may only fail the model.cim.onnx comparison
                assert "outside" not in str(exc)
        else:
            with pytest.raises(BuildError, match="outside"):
                check_build(replace(files, macros=macros))


def test_validate_accepts_an_offset_build_and_checks_its_cells(tmp_path: Path) -> None:
    """``cimc validate``'s checks (structure, quant, cells against ``model.cim.onnx``, the
    emulator against onnxruntime) accept an offset build, whose lower digits go negative."""
    from cimc.emulator.validate import validate_build

    graph, ctx = compile_offset(small_cnn(batch=2), SMALL, 8, 8, shift=False)
    build = write(graph, ctx, tmp_path / "b")
    result = validate_build(build)
    assert [v for v in result.violations if v.check in ("weights", "quant", "cells")] == [], result.violations


def test_default_is_twos_complement_and_leaves_quant_json_as_it_was(tmp_path: Path) -> None:
    graph, ctx = compile_offset(small_cnn(batch=2), SMALL, 8, 8, digits="twos")
    assert all(graph.node(n).ann[QuantParams].w_digits == "twos" for n in cim_names(graph))
    assert Quantize().weight_digits == "twos"
    doc = json.loads((write(graph, ctx, tmp_path / "b") / "quant.json").read_text())
    assert all("w_digits" not in x for x in doc["layers"])


def test_weight_step_is_searched_for_the_offset_range() -> None:
    graph, _ = compile_offset(small_cnn(batch=2), SMALL, 8, 8, shift=False)
    spec = cim_spec(graph, graph.node(cim_names(graph)[1]))
    assert spec.q.w_step[0] == mse_step(spec.weight, 8, True, code_max=119)[0]
    assert spec.q.w_step[0] != mse_step(spec.weight, 8, True)[0]


def test_offset_digits_give_the_adc_zero_mean_sums() -> None:
    """The point of the scheme: on non-negative inputs, the lower-digit partial sums of two's
    complement are one-signed (mean ≫ spread) and large, offset digits' are not."""
    graph, _ = compile_offset(small_cnn(batch=2), SMALL, 8, 8, shift=False)
    spec = cim_spec(graph, graph.node(cim_names(graph)[1]))
    q = spec.q
    x = np.abs(np.random.default_rng(0).standard_normal((4, spec.weight.shape[1] * spec.groups, 8, 8)))
    x = x.astype(np.float32)
    sums = {}
    for scheme in ("twos", "offset"):
        p = partial_sums(spec, x, q.w_step, 8, q.a_step, 8, False, cell_bits=4, dac_bits=4, w_digits=scheme)
        sums[scheme] = p.reshape(p.shape[0], -1, 4, p.shape[2])[:, :, 0]  # kind (t=0, j=0): the lowest digits
    assert sums["twos"].min() >= 0 and sums["twos"].mean() > 2 * sums["twos"].std()
    assert abs(sums["offset"].mean()) < sums["offset"].std()
    rms = {k: float(np.sqrt(np.mean(np.square(v, dtype=np.float64)))) for k, v in sums.items()}
    assert rms["offset"] < 0.5 * rms["twos"], rms  # the ADC range spent on a common part: gone


def test_adaround_keeps_the_codes_within_code_max() -> None:
    """AdaRound with offset digits: its codes (learned or nearest) stay within ``±code_max``."""
    from cimc.quant import adaround
    from cimc.quant.layer_steps import calibrated

    graph, _ = compile_offset(small_cnn(batch=2), SMALL, 8, 8, shift=False)
    spec = cim_spec(graph, graph.node(cim_names(graph)[0]))
    x = np.random.default_rng(3).standard_normal((16, 3, 8, 8)).astype(np.float32)
    c = calibrated(spec, x, 6, 6, "layer", "mse")
    step = c.w_step  # 6-bit codes reach ±31 …
    free = adaround.adaround_codes(spec, x, step, 6, c.a_step, 6, c.a_signed, iterations=50)
    assert np.abs(free).max() > 7
    kept = adaround.adaround_codes(spec, x, step, 6, c.a_step, 6, c.a_signed, iterations=50, code_max=7)
    assert np.abs(kept).max() <= 7 and np.abs(kept).max() == 7  # … and the narrowed range holds them


def test_scale_to_shift_folds_convert_the_partial_sums_of_the_offset_digits() -> None:
    """The ADC and stream folds choose a power of two by the conversion error of the layer's
    partial sums (``layer_partial_sums``): with offset digits those of the offset digits, not of
    two's complement (whose lower-digit columns sum one-signed values of another range), and the
    per-column ADC fold's choice follows them."""
    from cimc.passes.scale_to_shift import adc_fold, ceil_exponent, conversion_error, layer_partial_sums
    from cimc.quant.calibration import collect_inputs

    graph, ctx = compile_offset(small_cnn(batch=2), SMALL, 8, 8, granularity="column", shift=False)
    differs = 0
    for name in cim_names(graph):
        node = graph.node(name)
        q = node.ann[QuantParams]
        x = collect_inputs(ctx.calibration_graph, ctx.calibration.feeds, [name])[name]
        spec, widths = cim_spec(graph, node), {"cell_bits": q.cell_bits, "dac_bits": q.dac_bits}
        args = (spec, x, q.w_step, q.w_bits, q.a_step, q.a_bits, q.a_signed)
        offset = partial_sums(*args, **widths, w_digits="offset")
        np.testing.assert_array_equal(layer_partial_sums(graph, node, x), offset, err_msg=name)
        differs += not np.array_equal(offset, partial_sums(*args, **widths))
        exact = numerics.output_scale(q.w_step, q.adc_step, q.a_step).astype(np.float64)
        k, _ = adc_fold(graph, node, exact, x)
        k_up = ceil_exponent(exact)
        step_up = q.adc_step.astype(np.float64) * (numerics.shift_scale(k_up) / exact)
        down_better = conversion_error(offset, step_up / 2, q) < conversion_error(offset, step_up, q)
        np.testing.assert_array_equal(k - k_up, down_better.astype(np.int64), err_msg=name)
    assert differs == len(cim_names(graph))
