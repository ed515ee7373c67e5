"""scale-to-shift's options: how many calibration samples its SQNR is measured on
(``sqnr_samples``, none when 0), an ADC fold without calibration (``calib_size=0``), and the
pass's place in a pipeline (after quantize)."""

from __future__ import annotations

import numpy as np
import pytest

from cimc.errors import UsageError
from cimc.ir.annotations import QuantParams, Shift
from cimc.passes.pipelines import check_order
from cimc.passes.scale_to_shift import (
    LayerInputs,
    ScaleToShift,
    adc_fold,
    ceil_exponent,
    fold_targets,
    may_fold_at_adc,
    shift_layer,
)
from cimc.quant import numerics
from cimc.quant.calibration import collect_inputs
from tests.cim_helpers import compile_ir, small_cnn

pytestmark = pytest.mark.torch  # the compile helpers import the zoo

LAYERS = ("c1", "c2", "fc")


@pytest.fixture(scope="module")
def unshifted():  # type: ignore[no-untyped-def]
    return compile_ir(small_cnn(), shift=False)


@pytest.fixture(scope="module")
def per_column():  # type: ignore[no-untyped-def]
    return compile_ir(small_cnn(), granularity="column", shift=False)


def _run(graph, ctx, **options):  # type: ignore[no-untyped-def]
    ctx.shift = None
    return ScaleToShift(**{"calib_size": 8, **options}).run(graph, ctx)


def test_the_sqnr_is_measured_on_two_calibration_samples_by_default(unshifted) -> None:  # type: ignore[no-untyped-def]
    graph, ctx = unshifted
    out = _run(graph, ctx).graph
    assert ctx.shift is not None and ctx.shift.samples == 2
    assert all(out.node(n).ann[Shift].sqnr_db is not None for n in LAYERS)


def test_one_sqnr_sample_is_enough_to_measure(unshifted) -> None:  # type: ignore[no-untyped-def]
    graph, ctx = unshifted
    out = _run(graph, ctx, sqnr_samples=1).graph
    assert ctx.shift is not None and ctx.shift.samples == 1
    assert all(out.node(n).ann[Shift].sqnr_db is not None for n in LAYERS)


def test_without_sqnr_samples_nothing_is_measured(unshifted) -> None:  # type: ignore[no-untyped-def]
    graph, ctx = unshifted
    out = _run(graph, ctx, sqnr_samples=0).graph
    assert ctx.shift is None
    assert [out.node(n).ann[Shift].sqnr_db for n in LAYERS] == [None, None, None]


def test_a_graph_already_shifted_is_left_alone_and_not_measured(unshifted) -> None:  # type: ignore[no-untyped-def]
    graph, ctx = unshifted
    once = _run(graph, ctx).graph
    again = _run(once, ctx)
    assert not again.modified and ctx.shift is None
    assert [again.graph.node(n).ann[Shift] for n in LAYERS] == [once.node(n).ann[Shift] for n in LAYERS]


def test_an_adc_fold_without_calibration_takes_the_power_of_two_above(per_column) -> None:  # type: ignore[no-untyped-def]
    """``calib_size=0``: no calibration input is computed, so every ADC fold keeps the power of
    two above ``s`` — although with calibration some columns of this model take the one below."""
    graph, ctx = per_column
    without = _run(graph, ctx, calib_size=0, sqnr_samples=0).graph
    for name in LAYERS:
        assert without.node(name).ann[Shift].fold == "adc"
        assert np.array_equal(without.node(name).ann[Shift].k, ceil_exponent(_exact(graph, name)))
    assert _lower_columns(_run(graph, ctx, sqnr_samples=0).graph, graph) > 0


def test_one_calibration_sample_is_enough_for_an_adc_fold_to_choose(per_column) -> None:  # type: ignore[no-untyped-def]
    graph, ctx = per_column
    assert _lower_columns(_run(graph, ctx, calib_size=1, sqnr_samples=0).graph, graph) > 0


