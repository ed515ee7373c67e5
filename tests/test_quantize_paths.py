"""quantize's less travelled paths, each found as a mutant of ``scripts/mutate.py`` that no
default test executed or noticed: QAT steps of pooled layers, the pass's two internal
refusals, AdaRound's skip of a scaled Gemm, which warnings a compile logs and what the
context keeps for scale-to-shift."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import numpy as np
import pytest

from cimc.errors import UsageError
from cimc.frontend.quantizers import QDQ_KEY, VERSION
from cimc.ir.annotations import QuantParams, WeightPool
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.passes import quantize
from cimc.passes.fold_batchnorm import FoldBatchNorm
from cimc.passes.manager import GraphPass, PassContext, run_passes
from cimc.passes.pool_weights import PoolWeights
from cimc.passes.quantize import LayerBits, Quantize
from cimc.passes.select_cim import SelectCim
from cimc.passes.tile_wordlines import TileWordlines
from cimc.quant.pool_metadata import KEY as POOL_KEY
from cimc.quant.qat_metadata import KEY, qat_metadata
from tests.cim_helpers import SMALL, add_gemm, add_node, small_cnn
from tests.ir_builders import add_conv, graph_with_input


def _tiled(graph: Graph, *extra: GraphPass) -> tuple[Graph, PassContext]:
    ctx = PassContext(macro=SMALL)
    return run_passes(graph, [FoldBatchNorm(), SelectCim(map_fc=True), TileWordlines(), *extra], ctx), ctx


def _qat_params(cout: int) -> QuantParams:
    return QuantParams(4, 4, 5, np.full(cout, 0.0625, np.float32), 0.125, np.full(cout, 2.0, np.float32),
                       source="qat")


def test_qat_steps_of_a_pooled_layer_are_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """A pooled layer takes the pool's scale even when the model carries QAT steps for it;
    the warning names exactly the pooled layers that had QAT steps (not ``c2``, pooled
    without QAT steps, nor ``fc``, with QAT steps but not pooled), whose QAT steps are used."""
    graph, ctx = _tiled(small_cnn(group=2), PoolWeights(pool_size=4, vector_length=8))
    del graph.node("fc").ann[WeightPool]
    graph.metadata[KEY] = qat_metadata({"c1": _qat_params(1), "fc": _qat_params(1)})
    with caplog.at_level(logging.WARNING, logger="cimc"):
        out = Quantize(calib_size=8).run(graph, ctx).graph
    assert "QAT steps of 1 pooled layer(s) (c1) are not used" in caplog.text
    c1, fc = out.node("c1").ann[QuantParams], out.node("fc").ann[QuantParams]
    np.testing.assert_array_equal(c1.w_step, out.node("c1").ann[WeightPool].scale)
    assert c1.source == "calibration" and fc.source == "qat"
    assert ctx.quantize is not None and ctx.quantize.qat_layers == ["fc"]


def test_a_compile_without_qat_steps_does_not_warn_about_missing_ones(caplog: pytest.LogCaptureFixture) -> None:
    graph, ctx = _tiled(small_cnn())
    with caplog.at_level(logging.WARNING, logger="cimc"):
        Quantize(calib_size=8).run(graph, ctx)
    assert "QAT parameters missing" not in caplog.text


def test_qat_steps_for_some_layers_calibrate_the_others_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    graph, ctx = _tiled(small_cnn())
    graph.metadata[KEY] = qat_metadata({"c1": _qat_params(1)})
    with caplog.at_level(logging.WARNING, logger="cimc"):
        out = Quantize(calib_size=8).run(graph, ctx).graph
    assert "QAT parameters missing for 2 CIM layer(s) (c2, fc): calibrating them" in caplog.text
    assert [out.node(n).ann[QuantParams].source for n in ("c1", "c2", "fc")] == ["qat", "calibration", "calibration"]


def test_ensures_refuses_a_cim_layer_left_unquantized() -> None:
    graph, ctx = _tiled(small_cnn())
    with pytest.raises(AssertionError, match="CIM layer 'c1' left unquantized"):
        Quantize().ensures(graph, ctx)


def test_streamed_calibration_that_computes_no_input_for_a_layer_is_an_internal_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The streamed calibration must see every layer's input; one the interpreter never
    produced would otherwise leave that layer silently unquantized."""
    def first_only(graph: Graph, feeds: object, names: list[str]) -> Iterator[tuple[str, np.ndarray]]:
        x = np.ones((8, 3, 8, 8), np.float32)
        yield names[0], x

    graph, ctx = _tiled(small_cnn())
    monkeypatch.setattr(quantize, "stream_inputs", first_only)
    with pytest.raises(AssertionError, match="calibration computed no input for c2, fc"):
        Quantize(calib_size=8).run(graph, ctx)


