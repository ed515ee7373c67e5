"""Bit-slicing tables stated exactly (``cimc.quant.slicing``): the digit ranges are tight, the
shift fit clips at its bound, the conversion steps and weights carry the exponents ``m``.
The mutation run (docs/mutation.md) found these only bounded loosely or not reached."""

from __future__ import annotations

import numpy as np
import pytest

from cimc.quant import numerics, slicing


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("width", [None, 1, 2, 3, 4])
@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8, 9])
def test_digit_range_is_the_exact_range_of_each_digit_over_every_code(bits: int, width: int | None,
                                                                       signed: bool) -> None:
    """Every code of the range sliced: each digit's smallest and largest value are exactly
    ``digit_range`` (a wider stated range would pass a containment check)."""
    lo, hi = numerics.code_range(bits, signed)
    d = slicing.digits(np.arange(lo, hi + 1, dtype=np.float32), bits, width, signed)
    for j in range(d.shape[0]):
        assert slicing.digit_range(bits, width, signed, j) == (int(d[j].min()), int(d[j].max()))



@pytest.mark.parametrize("scheme", ["twos", "offset"])
@pytest.mark.parametrize("width", [None, 2, 3, 4])
@pytest.mark.parametrize("bits", [2, 4, 5, 8])
def test_digit_max_is_the_largest_digit_magnitude_over_every_weight_code(bits: int, width: int | None,
                                                                         scheme: str) -> None:
    """``digit_max`` (the partial-sum bound's factor) is reached: two's-complement top digits
    reach ``−2^(top−1)``, one more in magnitude than their largest positive value."""
    top = slicing.code_max(bits, width, scheme)
    d = slicing.weight_digits(np.arange(-top, top + 1, dtype=np.float32), bits, width, scheme)
    assert slicing.digit_max(bits, width, True, scheme) == int(np.abs(d).max())


@pytest.mark.parametrize("width", [None, 2, 4])
def test_digit_max_of_unsigned_inputs_is_the_largest_digit(width: int | None) -> None:
    lo, hi = numerics.code_range(8, False)
    d = slicing.digits(np.arange(lo, hi + 1, dtype=np.float32), 8, width, False)
    assert slicing.digit_max(8, width, False) == int(d.max())


def test_fit_shifts_clips_the_exponent_at_sixteen() -> None:
    """Kinds 2^20, 2^16 and 2^15 times finer than the coarsest: m = 16 (clipped), 16, 15."""
    steps = np.float32([[1.0], [2.0**-20], [2.0**-16], [2.0**-15]])
    base, m = slicing.fit_shifts(steps)
    np.testing.assert_array_equal(base, [1.0])
    np.testing.assert_array_equal(m, [0, 16, 16, 15])
    assert m.dtype == np.int64


def test_conversion_steps_divide_the_adc_step_by_two_to_the_m() -> None:
    step = np.float32([0.5, 1.0])
    np.testing.assert_array_equal(slicing.conversion_steps(step, None, 3), [[0.5, 1.0]] * 3)
    np.testing.assert_array_equal(slicing.conversion_steps(step, np.array([0, 1, 3]), 3),
                                  [[0.5, 1.0], [0.25, 0.5], [0.0625, 0.125]])


def test_conversion_weights_carry_the_digit_positions_and_the_shifts() -> None:
    """T = S = 2 digits of 2 bits: kinds (t, j) weigh 2^(2j + 2t − m): [1, 4, 4, 16] · 2^−[0, 1, 2, 3],
    repeated for each of 2 segments."""
    np.testing.assert_array_equal(slicing.digit_weights(8, 3), [1, 8, 64])
    np.testing.assert_array_equal(slicing.digit_weights(8, None), [1])
    got = slicing.conversion_weights(2, 4, 2, 4, 2, adc_shift=np.array([0, 1, 2, 3]))
    np.testing.assert_array_equal(got, [1, 2, 1, 2] * 2)


def test_digit_columns_put_the_digits_of_a_channel_side_by_side() -> None:
    """Channel o's digit j is row o·S + j, the rest of the weight's shape kept: −100 = digits
    (12, −7), 100 = (4, 6) with 8 bits in 4-bit cells."""
    codes = np.float32([[-100, 100, 7], [100, 7, -100]])
    np.testing.assert_array_equal(slicing.digit_columns(codes, 8, 4),
                                  [[12, 4, 7], [-7, 6, 0], [4, 7, 12], [6, 0, -7]])
    np.testing.assert_array_equal(slicing.digit_columns(codes, 8, None), codes)


def test_fit_shifts_takes_plain_lists() -> None:
    base, m = slicing.fit_shifts([[1.0], [0.25]])
    np.testing.assert_array_equal(base, [1.0])
    np.testing.assert_array_equal(m, [0, 2])
