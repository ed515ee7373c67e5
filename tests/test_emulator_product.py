"""The emulator's bitline product (``cimc.emulator.product``): onnxruntime's ``MatMulInteger``
only where the digits fit uint8/int8 and a pair of products cannot saturate int16
(``VPMADDUBSW`` on x86 without VNNI), else the float ``MatMul``; both pixel-major, equal to
the product written from the definition (each wordline's own tap), and giving the same runs and traces."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import cast

import numpy as np
import pytest

import cimc.emulator.product as product
import cimc.emulator.run as emulator_run
from cimc.emulator import Emulator
from cimc.emulator.layers import MacroLayer
from cimc.ir.graph import Graph
from tests.cim_helpers import assert_same_run, assert_three_way, compile_ir, small_cnn, write

pytestmark = pytest.mark.torch  # the compile helpers import the zoo


@pytest.fixture(scope="module")
def grouped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Graph]:
    """Padded 3×3 layers of several segments, one of two conv groups, and a fully connected one;
    ADC steps per column."""
    graph, ctx = compile_ir(small_cnn(batch=2, group=2), granularity="column")
    return write(graph, ctx, tmp_path_factory.mktemp("grouped") / "b"), graph


def _x() -> np.ndarray:
    return np.random.default_rng(3).standard_normal((2, 3, 8, 8)).astype(np.float32)


@pytest.mark.parametrize(("a_bits", "dac_bits", "a_slices", "signed", "expected"), [
    (8, 4, 2, False, (0, 15)), (8, 4, 2, True, (-8, 15)), (4, 4, 1, False, (0, 15)), (4, 4, 1, True, (-7, 7)),
    (8, 8, 1, False, (0, 255)), (6, 2, 3, True, (-2, 3))])
def test_the_input_digit_range_spans_every_dac_cycle(a_bits: int, dac_bits: int, a_slices: int, signed: bool,
                                                      expected: tuple[int, int]) -> None:
    """Bit-sliced inputs are fed digit by digit (``dac_bits`` wide, the top one signed), an
    unsliced input whole: 8-bit inputs on 4-bit DACs feed 0 … 15, not 0 … 255."""
    layer = types.SimpleNamespace(a_bits=a_bits, dac_bits=dac_bits, a_slices=a_slices, a_signed=signed)
    assert product.input_digit_range(cast(MacroLayer, layer)) == expected


def test_the_gate_admits_pairs_of_products_up_to_int16() -> None:
    """``2 · max a · max|w| ≤ 32767`` on the fed digits (a signed input offset by ``−lo``), and
    the digits within uint8 and int8."""
    assert product.integer_product(0, 255, 64)  # 2·255·64 = 32640
    assert not product.integer_product(0, 255, 65)  # 33150: VPMADDUBSW would saturate
    assert product.integer_product(-127, 127, 64)  # fed 0 … 254: 32512
    assert not product.integer_product(-127, 127, 65)
    assert not product.integer_product(0, 256, 1)  # beyond uint8
    assert not product.integer_product(-128, 128, 1)  # fed 0 … 256
    assert not product.integer_product(0, 1, 128)  # beyond int8


def _digits(layer: MacroLayer, a_bits: int, a_signed: bool, w_max: int) -> MacroLayer:
    """``layer`` with ``a_bits``-bit inputs and its nonzero weights set to ``±w_max``."""
    parts = tuple(dataclasses.replace(p, weight=np.where(p.weight != 0, np.sign(p.weight) * w_max, w_max)
                                      .astype(np.float32)) for p in layer.parts)
    return dataclasses.replace(layer, a_bits=a_bits, a_signed=a_signed, parts=parts)


def _im2col(layer: MacroLayer, codes: np.ndarray, taps: tuple[np.ndarray, ...]) -> np.ndarray:
    """``(S_k, G, R_k, M)``: ``x_pad[n, c, h·s_h + i·d_h, w·s_w + j·d_w]`` at each wordline's tap
    ``(c, i, j)``, pixels ``(h, w, n)``, gathered tap by tap from the zero-padded codes (written
    from the definition, independent of ``run.patches``)."""
    (sh, sw), (dh, dw), (t, left, b, r) = layer.strides, layer.dilations, layer.pads
    x = np.pad(codes, ((0, 0), (0, 0), (t, b), (left, r)))
    kh, kw = layer.kernel
    ho = (x.shape[2] - (kh - 1) * dh - 1) // sh + 1
    wo = (x.shape[3] - (kw - 1) * dw - 1) // sw + 1
    channel, row, col = taps
    out = np.empty((*channel.shape, ho * wo * codes.shape[0]), dtype=np.int64)
    for index in np.ndindex(*channel.shape):
        i, j = row[index] * dh, col[index] * dw
        window = x[:, channel[index], i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]  # (N, Ho, Wo)
        out[index] = window.transpose(1, 2, 0).reshape(-1)
    return out


def _channel_major_product(layer: MacroLayer, codes: np.ndarray) -> list[np.ndarray]:
    """The product written from the definition, exact in int64: ``(S_k, G, W, R_k) @ (S_k, G,
    R_k, M)`` over each wordline's own tap (no feed order)."""
    return [np.matmul(p.weight.astype(np.int64), _im2col(layer, codes, p.taps)) for p in layer.parts]