def _exact(graph, name: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    q = graph.node(name).ann[QuantParams]
    return numerics.output_scale(q.w_step, q.adc_step, q.a_step).astype(np.float64)


def _lower_columns(out, graph) -> int:  # type: ignore[no-untyped-def]
    """How many columns took the power of two below ``s``."""
    return sum(int((out.node(n).ann[Shift].k != ceil_exponent(_exact(graph, n))).sum()) for n in LAYERS)


def test_a_pipeline_running_scale_to_shift_before_quantize_is_refused() -> None:
    with pytest.raises(UsageError, match="'scale-to-shift' needs 'quantize' before it"):
        check_order(("select-cim", "tile-wordlines", "place-bitlines", "scale-to-shift"))
    check_order(("select-cim", "tile-wordlines", "quantize", "place-bitlines", "scale-to-shift"))


def test_a_per_column_layer_with_a_reader_may_fold_at_its_adc(per_column, unshifted) -> None:  # type: ignore[no-untyped-def]
    """``may_fold_at_adc``: a per-column scale cannot fold into a reader's scalar input step, so
    its layer's calibration input is computed ahead although a reader follows; a per-layer
    scale with a reader folds there (no input needed)."""
    graph, _ = per_column
    assert fold_targets(graph, graph.node("c1")) is not None and may_fold_at_adc(graph, graph.node("c1"))
    layer, _ = unshifted
    assert not may_fold_at_adc(layer, layer.node("c1")) and may_fold_at_adc(layer, layer.node("fc"))


def test_a_dropped_layer_input_is_released_and_never_read_again() -> None:
    stream = iter([("a", np.zeros(2)), ("b", np.ones(2))])
    inputs = LayerInputs({"r": np.full(2, 3.0)})
    inputs.add(stream, ["a", "b"])
    inputs.drop("r")
    inputs.drop("a")
    assert "r" not in inputs.ready and inputs.get("r") is None
    assert inputs.get("b").tolist() == [1.0, 1.0] and "a" not in inputs.ready  # type: ignore[union-attr]


def test_an_adc_fold_reads_its_input_as_it_arrives_multiplied_by_the_input_gain(per_column) -> None:  # type: ignore[no-untyped-def]
    """A layer whose producer folded into its input step receives ``g·x``: its ADC fold chooses
    the power of two on the partial sums of ``g·x`` (here the choice differs from ``x``'s)."""
    graph, ctx = per_column
    name, gain = "c2", 0.5
    x = collect_inputs(ctx.calibration_graph, ctx.calibration.feeds, [name])[name]
    exact = _exact(graph, name) / gain
    as_it_arrives, _ = adc_fold(graph, graph.node(name), exact, x * np.float32(gain))
    assert not np.array_equal(as_it_arrives, adc_fold(graph, graph.node(name), exact, x)[0])
    out = graph.copy()
    shift_layer(out, out.node(name), True, gain, x)
    assert np.array_equal(out.node(name).ann[Shift].k, as_it_arrives)


def test_reading_a_ready_input_does_not_advance_the_streams() -> None:
    """``LayerInputs`` reads a stream only as far as a requested layer: a given input, or a
    layer no stream yields, leaves the streams where they were (no input computed early)."""
    stream = iter([("a", np.zeros(2)), ("b", np.ones(2))])
    inputs = LayerInputs({"r": np.full(2, 3.0)})
    inputs.add(stream, ["a", "b"])
    assert inputs.get("r").tolist() == [3.0, 3.0] and inputs.get("z") is None  # type: ignore[union-attr]
    assert set(inputs.ready) == {"r"} and next(stream)[0] == "a"


def test_on_a_tie_an_adc_fold_keeps_the_power_of_two_above(per_column) -> None:  # type: ignore[no-untyped-def]
    """An all-zero calibration input quantizes exactly at both powers of two (errors 0 = 0): the
    fold keeps the one above, the ADC range not shrunk for no gain; ``k`` and the step agree."""
    graph, ctx = per_column
    for name in LAYERS:
        x = collect_inputs(ctx.calibration_graph, ctx.calibration.feeds, [name])[name]
        exact = _exact(graph, name)
        k, adc = adc_fold(graph, graph.node(name), exact, np.zeros_like(x))
        q = graph.node(name).ann[QuantParams]
        assert np.array_equal(k, ceil_exponent(exact))
        np.testing.assert_allclose(numerics.output_scale(q.w_step, adc, q.a_step), numerics.shift_scale(k), rtol=1e-6)


def test_without_folding_no_calibration_input_is_computed(unshifted, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """``fold=False``: the remainders stay unfolded, so no layer's calibration input is needed
    (only the SQNR's two samples run, through ``run_compiled``)."""
    graph, ctx = unshifted

    def refuse(*args: object) -> None:
        raise AssertionError("a calibration input was computed")

    monkeypatch.setattr("cimc.passes.scale_to_shift.stream_inputs", refuse)
    out = _run(graph, ctx, fold=False, calib_size=8).graph
    assert {out.node(n).ann[Shift].fold for n in LAYERS} == {"none"}
    ctx.calibration_inputs.clear()  # quantize kept the last layer's: the fold reads it, computing none
    with pytest.raises(AssertionError, match="calibration input"):  # the probe does fire when folding
        _run(graph, ctx, calib_size=8)
