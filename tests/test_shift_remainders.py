"""What scale-to-shift costs per column (issue 15): the ADC fold judges its two powers of two by
the error that reaches the layer's sum (each conversion kind weighted by its shift-add weight
squared, as quantize's kind steps are fitted), a bias-corrected layer keeps its correction
through an ADC fold, and with ``--equalize`` per-column remainders fold into the next Conv so
that no ADC step moves — the float function unchanged and the build bit-exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from cimc.api import compile_model
from cimc.cli.main import main
from cimc.frontend import import_onnx
from cimc.ir.annotations import QuantParams, Shift
from cimc.ir.graph import Graph
from cimc.ir.interpreter import run
from cimc.macro import MacroSpec
from cimc.mapping.select import cim_nodes
from cimc.passes.fold_batchnorm import FoldBatchNorm
from cimc.passes.manager import PassContext, run_passes
from cimc.passes.place_bitlines import PlaceBitlines
from cimc.passes.quantize import LayerBits, Quantize
from cimc.passes.scale_to_shift import ScaleToShift, conversion_error
from cimc.passes.select_cim import SelectCim
from cimc.passes.tile_wordlines import TileWordlines
from cimc.quant import slicing
from cimc.quant.calibration import collect_inputs
from cimc.quant.cim_layer import cim_spec
from cimc.quant.kind_steps import kind_error
from cimc.quant.reference import run_layer
from tests.onnx_builders import run_ort
from tests.test_equalize import depthwise_net, feeds


def quantized(act: str = "relu", **options: object) -> tuple[Graph, PassContext]:
    """The depthwise test net through quantize and place-bitlines, per column, 8/8/5 bits."""
    ctx = PassContext(macro=MacroSpec())
    passes = [FoldBatchNorm(), SelectCim(), TileWordlines(),
              Quantize(granularity="column", calib_size=16, default_bits=LayerBits(8, 8), **options),  # type: ignore[arg-type]
              PlaceBitlines()]
    return run_passes(import_onnx(depthwise_net(act)), passes, ctx), ctx


def test_the_adc_fold_weighs_each_kind_by_its_shift_add_weight_squared() -> None:
    graph, _ = quantized()
    q = cim_nodes(graph)[2].ann[QuantParams]  # the pointwise conv: 8 rows, one segment, 4 kinds
    kinds = q.w_slices * q.a_slices
    assert kinds == 4
    rng = np.random.default_rng(0)
    p = np.rint(rng.standard_normal((8, kinds, q.adc_step.size)) * rng.uniform(1, 60, (1, kinds, 1)))
    p = p.astype(np.float32)
    c = slicing.conversion_weights(1, q.a_bits, q.dac_bits, q.w_bits, q.cell_bits)
    want = kind_error(p[:, None], q.adc_step, q.adc_shift, c, q.adc_bits, True)
    assert float(conversion_error(p, q.adc_step, q).sum()) == pytest.approx(want, rel=1e-6)


def _channel_means(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=(0, 2, 3), dtype=np.float64)


@pytest.mark.parametrize("refold", [True, False])
def test_an_adc_fold_keeps_the_bias_correction(refold: bool) -> None:
    """After an ADC fold the layer's mean output on its calibration input is what it was after
    quantize's correction (the float mean); without the refold it moves (the check can fail)."""
    graph, ctx = quantized(bias_correction=True)
    shifted = ScaleToShift(calib_size=16, bias_correction=refold).run(graph, ctx).graph
    moved = []
    for node in cim_nodes(shifted):
        if node.ann[Shift].fold != "adc" or node.ann[Shift].relative_error < 1e-3:
            continue
        x = collect_inputs(ctx.calibration_graph, ctx.calibration.feeds, [node.name])[node.name]
        before = _channel_means(run_layer(x, cim_spec(graph, graph.node(node.name))).outputs)
        after = _channel_means(run_layer(x, cim_spec(shifted, node)).outputs)
        scale = float(np.abs(run_layer(x, cim_spec(graph, graph.node(node.name))).outputs).mean())
        moved.append(float(np.abs(after - before).max()) / scale)
    assert len(moved) >= 3
    if refold:
        assert max(moved) < 1e-4
    else:
        assert max(moved) > 1e-3


def test_equalize_folds_column_remainders_into_the_next_conv(tmp_path: Path) -> None:
    path = tmp_path / "net.onnx"
    onnx.save(depthwise_net("clip"), path)
    result = compile_model(path, tmp_path / "b", equalize=True, granularity="column", w_bits=8, a_bits=8)
    errors = {n.name: n.ann[Shift].relative_error for n in cim_nodes(result.graph)}
    last = cim_nodes(result.graph)[-1].name  # read by no Conv: its remainder still moves its ADC step
    assert all(e < 1e-6 for name, e in errors.items() if name != last) and errors[last] > 1e-3
    got = run(result.graph, feeds())[result.graph.outputs[0]]
    want = run_ort(depthwise_net("clip"), feeds())["y"]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(np.abs(want).max()))
    code = CliRunner().invoke(main, ["validate", str(tmp_path / "b")]).exit_code
    assert code == 0
    plain = compile_model(path, tmp_path / "p", equalize=True, granularity="column", no_shift=True)
    assert "equalize" in [r.name for r in plain.history]