def _conv_then_scaled_gemm(alpha: float) -> Graph:
    rng = np.random.default_rng(3)
    g = graph_with_input((2, 3, 4, 4))
    y = add_conv(g, "x", 6, 3, pad=1, bias=True, rng=rng, name="c1")
    y = add_node(g, "Flatten", [y], (2, 96), "fl", axis=1)
    g.outputs.append(add_gemm(g, y, 5, rng, "g"))
    g.node("g").attrs["alpha"] = alpha
    return g


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_adaround_skips_only_a_gemm_whose_alpha_is_not_one(alpha: float, caplog: pytest.LogCaptureFixture) -> None:
    """A Gemm computing ``alpha·A·B`` keeps round-to-nearest (its rewritten ``B`` would
    have to absorb ``alpha``); a Gemm with ``alpha = 1`` and a Conv are rounded by AdaRound,
    which gives them new weight initializers."""
    graph, ctx = _tiled(_conv_then_scaled_gemm(alpha))
    with caplog.at_level(logging.INFO, logger="cimc"):
        out = Quantize(calib_size=8, adaround=True).run(graph, ctx).graph
    assert out.node("c1").inputs[1] == "c1.weight_rounded"
    skipped = alpha != 1.0
    assert (out.node("g").inputs[1] == "g.w") is skipped
    assert ("adaround skips 'g' (Gemm with alpha != 1)" in caplog.text) is skipped


@pytest.mark.parametrize("fold_columns", [False, True])
def test_the_context_keeps_what_scale_to_shift_reads_of_the_calibration(fold_columns: bool) -> None:
    """Streamed (no column fold): only the terminal layer's input kept (``fc``: no CIM layer
    reads its output, scale-to-shift's ADC fold reads its input), stale ones from an earlier run
    cleared, and the pass's own float input graph kept to recompute the others. With the column
    fold: every layer's input kept (the fold rescales the reader's)."""
    graph, ctx = _tiled(small_cnn())
    ctx.calibration_inputs = {"stale": np.zeros(1, np.float32)}
    Quantize(calib_size=8, granularity="column", fold_columns=fold_columns).run(graph, ctx)
    if fold_columns:
        assert sorted(ctx.calibration_inputs) == ["c1", "c2", "fc"]
        assert ctx.calibration_inputs["c1"].shape == (8, 3, 8, 8)
    else:
        assert sorted(ctx.calibration_inputs) == ["fc"] and ctx.calibration_graph is graph


def _imported_inputs(a_bits: int = 4, a_step: float = 0.0625) -> str:
    """A quantized model's ``cimc.qdq`` document giving only c1's input quantizer."""
    return json.dumps({"version": VERSION, "layers": {"c1": {"a_bits": a_bits, "a_step": a_step}}})


def test_a_pooled_layer_ignores_a_quantized_models_steps_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    graph, ctx = _tiled(small_cnn(group=2), PoolWeights(pool_size=4, vector_length=8))
    graph.metadata[QDQ_KEY] = _imported_inputs()
    with caplog.at_level(logging.WARNING, logger="cimc"):
        c1 = Quantize(calib_size=8).run(graph, ctx).graph.node("c1").ann[QuantParams]
    assert "layer 'c1': the quantized model's steps are not used: a pooled layer takes the pool's scale" in caplog.text
    assert c1.source == "calibration" and c1.a_step != 0.0625


def test_imported_input_steps_are_kept_and_their_layer_is_not_adarounded() -> None:
    """c1 keeps the model's ``S_A`` (source ``qdq-inputs``) and its weights (AdaRound would
    move them off the model's grid); c2, calibrated, is rounded by AdaRound."""
    graph, ctx = _tiled(small_cnn())
    graph.metadata[QDQ_KEY] = _imported_inputs()
    out = Quantize(calib_size=8, adaround=True).run(graph, ctx).graph
    c1 = out.node("c1").ann[QuantParams]
    assert (c1.source, c1.a_bits, c1.a_step) == ("qdq-inputs", 4, 0.0625)
    assert out.node("c1").inputs[1] == graph.node("c1").inputs[1]
    assert out.node("c2").inputs[1] == "c2.weight_rounded"


