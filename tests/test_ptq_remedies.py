"""The post-training quantization remedies of issue 15 (benchmarks/results/ptq.md): unbiased
subsampling of calibration statistics, activation-aware weight steps, the signedness of input
codes, jointly anchored ADC steps of sliced layers and bias correction — each against a
constructed case where the old behaviour provably loses, and the compiled model still bit-exact
against the emulator and onnxruntime with the remedies on."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import cimc.models as models
from cimc.api import compile_model
from cimc.ir.annotations import QuantParams
from cimc.macro import load_macro
from cimc.passes.manager import PassContext, run_passes
from cimc.passes.quantize import Quantize, adc_steps, calibrate_layer
from cimc.passes.select_cim import SelectCim
from cimc.passes.tile_wordlines import TileWordlines
from cimc.quant import numerics, slicing
from cimc.quant.bias_correction import corrected_bias, mean_error
from cimc.quant.calibration import collect_inputs, weight_importance
from cimc.quant.cim_layer import cim_spec
from cimc.quant.kind_steps import anchored, fit_kind_steps, kind_error
from cimc.quant.layer_steps import input_signed
from cimc.quant.reference import run_layer
from cimc.quant.step_search import mse_step, squared_error, subsample
from tests.cim_helpers import SMALL, assert_three_way, small_cnn, zoo_onnx

pytestmark = pytest.mark.torch  # tests.cim_helpers builds zoo models


def test_subsample_is_seeded_uniform_and_complete_when_small() -> None:
    assert subsample(10, 10) is None
    a, b = subsample(1000, 100), subsample(1000, 100)
    assert a is not None and b is not None and np.array_equal(a, b) and len(np.unique(a)) == 100
    assert (np.diff(a) > 0).all() and len(np.unique(a % 16)) == 16  # every residue: no stride aliasing


def test_activation_step_sees_every_image_column() -> None:
    """NCHW activations whose left edge (and every 16th column) is dark: a fixed stride of
    ``W = 16``-multiples (the old subsampling) saw only those columns and chose a step 100× too
    small, clipping every bright pixel."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (64, 16, 32, 32)).astype(np.float32)
    x[..., ::16] = 0.01
    step = float(mse_step(x, 4, False)[0])
    assert step * 15 > 0.5  # the range covers most of the bright values
    strided = x.reshape(1, -1)[:, ::16]  # what the fixed stride kept
    assert float(strided.max()) == pytest.approx(0.01)
    assert squared_error(x, step, 4, False)[0] < 0.01 * squared_error(x, 0.01 / 15, 4, False)[0]


def test_activation_aware_weight_step_ignores_weights_that_see_no_input() -> None:
    """One huge weight whose input is always 0 (a dead channel, a tap over the padding) sets
    the plain MSE step and zeroes the rest; weighted by ``E[a²]`` it is ignored."""
    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.1, (8, 4, 3, 3)).astype(np.float32)
    w[3, 2, 1, 1] = 20.0
    importance = np.ones_like(w)
    importance[3, 2, 1, 1] = 0.0
    plain = mse_step(w, 4, True)
    aware = mse_step(w, 4, True, importance=importance)
    rest = np.delete(w.reshape(-1), 3 * 36 + 2 * 9 + 4)
    assert aware[0] == pytest.approx(mse_step(rest, 4, True)[0], rel=1e-6)
    assert plain[0] > 5 * aware[0]
    err = (w - numerics.weight_codes(w, aware, 4) * aware) ** 2
    err_plain = (w - numerics.weight_codes(w, plain, 4) * plain) ** 2
    assert float((err * importance).sum()) < 0.1 * float((err_plain * importance).sum())


def test_weight_importance_is_the_mean_square_of_each_weights_input() -> None:
    """A 3×3 conv on a 1×1 map (padding 1): only the centre tap sees data."""
    graph, _ = tiled(small_cnn(h=2))
    spec = cim_spec(graph, graph.node("c2"))  # 12 → 20 channels, 3×3, pad 1, on the 1×1 pooled map
    x = np.random.default_rng(2).normal(size=(5, 12, 1, 1)).astype(np.float32)
    h = weight_importance(spec, x)
    assert h.shape == spec.weight.shape
    np.testing.assert_allclose(h[:, :, 1, 1], np.broadcast_to((x[:, :, 0, 0] ** 2).mean(axis=0), (20, 12)),
                               rtol=1e-6)
    h[:, :, 1, 1] = 0
    assert not h.any()


@pytest.mark.parametrize(("low", "signed"), [(-0.28, False), (-3.0, True), (0.0, False)])
def test_input_signed_only_when_signed_codes_quantize_better(low: float, signed: bool) -> None:
    """A SiLU-like input (small negative tail) stays unsigned; a symmetric one is signed."""
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(low, 0, 2000), rng.exponential(1.5, 6000)]).astype(np.float32)
    assert input_signed(x, 4) is signed


