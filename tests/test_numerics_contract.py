"""``cimc.quant.numerics`` by hand: the corner cases of the contract the mutation run
(docs/mutation.md) asks to be pinned: ties, the nearest power of two, per-channel steps on
exactly two channels, the default channel axis."""

from __future__ import annotations

import numpy as np

from cimc.quant import numerics


def test_signed_max_and_code_ranges_by_hand() -> None:
    assert [numerics.signed_max(b) for b in (1, 2, 4, 8)] == [0, 1, 7, 127]
    assert numerics.code_range(4, True) == (-7, 7) and numerics.code_range(4, False) == (0, 15)


def test_quantize_rounds_ties_to_even_and_clips_to_the_narrow_range() -> None:
    x = np.float32([0.5, 1.5, 2.5, -0.5, -1.5, 100.0, -100.0])
    np.testing.assert_array_equal(numerics.quantize(x, 1.0, 4, True), [0, 2, 2, 0, -2, 7, -7])
    np.testing.assert_array_equal(numerics.quantize(x, 1.0, 4, False), [0, 2, 2, 0, 0, 15, 0])


def test_per_channel_adc_steps_of_two_channels_apply_along_the_channel_axis() -> None:
    """Two channels and a width of 3: a step of shape (2,) that were not put on axis 1 would
    not broadcast; on the default axis, channel 1's codes are halved."""
    p = np.full((1, 2, 3, 3), 6.0, np.float32)
    codes = numerics.adc_codes(p, np.float32([1.0, 2.0]), 8)
    np.testing.assert_array_equal(codes[0, 0], np.full((3, 3), 6.0))
    np.testing.assert_array_equal(codes[0, 1], np.full((3, 3), 3.0))
    wide = numerics.adc_codes(np.full((1, 3, 2, 3), 6.0, np.float32), np.float32([1.0, 2.0]), 8, channel_axis=2)
    np.testing.assert_array_equal(wide[0, :, 1], np.full((3, 3), 3.0))


def test_layer_output_scales_and_biases_each_channel_on_the_default_axis() -> None:
    total = np.ones((1, 2, 2, 3), np.float32)
    y = numerics.layer_output(total, np.float32([2.0, 3.0]), np.float32([0.5, -1.0]))
    np.testing.assert_array_equal(y[0, 0], np.full((2, 3), 2.5))
    np.testing.assert_array_equal(y[0, 1], np.full((2, 3), 2.0))


def test_shift_exponent_takes_the_nearest_power_of_two_and_rounds_1_5_up() -> None:
    """1.4 → 2^0, 1.5 (the tie m = 1.5) → 2^1, 3 → 2^2, 0.3 → 2^−2, 2^−10 → itself."""
    k = numerics.shift_exponent(np.array([1.4, 1.5, 3.0, 0.3, 2.0**-10]))
    np.testing.assert_array_equal(k, [0, -1, -2, 2, 10])
    np.testing.assert_array_equal(numerics.shift_scale(k), np.float32([1.0, 2.0, 4.0, 0.25, 2.0**-10]))


def test_weight_codes_apply_a_per_column_step_to_every_weight_of_its_column() -> None:
    w = np.ones((2, 3, 2, 2), np.float32) * np.float32([1.0, 4.0]).reshape(2, 1, 1, 1)
    codes = numerics.weight_codes(w, np.float32([0.5, 1.0]), 4)
    np.testing.assert_array_equal(codes[0], np.full((3, 2, 2), 2.0))
    np.testing.assert_array_equal(codes[1], np.full((3, 2, 2), 4.0))


def test_adc_codes_take_a_plain_number_as_the_layer_step() -> None:
    np.testing.assert_array_equal(numerics.adc_codes(np.float32([[3.0, -5.0]]), 2.0, 4), [[2.0, -2.0]])


def test_output_scale_is_the_product_of_the_three_steps() -> None:
    np.testing.assert_array_equal(numerics.output_scale(np.float32([0.5, 2.0]), np.float32([0.25]), 4.0),
                                  np.float32([0.5, 2.0]))


def test_weight_codes_clip_to_a_narrower_code_max() -> None:
    """Offset weight digits keep ``|q| ≤ code_max`` below the cell's own ``2^(b−1) − 1``
    (``slicing.code_max``): 4-bit codes of ±5 and ±9 with ``code_max = 3`` become ±3; with
    ``code_max`` equal to the cell's maximum, the narrow range alone applies."""
    w = np.float32([[5.0, -5.0], [9.0, -9.0]])
    np.testing.assert_array_equal(numerics.weight_codes(w, np.float32([1.0]), 4, code_max=3),
                                  [[3, -3], [3, -3]])
    np.testing.assert_array_equal(numerics.weight_codes(w, np.float32([1.0]), 4, code_max=7),
                                  [[5, -5], [7, -7]])