@pytest.mark.parametrize("where", ["layer", "default"])
def test_input_bits_asked_other_than_the_models_recalibrate_its_input_step(where: str) -> None:
    """6-bit inputs asked (for the layer, or for every layer) where the model's are 4-bit: the
    model's ``S_A`` is dropped, the input step calibrated at 6 bits."""
    graph, ctx = _tiled(small_cnn())
    graph.metadata[QDQ_KEY] = _imported_inputs()
    asked = LayerBits(a_bits=6)
    pass_ = Quantize(calib_size=8, bits={"c1": asked}) if where == "layer" else Quantize(calib_size=8,
                                                                                        default_bits=asked)
    c1 = pass_.run(graph, ctx).graph.node("c1").ann[QuantParams]
    assert (c1.source, c1.a_bits) == ("calibration", 6) and c1.a_step != 0.0625


def test_a_model_trained_with_a_weight_pool_is_refused_without_one() -> None:
    """Its metadata says a pool was trained with it (``cimc.pool``) and no layer is pooled: its
    codes would not be the trained ones; with a pooled layer the check passes."""
    graph, ctx = _tiled(small_cnn())
    graph.metadata[POOL_KEY] = "{}"
    with pytest.raises(UsageError, match="trained with a weight pool"):
        Quantize().requires(graph, ctx)
    pooled, ctx = _tiled(small_cnn(group=2), PoolWeights(pool_size=4, vector_length=8))
    pooled.metadata[POOL_KEY] = "{}"
    Quantize().requires(pooled, ctx)


def test_a_pooled_layer_takes_the_input_bits_asked_not_its_weight_or_adc_bits() -> None:
    """3-bit inputs asked of every layer, the pool's weight codes and the macro's 5-bit ADC:
    each pooled layer quantizes its input at 3 bits."""
    graph, ctx = _tiled(small_cnn(group=2), PoolWeights(pool_size=4, vector_length=8))
    out = Quantize(calib_size=8, default_bits=LayerBits(a_bits=3)).run(graph, ctx).graph
    for name in ("c1", "c2", "fc"):
        q = out.node(name).ann[QuantParams]
        assert WeightPool in out.node(name).ann and (q.a_bits, q.adc_bits) == (3, 5) and q.w_bits != 3, name


def test_imported_bits_that_do_not_fit_are_requantized_at_the_layers_own_bits(caplog: pytest.LogCaptureFixture
                                                                                ) -> None:
    """c1's 16-bit weights (on the model's grid) and 16-bit inputs would make sums beyond 2^24 on
    4-bit cells and 2-bit DACs: c1 is re-quantized at this macro's 4-bit weights and 2-bit inputs,
    and the warning says so."""
    macro = MacroSpec(name="m42", wordlines=32, bitlines=64, adcs=16, cell_bits=4, dac_bits=2, adc_bits=5,
                      load_cycles=32)
    graph = small_cnn()
    step = np.float32(2.0 ** -12)
    codes = np.random.default_rng(5).integers(-30000, 30001, graph.initializers["c1.w"].shape)
    graph.set_initializer("c1.w", (codes * step).astype(np.float32))
    ctx = PassContext(macro=macro)
    graph = run_passes(graph, [FoldBatchNorm(), SelectCim(map_fc=True), TileWordlines()], ctx)
    graph.metadata[QDQ_KEY] = json.dumps({"version": VERSION, "layers": {"c1": {
        "w_bits": 16, "w_step": [float(step)], "a_bits": 16, "a_step": 1e-4}}})
    with caplog.at_level(logging.WARNING, logger="cimc"):
        c1 = Quantize(calib_size=8).run(graph, ctx).graph.node("c1").ann[QuantParams]
    assert "layer 'c1': the model's 16-bit weights and 16-bit inputs do not fit macro 'm42'" in caplog.text
    assert "re-quantizing at 4/2 bits" in caplog.text
    assert (c1.source, c1.w_bits, c1.a_bits) == ("calibration", 4, 2)