@pytest.mark.parametrize(("a_bits", "a_signed", "w_max", "integer"), [
    (8, False, 64, True), (8, False, 65, False), (8, True, 64, True), (8, True, 65, False),
    (9, False, 1, False), (9, True, 1, False), (4, True, 127, True), (4, False, 128, False),
])
def test_the_product_is_integer_only_where_exact_and_equals_the_channel_major_one(
        grouped: tuple[Path, Graph], a_bits: int, a_signed: bool, w_max: int, integer: bool) -> None:
    """Digits whose pair of products would exceed int16, or that do not fit uint8 (offset) or
    int8, take the float product; either product, transposed, equals the one written from the definition."""
    emu = Emulator.open(grouped[0])
    for base in emu.layers:
        layer = _digits(base, a_bits, a_signed, w_max)
        gemm = product.bitline_product(layer)
        assert gemm.integer == integer and gemm.dtype == (np.uint8 if integer else np.float32)
        lo, hi = product.input_digit_range(layer)
        assert gemm.offset == (-lo if integer and lo < 0 else 0)
        n = 2
        shape = (n, base.groups * int(max(p.taps[0].max() for p in base.parts)) // base.groups + 1, 4, 4)
        if base.kind != "conv":
            shape = (n, shape[1], 1, 1)
        codes = np.random.default_rng(a_bits).integers(lo, hi + 1, shape).astype(np.float32)
        got = emulator_run.bitline_sums(layer, gemm, codes)
        want = _channel_major_product(layer, codes)
        for p, w in zip(got, want, strict=True):
            assert p.dtype == (np.int32 if integer else np.float32)
            np.testing.assert_array_equal(p.transpose(0, 1, 3, 2), w)


def test_integer_and_float_products_give_the_same_runs_and_traces(grouped: tuple[Path, Graph],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Every layer of the build runs the integer product; forced to the float one, the outputs,
    recorded traces (their documented layouts) and unrecorded outputs are the same bits, and
    the integer run agrees with the reference and onnxruntime (``assert_three_way``)."""
    build, graph = grouped
    integer = Emulator.open(build)
    assert all(g.integer for g in integer._gemms) and any(g.offset for g in integer._gemms)
    monkeypatch.setattr(product, "integer_product", lambda lo, hi, w_max: False)
    floating = Emulator.open(build)
    assert not any(g.integer for g in floating._gemms)
    assert any(layer.groups > 1 for layer in integer.layers) and any(layer.segments > 1 for layer in integer.layers)
    assert all(np.unique(layer.adc_step).size > 1 for layer in integer.layers)
    assert_same_run(integer.run(_x(), record=True), floating.run(_x(), record=True))
    assert_same_run(integer.run(_x()), floating.run(_x()))
    recorded = integer.run(_x(), record=True).outputs
    for name, value in integer.run(_x()).outputs.items():
        np.testing.assert_array_equal(value, recorded[name], err_msg=name)
    assert_three_way(build, graph, _x())
