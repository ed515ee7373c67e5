"""The quantize pass: calibrated and QAT step sizes, bits, granularity, preconditions, and the
rejection of malformed QAT parameters (every error names the layer)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from cimc.errors import InvalidModelError, MappingError, UnsupportedError, UsageError
from cimc.ir import verify
from cimc.ir.annotations import QuantParams
from cimc.macro import MacroSpec
from cimc.ops.windows import conv2d
from cimc.passes.manager import PassContext, run_passes
from cimc.passes.quantize import LayerBits, Quantize
from cimc.passes.select_cim import SelectCim
from cimc.passes.tile_wordlines import TileWordlines
from cimc.quant import numerics
from cimc.quant.calibration import load_feeds, partial_sums
from cimc.quant.cim_layer import cim_spec
from cimc.quant.qat_metadata import KEY, qat_metadata
from cimc.quant.step_search import lsq_step, mse_step
from tests.cim_helpers import SMALL, small_cnn

pytestmark = pytest.mark.torch  # the zoo or the training hook


def tiled(graph=None, macro: MacroSpec = SMALL):  # type: ignore[no-untyped-def]
    ctx = PassContext(macro=macro)
    return run_passes(graph or small_cnn(), [SelectCim(map_fc=True), TileWordlines()], ctx), ctx


def quantize(graph, ctx, **options):  # type: ignore[no-untyped-def]
    p = Quantize(calib_size=8, **options)
    p.requires(graph, ctx)
    result = p.run(graph, ctx)
    verify(result.graph)
    p.ensures(result.graph, ctx)
    return result


def params(graph) -> dict[str, QuantParams]:  # type: ignore[no-untyped-def]
    return {n.name: n.ann[QuantParams] for n in graph.nodes if QuantParams in n.ann}


@pytest.mark.parametrize("granularity", ["layer", "column"])
def test_calibrated_parameters(granularity: str) -> None:
    graph, ctx = tiled()
    result = quantize(graph, ctx, granularity=granularity)
    q = params(result.graph)
    assert sorted(q) == ["c1", "c2", "fc"] and not params(graph)  # input graph untouched
    for name, p in q.items():
        cout = cim_spec(result.graph, result.graph.node(name)).cout
        expected = (cout,) if granularity == "column" else (1,)
        assert p.w_step.shape == expected and p.adc_step.shape == expected
        assert (p.w_bits, p.a_bits, p.adc_bits) == (SMALL.cell_bits, SMALL.dac_bits, SMALL.adc_bits)
        assert p.source == "calibration" and p.a_step > 0 and (p.adc_step >= 1).all()
    assert q["c1"].a_signed and not q["c2"].a_signed  # the Gaussian model input vs a ReLU output
    again = quantize(result.graph, ctx, granularity=granularity)
    assert not again.modified


def test_weight_steps_minimise_the_error() -> None:
    w = np.random.default_rng(0).standard_normal((16, 300)).astype(np.float32)

    def error(step: np.ndarray) -> float:
        return float(((w - numerics.weight_codes(w, step, 4) * step.reshape(-1, 1)) ** 2).sum())

    best = mse_step(w, 4, True)
    naive = np.array([np.abs(w).max() / 7], np.float32)
    assert error(best) < error(naive) and error(best) <= error(lsq_step(w, 4, True))
    per_column = mse_step(w, 4, True, axis=0)
    assert per_column.shape == (16,) and error(per_column) <= error(best)
    assert lsq_step(w, 4, True)[0] == pytest.approx(2 * np.abs(w).mean() / math.sqrt(7), rel=1e-5)


def test_partial_sums_are_the_segment_sums_of_the_codes() -> None:
    graph, _ = tiled()
    spec = cim_spec(graph, graph.node("c2"))
    x = np.abs(np.random.default_rng(1).standard_normal((2, 12, 4, 4))).astype(np.float32)
    w_step, a_step = np.array([0.3], np.float32), 0.2
    p = partial_sums(spec, x, w_step, 4, a_step, 4, False)  # (M, S, Cout)
    assert spec.num_segments == 4 and p.shape == (2 * 16, 4, 20)
    a_q = numerics.quantize(x, a_step, 4, False)
    w_q = numerics.weight_codes(spec.weight, w_step, 4)
    full = conv2d(a_q, w_q, None, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    np.testing.assert_array_equal(p.sum(axis=1), full.transpose(0, 2, 3, 1).reshape(-1, 20))


def test_bits_from_overrides_and_macro_limits() -> None:
    graph, ctx = tiled()
    q = params(quantize(graph, ctx, bits={"c2": LayerBits(w_bits=3, adc_bits=4)}).graph)
    assert (q["c2"].w_bits, q["c2"].a_bits, q["c2"].adc_bits) == (3, 4, 4)
    assert q["c1"].w_bits == 4
    assert (q["c1"].cell_bits, q["c1"].dac_bits, q["c1"].w_slices, q["c1"].a_slices) == (4, 4, 1, 1)
    wide = params(quantize(graph, ctx, bits={"c2": LayerBits(w_bits=6, a_bits=9)}).graph)["c2"]
    assert (wide.w_bits, wide.a_bits, wide.w_slices, wide.a_slices) == (6, 9, 2, 3)  # sliced, not refused
    default = params(quantize(graph, ctx, default_bits=LayerBits(w_bits=8)).graph)
    assert {q.w_bits for q in default.values()} == {8}
    with pytest.raises(MappingError, match="'c2' needs 6-bit ADC codes"):
        quantize(graph, ctx, bits={"c2": LayerBits(adc_bits=6)})
    with pytest.raises(UsageError, match="not CIM layers: nope"):
        quantize(graph, ctx, bits={"nope": LayerBits(w_bits=3)})


def test_partial_sums_must_stay_exact_in_float32() -> None:
    wide = MacroSpec(name="wide", wordlines=256, bitlines=64, adcs=16, cell_bits=16, dac_bits=16, adc_bits=16)
    graph, ctx = tiled(small_cnn(cin=32), wide)
    with pytest.raises(UnsupportedError, match="2\\^24"):
        quantize(graph, ctx)


def test_requires_tiling() -> None:
    ctx = PassContext(macro=SMALL)
    graph = run_passes(small_cnn(), [SelectCim()], ctx)
    with pytest.raises(MappingError, match="tile-wordlines first"):
        Quantize().requires(graph, ctx)
    with pytest.raises(UsageError, match="granularity"):
        Quantize(granularity="bitline").requires(graph, ctx)


def test_calibration_sources(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    graph = small_cnn()
    with caplog.at_level(logging.WARNING):
        assert load_feeds(graph, "synthetic", 5).feeds["x"].shape == (5, 3, 8, 8)
    assert "synthetic" in caplog.text
    batch = np.random.default_rng(0).standard_normal((6, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "a.npy", batch[:4])
    np.save(tmp_path / "b.npy", batch[4:])
    np.testing.assert_array_equal(load_feeds(graph, str(tmp_path), 5).feeds["x"], batch[:5])
    with pytest.raises(UsageError, match="expects \\[3, 8, 8\\]"):
        load_feeds(graph, "digits", 4)


# -- QAT parameters carried by the model ----------------------------------------------------------
def qat_params() -> dict[str, QuantParams]:
    w = np.full(12, 0.05, np.float32)
    return {"c1": QuantParams(4, 4, 5, w, 0.1, np.array([2.0], np.float32), a_signed=True),
            "c2": QuantParams(3, 4, 5, np.array([0.07], np.float32), 0.25, np.full(20, 3.0, np.float32))}


def test_qat_parameters_are_used(caplog: pytest.LogCaptureFixture) -> None:
    graph, ctx = tiled()
    graph.metadata[KEY] = qat_metadata(qat_params())
    with caplog.at_level(logging.WARNING):
        q = params(quantize(graph, ctx).graph)
    for name, want in qat_params().items():
        got = q[name]
        assert got.source == "qat" and (got.w_bits, got.a_bits, got.adc_bits) == (want.w_bits, want.a_bits, 5)
        np.testing.assert_array_equal(got.w_step, want.w_step)
        np.testing.assert_array_equal(got.adc_step, want.adc_step)
        assert got.a_step == pytest.approx(want.a_step) and got.a_signed == want.a_signed
    assert q["fc"].source == "calibration" and "fc" in caplog.text


def _entry() -> dict[str, object]:
    return {"w_bits": 4, "a_bits": 4, "adc_bits": 5, "w_step": [0.05], "a_step": 0.1, "a_signed": False,
            "adc_step": [2.0]}


@pytest.mark.parametrize(("change", "message"), [
    ({"w_step": [0.0]}, "w_step\\[0\\] = 0.0 is not a positive finite number"),
    ({"w_step": [-0.1]}, "w_step\\[0\\] = -0.1"),
    ({"adc_step": [float("nan")]}, "adc_step\\[0\\] = nan"),
    ({"a_step": float("inf")}, "a_step\\[0\\] = inf"),
    ({"w_bits": 0}, "w_bits = 0 must be an integer in 2..16"),
    ({"adc_bits": 17}, "adc_bits = 17 must be an integer in 2..16"),
    ({"a_bits": True}, "a_bits = True must be an integer"),
    ({"w_step": [0.1, 0.2]}, "w_step has 2 values; expected 1 \\(per layer\\) or 12"),
    ({"adc_step": "big"}, "adc_step\\[0\\] = 'big'"),
    ({"a_signed": "no"}, "a_signed must be true or false"),
    ({"w_step": None}, "w_step\\[0\\] = None"),
])
def test_malformed_qat_parameters_name_the_layer(change: dict[str, object], message: str) -> None:
    graph, ctx = tiled()
    graph.metadata[KEY] = json.dumps({"version": 1, "layers": {"c1": {**_entry(), **change}}})
    with pytest.raises(InvalidModelError, match=f"layer 'c1': {message}"):
        quantize(graph, ctx)


@pytest.mark.parametrize(("doc", "message"), [
    ("{not json", "not valid JSON"),
    (json.dumps({"version": 2, "layers": {}}), "version 2"),
    (json.dumps({"version": 1}), "'layers' object"),
    (json.dumps({"version": 1, "layers": {"ghost": _entry()}}), "layer 'ghost', but the model has no such node"),
    (json.dumps({"version": 1, "layers": {"c1": {"w_bits": 4}}}), "layer 'c1': missing a_bits"),
])
def test_malformed_qat_documents(doc: str, message: str) -> None:
    graph, ctx = tiled()
    graph.metadata[KEY] = doc
    with pytest.raises(InvalidModelError, match=message):
        quantize(graph, ctx)


def test_qat_metadata_of_an_onnx_file_reaches_the_build(tmp_path: Path) -> None:
    """``metadata_props["cimc.quant"]`` of the ONNX file → quantize (source qat) → quant.json."""
    import onnx
    from onnx import helper

    from cimc.api import compile_model
    from tests.cim_helpers import assert_three_way
    from tests.onnx_builders import make_model, rand

    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2", "b2"], ["y"], name="conv_b")]
    model = make_model(nodes, {"x": (1, 4, 6, 6)}, ["y"], {"w1": rand(8, 4, 3, 3), "w2": rand(5, 8, 1, 1, seed=1),
                                                            "b2": rand(5, seed=2)})
    qat = {"conv_a": QuantParams(4, 4, 5, np.array([0.12], np.float32), 0.2, np.array([1.5], np.float32), True),
           "conv_b": QuantParams(4, 3, 4, np.full(5, 0.1, np.float32), 0.3, np.full(5, 2.0, np.float32))}
    onnx.helper.set_model_props(model, {KEY: qat_metadata(qat)})
    onnx.save(model, tmp_path / "m.onnx")
    result = compile_model(tmp_path / "m.onnx", tmp_path / "b", no_shift=True, calib_size=4)
    quant = json.loads((tmp_path / "b" / "quant.json").read_text())["layers"]
    assert [(q["node"], q["source"], q["a_bits"], q["adc_step"]) for q in quant] == [
        ("conv_a", "qat", 4, [1.5]), ("conv_b", "qat", 3, [2.0] * 5)]
    assert result.report["quantization"]["qat_layers"] == ["conv_a", "conv_b"]
    assert result.report["quantization"]["calibration"] is None
    x = np.random.default_rng(0).standard_normal((3, 4, 6, 6)).astype(np.float32)
    assert_three_way(result.out_dir, result.graph, x)


def test_bits_asked_after_qat_requantize_those_layers_with_a_warning(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """``--w-bits``/``--bits`` on a model with QAT steps: the layers asked for other bits than
    they were trained at are calibrated at the asked bits (never a silent no-op), the others keep
    their trained steps."""
    import onnx
    from onnx import helper

    from cimc.api import compile_model
    from tests.onnx_builders import make_model, rand

    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="conv_b")]
    model = make_model(nodes, {"x": (1, 4, 6, 6)}, ["y"], {"w1": rand(8, 4, 3, 3), "w2": rand(5, 8, 1, 1, seed=1)})
    qat = {"conv_a": QuantParams(4, 4, 5, np.array([0.12], np.float32), 0.2, np.array([1.5], np.float32), True),
           "conv_b": QuantParams(4, 4, 5, np.array([0.1], np.float32), 0.3, np.array([2.0], np.float32))}
    onnx.helper.set_model_props(model, {KEY: qat_metadata(qat)})
    onnx.save(model, tmp_path / "m.onnx")
    with caplog.at_level("WARNING"):
        compile_model(tmp_path / "m.onnx", tmp_path / "b", no_shift=True, calib_size=4,
                      layer_bits={"conv_b": {"w_bits": 3}})
    quant = json.loads((tmp_path / "b" / "quant.json").read_text())["layers"]
    assert [(q["node"], q["source"], q["w_bits"]) for q in quant] == [("conv_a", "qat", 4),
                                                                         ("conv_b", "calibration", 3)]
    assert "re-quantizing them by calibration" in caplog.text and "conv_b" in caplog.text
    compile_model(tmp_path / "m.onnx", tmp_path / "c", no_shift=True, calib_size=4, a_bits=4)  # the trained bits
    assert {q["source"] for q in json.loads((tmp_path / "c" / "quant.json").read_text())["layers"]} == {"qat"}
