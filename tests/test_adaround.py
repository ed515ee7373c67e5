"""AdaRound (``--adaround``, ``cimc.quant.adaround``): each weight rounded down or up so that the
layer's output through the DAC, not each weight, is closest to the float layer's; the quantize
pass writes those codes as new float weights, fits the ADC step to them, corrects the bias
against the layer before rounding, and the build stays bit-exact."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import cimc.models as models
from cimc.api import compile_model
from cimc.ir.annotations import QuantParams
from cimc.passes.manager import PassContext, run_passes
from cimc.passes.quantize import Quantize, calibrate_layer
from cimc.passes.select_cim import SelectCim
from cimc.passes.tile_wordlines import TileWordlines
from cimc.quant import adaround, numerics
from cimc.quant.bias_correction import mean_error
from cimc.quant.calibration import collect_inputs
from cimc.quant.cim_layer import cim_spec
from cimc.quant.layer_steps import Chosen, calibrated
from tests.cim_helpers import SMALL, assert_three_way, small_cnn, zoo_onnx

pytestmark = pytest.mark.torch  # tests.cim_helpers builds zoo models


def tiled():  # type: ignore[no-untyped-def]
    ctx = PassContext(macro=SMALL)
    return run_passes(small_cnn(), [SelectCim(map_fc=True), TileWordlines()], ctx), ctx


def layer_case(bits: int = 3):  # type: ignore[no-untyped-def]
    """Layer ``c1`` of the small CNN (27 rows) on correlated, non-negative inputs: neighbouring
    pixels and channels move together, so rounding errors of different weights do not cancel
    independently and choosing their directions jointly pays."""
    graph, _ = tiled()
    rng = np.random.default_rng(3)
    base = rng.uniform(0.0, 1.0, (32, 1, 8, 8))
    x = np.abs(base + 0.3 * rng.standard_normal((32, 3, 8, 8))).astype(np.float32)
    spec = cim_spec(graph, graph.node("c1"))
    c = calibrated(spec, x, bits, 6, "layer", "mse")
    return spec, x, c


def errors(spec, x, c, codes):  # type: ignore[no-untyped-def]
    h, h_hat, k = adaround.moments(spec, x, c.a_step, c.a_bits, c.a_signed)
    shape = (spec.groups, spec.cout // spec.groups, spec.rows)
    s = np.broadcast_to(np.asarray(c.w_step, np.float64).reshape(-1, 1), (spec.cout, spec.rows)).reshape(shape)
    w = spec.weight.astype(np.float64).reshape(shape)
    return adaround.output_error(s * codes.astype(np.float64).reshape(shape), w, h, h_hat, k)


@pytest.mark.parametrize("granularity", ["layer", "column"])
def test_adaround_rounds_down_or_up_and_lowers_the_output_error(granularity: str) -> None:
    spec, x, c = layer_case()
    if granularity == "column":
        c = calibrated(spec, x, 3, 6, "column", "mse")
    nearest = numerics.weight_codes(spec.weight, c.w_step, 3)
    codes = adaround.adaround_codes(spec, x, c.w_step, 3, c.a_step, c.a_bits, c.a_signed)
    ratio = spec.weight / np.asarray(c.w_step, np.float32).reshape(-1, 1, 1, 1)
    lo, hi = numerics.code_range(3, True)
    assert ((codes == np.clip(np.floor(ratio), lo, hi)) | (codes == np.clip(np.ceil(ratio), lo, hi))).all()
    assert (codes != nearest).any()  # it did choose differently somewhere
    assert errors(spec, x, c, codes) < 0.9 * errors(spec, x, c, nearest)


def test_adaround_output_error_matches_the_layer_run_on_its_windows() -> None:
    """``output_error`` (from the moments ``Ĥ``, ``K``, ``H``) is ``E[‖W̃·x̂ − W·x‖²]`` computed
    directly on the im2col windows."""
    from cimc.quant.reference import as_conv_input, im2col

    spec, x, c = layer_case()
    codes = adaround.adaround_codes(spec, x, c.w_step, 3, c.a_step, c.a_bits, c.a_signed, iterations=50)
    a = as_conv_input(x, spec)
    a_hat = numerics.quantize(a, c.a_step, c.a_bits, c.a_signed) * np.float32(c.a_step)
    cols = im2col(a, spec)[0][0].astype(np.float64)
    cols_hat = im2col(a_hat, spec)[0][0].astype(np.float64)
    w = spec.weight.reshape(spec.cout, -1).astype(np.float64)
    w_t = codes.reshape(spec.cout, -1).astype(np.float64) * float(c.w_step[0])
    direct = float(((cols_hat @ w_t.T - cols @ w.T) ** 2).sum(axis=1).mean())
    assert errors(spec, x, c, codes) == pytest.approx(direct, rel=1e-9)


def test_adaround_in_the_pass_writes_its_codes_and_fits_the_adc_to_them() -> None:
    graph, ctx = tiled()
    out = Quantize(calib_size=8, adaround=True, default_bits=replace_bits(3)).run(graph, ctx).graph
    plain = Quantize(calib_size=8, default_bits=replace_bits(3)).run(graph, ctx).graph
    inputs = collect_inputs(graph, ctx.calibration.feeds, ["c1", "c2"])
    moved = 0
    for name in ("c1", "c2"):
        node, before, x = out.node(name), graph.node(name), inputs[name]
        assert node.inputs[1] != before.inputs[1] and before.inputs[1] in graph.initializers  # new weight, old kept
        q, q0 = node.ann[QuantParams], plain.node(name).ann[QuantParams]
        np.testing.assert_array_equal(q.w_step, q0.w_step)  # the steps stay; only the rounding moves
        assert q.a_step == q0.a_step
        expected = adaround.adaround_codes(cim_spec(graph, before), x, q0.w_step, q0.w_bits, q0.a_step, q0.a_bits,
                                           q0.a_signed)
        np.testing.assert_array_equal(cim_spec(out, node).codes(), expected)
        assert not np.array_equal(expected, cim_spec(plain, plain.node(name)).codes())
        chosen = Chosen(q.w_bits, q.w_step, q.a_bits, q.a_step, q.a_signed, q.source)
        refit = calibrate_layer(replace(cim_spec(out, node), quant=None), x, (q.w_bits, q.a_bits, q.adc_bits),
                                "layer", "mse", SMALL, chosen)
        np.testing.assert_array_equal(q.adc_step, refit.adc_step)  # the ADC step fits the new codes
        moved += int(not np.array_equal(q.adc_step, q0.adc_step))
    assert moved  # ... and differs from the one fitted to round-to-nearest's codes


def replace_bits(bits: int):  # type: ignore[no-untyped-def]
    from cimc.passes.quantize import LayerBits

    return LayerBits(bits, 4)


def test_bias_correction_after_adaround_corrects_against_the_float_weights() -> None:
    """The corrected bias zeroes the mean error against the layer's *float* weights, not against
    the rounded weights AdaRound wrote (which would leave the rounding's mean error in)."""
    graph, ctx = tiled()
    out = Quantize(calib_size=8, adaround=True, bias_correction=True, default_bits=replace_bits(3)).run(graph, ctx)
    x = collect_inputs(graph, ctx.calibration.feeds, ["c1"])["c1"]
    spec = cim_spec(out.graph, out.graph.node("c1"))
    float_spec = replace(cim_spec(graph, graph.node("c1")), quant=spec.quant)
    err = mean_error(spec, x, float_bias=float_spec.bias, float_spec=float_spec)
    np.testing.assert_allclose(err, 0.0, atol=1e-4)
    rounded = mean_error(replace(spec, bias=float_spec.bias), x, float_bias=float_spec.bias)  # vs rounded weights
    assert np.abs(rounded - mean_error(replace(spec, bias=float_spec.bias), x, float_bias=float_spec.bias,
                                       float_spec=float_spec)).max() > 1e-3


@pytest.mark.parametrize("options", [{"adaround": True}, {"adaround": True, "bias_correction": True,
                                                           "granularity": "column", "w_bits": 8, "a_bits": 8}])
def test_adaround_builds_stay_bit_exact(tmp_path: Path, options: dict[str, object]) -> None:
    result = compile_model(zoo_onnx("tiny_residual"), tmp_path / "b", calib_size=8, macro="small-64", map_fc=True,
                           **options)
    assert json.loads((result.out_dir / "manifest.json").read_text())["options"]["adaround"] is True
    shape = models.input_shape("tiny_residual")
    x = np.random.default_rng(6).standard_normal((3, *shape[1:])).astype(np.float32)
    assert_three_way(result.out_dir, result.graph, x, optimize=True)


def test_adaround_is_recorded_only_when_on(tmp_path: Path) -> None:
    result = compile_model(zoo_onnx("tiny_residual"), tmp_path / "b", calib_size=8, macro="small-64")
    options = json.loads((result.out_dir / "manifest.json").read_text())["options"]
    assert "adaround" not in options  # default builds keep their manifests


def test_adaround_keeps_round_to_nearest_on_layers_past_its_row_limit(monkeypatch: pytest.MonkeyPatch,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    graph, ctx = tiled()
    monkeypatch.setattr(adaround, "MAX_ROWS", 0)
    with caplog.at_level("WARNING"):
        out = Quantize(calib_size=8, adaround=True, default_bits=replace_bits(3)).run(graph, ctx).graph
    plain = Quantize(calib_size=8, default_bits=replace_bits(3)).run(graph, ctx).graph
    for name in ("c1", "c2"):
        assert out.node(name).inputs[1] == graph.node(name).inputs[1]  # weights untouched
        np.testing.assert_array_equal(cim_spec(out, out.node(name)).codes(), cim_spec(plain, plain.node(name)).codes())
    assert "adaround keeps round-to-nearest" in caplog.text
