"""The emulator's compiled passes (``cimc.emulator.kernels``) against numpy's chains in
``cimc.quant.numerics``, bit for bit: halves that round to even, clipped codes, int32 and
float32 sums, several groups, widths that leave a scalar remainder, a float32 quotient that a
float64 division would round the other way, and the fallback without a cache folder."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import pytest

from cimc.emulator import kernels
from cimc.emulator import run as emulator_run
from cimc.emulator.workspace import Workspace
from cimc.quant import numerics


def _sums(rng: np.random.Generator, shape: tuple[int, ...], dtype: type[np.generic]) -> np.ndarray:
    """Partial sums with many exact halves of the step 2 and values beyond the clip range."""
    return (rng.integers(-60, 61, shape) * rng.choice([1, 2, 3], shape)).astype(dtype)


def _codes(p: np.ndarray, step: np.ndarray, bits: int) -> np.ndarray:
    """numpy's ADC codes of ``p`` ``(S, G, M, W)`` with ``step`` ``(G, W)``."""
    return numerics.quantize(p, step[None, :, None, :], bits, True)


@pytest.mark.parametrize("dtype", [np.int32, np.float32])
@pytest.mark.parametrize("width", [1, 20, 64, 67])
def test_convert_rows_is_numpys_adc_and_adder_tree(dtype: type[np.generic], width: int) -> None:
    """``total = Σ_s clip(rint(p / step))`` over a block of pixels, ``=`` for the first part and
    ``+=`` after, every other pixel untouched; ``keep`` writes the codes over ``p``."""
    rng = np.random.default_rng(width)
    p = _sums(rng, (3, 2, 11, width), dtype)
    step = rng.choice(np.float32([2.0, 0.75, 5.0, 3.3]), (2, width)).astype(np.float32)
    lo, hi = np.float32(-15), np.float32(15)
    codes = _codes(p, step, 5)
    assert np.any(codes == 15) and np.any(codes == -15) and np.any(np.abs(p / step[:, None]) % 1 == 0.5)
    total = np.full((2, 11, width), 7.0, np.float32)
    kernels.convert_rows(p, 2, 6, step, lo, hi, total, True, False)
    np.testing.assert_array_equal(total[:, 2:8], codes[:, :, 2:8].sum(axis=0, dtype=np.float32))
    np.testing.assert_array_equal(total[:, :2], 7.0)
    np.testing.assert_array_equal(total[:, 8:], 7.0)
    kernels.convert_rows(p, 2, 6, step, lo, hi, total, False, False)
    np.testing.assert_array_equal(total[:, 2:8], 2 * codes[:, :, 2:8].sum(axis=0, dtype=np.float32))
    if dtype == np.float32:
        kept = p.copy()
        kernels.convert_rows(kept, 0, 11, step, lo, hi, total, True, True)
        np.testing.assert_array_equal(kept, codes)


def test_affine_rows_multiplies_then_adds_in_float32() -> None:
    """``y = P · scale + b`` with two float32 roundings (not a fused multiply-add, not float64)
    on the block's pixels only."""
    rng = np.random.default_rng(1)
    y = rng.integers(-300, 300, (2, 9, 37)).astype(np.float32)
    scale = rng.random((2, 37), dtype=np.float32) / 7
    bias = rng.standard_normal((2, 37)).astype(np.float32) / 3
    want = y.copy()
    want[:, 3:7] = numerics.layer_output(y[:, 3:7], scale[:, None], bias[:, None], None)
    fused = (y[:, 3:7].astype(np.float64) * scale[:, None] + bias[:, None]).astype(np.float32)
    assert not np.array_equal(fused, want[:, 3:7])  # the case tells one rounding from two
    kernels.affine_rows(y, 3, 4, scale, bias, False)
    np.testing.assert_array_equal(y, want)


def test_affine_rows_with_relu_is_numpys_maximum() -> None:
    """``relu``: ``np.maximum(P · scale + b, 0)`` bit for bit, ``+0.0`` for a ``−0.0`` sum and
    NaN kept; without it, negatives stay."""
    y = np.float32([[[-3, 0, 2, 5, 1, -1, 4, 2, 0]]])
    scale = np.float32([[1, 1, 1, 1, -0.0, 1, 1, 1, 0.5]])
    bias = np.float32([[1, -0.0, -2, -7, -0.0, np.nan, -4, 0.5, -0.0]])
    pre = numerics.layer_output(y, scale[:, None], bias[:, None], None)
    assert np.any((pre == 0) & np.signbit(pre)) and np.any(np.isnan(pre)) and np.any(pre < 0)
    want = np.maximum(pre, np.float32(0))
    got = y.copy()
    kernels.affine_rows(got, 0, 1, scale, bias, True)
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))
    plain = y.copy()
    kernels.affine_rows(plain, 0, 1, scale, bias, False)
    np.testing.assert_array_equal(plain, pre)


@pytest.mark.parametrize(("dtype", "offset", "signed"), [(np.uint8, 7, True), (np.float32, 0, False),
                                                          (np.float32, 0, True)])
def test_dac_codes_are_numpys_quantize_fed(dtype: type[np.generic], offset: int, signed: bool) -> None:
    """``clip(rint(x / S_A)) + offset`` in ``out``'s dtype for ±∞, halves and values beyond the
    range, over a length that leaves a scalar remainder."""
    rng = np.random.default_rng(2)
    step = np.float32(0.25)
    x = (rng.standard_normal(1001) * 2).astype(np.float32)
    x[:6] = [np.inf, -np.inf, 0.125, 0.375, -0.125, 1e30]
    lo, hi = numerics.code_range(4, signed)
    out = np.zeros(1001, dtype)
    kernels.dac_codes(x, step, np.float32(lo), np.float32(hi), np.float32(offset), out)
    want = numerics.quantize(x, step, 4, signed) + np.float32(offset)
    np.testing.assert_array_equal(out, want.astype(dtype))


def test_fed_codes_divide_in_float32() -> None:
    """The emulator hands the DAC float32 values: for quotients that float64 and float32 round
    to different sides of a half, the codes are float32's (``numerics.quantize``)."""
    rng = np.random.default_rng(3)
    x = rng.integers(1, 2**20, 200_000).astype(np.float32)
    step = np.float32(0.3)
    wide = np.rint(x.astype(np.float64) / np.float64(step))
    want = numerics.quantize(x, step, 24, True)
    assert np.any(wide != want)
    layer_dac = (float(step), -(2.0**23 - 1), 2.0**23 - 1)
    x4 = x.reshape(1, 200_000, 1, 1)  # (N, C, H, W): the fed codes' layout is x's own
    got = emulator_run._fed(x4.transpose(1, 2, 3, 0), layer_dac, (np.float32, 0), Workspace(), "fed")
    np.testing.assert_array_equal(got.reshape(-1), want)


def test_a_read_only_cache_folder_compiles_without_a_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where numba finds no writable cache folder (``RuntimeError`` at decoration), the loop is
    compiled without one and computes the same."""
    calls: list[dict[str, Any]] = []
    original = numba.njit

    def njit(**options: Any) -> Any:
        calls.append(options)
        if options.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")
        return original(**options)

    monkeypatch.setattr(kernels.numba, "njit", njit)

    def double(a: np.ndarray) -> None:
        for i in range(a.size):
            a[i] *= 2

    fn = kernels.compiled(double)
    a = np.arange(5, dtype=np.float32)
    fn(a)
    np.testing.assert_array_equal(a, 2 * np.arange(5))
    assert [c.get("cache", False) for c in calls] == [True, False]
    assert all(c["nogil"] and not c["boundscheck"] for c in calls)