def test_anchored_kind_steps_keep_the_anchor_and_never_lose_to_the_coarsest() -> None:
    rng = np.random.default_rng(4)
    p = np.rint(rng.normal(0, 1, (512, 2, 4, 6)) * np.array([400, 60, 90, 15])[None, None, :, None])
    weights = slicing.conversion_weights(1, 8, 4, 8, 4)
    steps = np.stack([mse_step(p[:, :, k], 5, True, axis=2, min_step=1.0) for k in range(4)])
    for anchor in range(4):
        base, m = anchored(steps, anchor, 16)
        assert (m >= 0).all()
        np.testing.assert_allclose(base * np.exp2(-float(m[anchor])), steps[anchor], rtol=1e-6)
    base, m = fit_kind_steps(p, steps, weights, 5, True)
    old_base, old_m = slicing.fit_shifts(steps)
    assert kind_error(p, base, m, weights, 5, True) <= kind_error(p, old_base, old_m, weights, 5, True)
    assert kind_error(p, base, m, weights, 5, True) < 0.9 * kind_error(p, old_base, old_m, weights, 5, True)
    got_base, got_m = adc_steps(p.reshape(512, 8, 6), 5, 4, True, weights)
    np.testing.assert_array_equal(got_base, base)
    np.testing.assert_array_equal(got_m, m)


def biased_layer() -> tuple[object, np.ndarray]:
    """Layer ``c1`` of the small CNN on a skewed input, quantized with a 3-bit ADC that clips
    (so its mean output error is far from 0)."""
    graph, _ = tiled()
    x = np.abs(np.random.default_rng(5).normal(1.0, 1.0, (16, 3, 8, 8))).astype(np.float32)
    spec = cim_spec(graph, graph.node("c1"))
    q = calibrate_layer(spec, x, (4, 4, 3), "layer", "mse", SMALL)
    q = replace(q, adc_step=np.float32(q.adc_step * 0.5))  # clip harder
    return replace(spec, quant=q), x


def test_bias_correction_zeroes_the_mean_error_and_lowers_the_mse() -> None:
    spec, x = biased_layer()
    before = mean_error(spec, x)
    assert np.abs(before).max() > 0.05
    fixed = replace(spec, bias=corrected_bias(spec, x))
    after = mean_error(fixed, x, float_bias=spec.bias)
    np.testing.assert_allclose(after, 0.0, atol=1e-4 * max(1.0, float(np.abs(before).max())))
    ref = replace(spec, quant=None)  # float output from the same weights
    y = np.einsum("oc,ncp->nop", ref.weight.reshape(ref.cout, -1), _windows(ref, x)) + ref.bias[None, :, None]
    mse = [float(((run_layer(x, s).outputs.reshape(y.shape) - y) ** 2).mean()) for s in (spec, fixed)]
    assert mse[1] < mse[0] - 0.5 * float((before**2).mean())


def _windows(spec: object, x: np.ndarray) -> np.ndarray:
    """``(N, rows, pixels)`` im2col of ``x`` (one group)."""
    from cimc.quant.reference import im2col

    cols, _, _ = im2col(x, spec)  # type: ignore[arg-type]
    n = x.shape[0]
    return cols[0].reshape(n, -1, cols.shape[-1]).transpose(0, 2, 1)


def test_bias_correction_in_the_pass_adds_a_bias_and_keeps_the_float_graph() -> None:
    graph, ctx = tiled()
    p = Quantize(calib_size=8, bias_correction=True)
    out = p.run(graph, ctx).graph
    c2 = out.node("c2")  # had no bias: now reads a new initializer
    assert len(graph.node("c2").inputs) == 2 or not graph.node("c2").inputs[2]
    assert c2.inputs[2] in out.initializers and out.initializers[c2.inputs[2]].shape == (20,)
    x = collect_inputs(graph, ctx.calibration.feeds, ["c2"])["c2"]
    np.testing.assert_allclose(mean_error(cim_spec(out, c2), x, float_bias=np.zeros(20, np.float32)), 0.0,
                               atol=1e-3)
    assert QuantParams in c2.ann


@pytest.mark.parametrize("options", [{"bias_correction": True, "weight_method": "aware"},
                                     {"bias_correction": True, "granularity": "column", "w_bits": 8, "a_bits": 8}])
def test_remedies_stay_bit_exact(tmp_path: Path, options: dict[str, object]) -> None:
    result = compile_model(zoo_onnx("tiny_residual"), tmp_path / "b", calib_size=8, macro="small-64", map_fc=True,
                           **options)
    shape = models.input_shape("tiny_residual")
    x = np.random.default_rng(6).standard_normal((3, *shape[1:])).astype(np.float32)
    assert_three_way(result.out_dir, result.graph, x, optimize=True)


def tiled(graph=None):  # type: ignore[no-untyped-def]
    ctx = PassContext(macro=SMALL)
    return run_passes(graph or small_cnn(), [SelectCim(map_fc=True), TileWordlines()], ctx), ctx


def test_paper_macro_loads() -> None:  # the evidence script's macro: 4-bit cells and DACs, 5-bit ADC
    m = load_macro("paper")
    assert (m.cell_bits, m.dac_bits, m.adc_bits, m.wordlines) == (4, 4, 5, 256)
