"""scale-to-shift: nearest powers of two, where the remainder is folded, the error and SQNR
it reports, and that folding into the readers' activation steps keeps the model exact."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cimc.errors import MappingError
from cimc.ir import verify
from cimc.ir.annotations import QuantParams, Shift
from cimc.passes.manager import PassContext
from cimc.passes.scale_to_shift import ScaleToShift, sqnr_db
from cimc.quant import numerics
from cimc.quant.reference import run_compiled
from tests.cim_helpers import SMALL, compile_ir, small_cnn

pytestmark = pytest.mark.torch  # the zoo or the training hook


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=1e-12, max_value=1e6, allow_nan=False))
def test_shift_exponent_is_the_nearest_power_of_two(scale: float) -> None:
    s = np.array([scale], np.float32)
    k = int(numerics.shift_exponent(s)[0])
    error = abs(2.0**-k - float(s[0])) / float(s[0])
    assert all(error <= abs(2.0 ** -(k + d) - float(s[0])) / float(s[0]) + 1e-12 for d in (-1, 1))
    assert numerics.shift_scale(np.array([k]))[0] == np.float32(2.0**-k)


@pytest.fixture(scope="module")
def unshifted():  # type: ignore[no-untyped-def]
    return compile_ir(small_cnn(), shift=False)


def shifted(graph, ctx, **options):  # type: ignore[no-untyped-def]
    p = ScaleToShift(calib_size=8, **options)
    p.requires(graph, ctx)
    result = p.run(graph, ctx)
    verify(result.graph)
    return result


def test_fold_into_readers_is_exact(unshifted) -> None:  # type: ignore[no-untyped-def]
    graph, ctx = unshifted
    result = shifted(graph, ctx)
    out = result.graph
    s1, s2, s3 = (out.node(n).ann[Shift] for n in ("c1", "c2", "fc"))
    # c1 → relu → maxpool → c2 and c2 → relu → GAP → flatten → fc fold exactly; fc is the output
    assert (s1.fold, s2.fold, s3.fold) == ("activation", "activation", "adc")
    for name, shift in (("c1", s1), ("c2", s2)):
        before = graph.node(name).ann[QuantParams]
        assert 2.0 ** -int(shift.k[0]) == pytest.approx(float(shift.exact_scale[0]) * shift.gain, rel=1e-6)
        assert shift.relative_error == pytest.approx(abs(shift.gain - 1), rel=1e-5)
        assert shift.sqnr_db is not None and shift.sqnr_db > 100  # the same model up to float rounding
        reader = {"c1": "c2", "c2": "fc"}[name]
        want = graph.node(reader).ann[QuantParams].a_step / (1 / shift.gain)
        assert out.node(reader).ann[QuantParams].a_step == pytest.approx(want, rel=1e-6)
        assert out.node(name).ann[QuantParams].adc_step[0] == before.adc_step[0]
    q3 = out.node("fc").ann[QuantParams]
    g3 = out.node("c2").ann[Shift].gain  # fc's input arrives multiplied by c2's gain
    true_scale = float(numerics.output_scale(q3.w_step, q3.adc_step, q3.a_step)[0]) / g3
    assert true_scale == pytest.approx(2.0 ** -int(s3.k[0]), rel=1e-5)
    x = np.random.default_rng(5).standard_normal((6, 3, 8, 8)).astype(np.float32)
    ref, got = run_compiled(graph, {"x": x}).outputs["fc.y"], run_compiled(out, {"x": x}).outputs["fc.y"]
    assert sqnr_db(ref, got) > 15
    assert ctx.shift.output_sqnr_db == pytest.approx(s3.sqnr_db)


def test_no_fold_keeps_the_steps_and_reports_the_error(unshifted) -> None:  # type: ignore[no-untyped-def]
    graph, ctx = unshifted
    out = shifted(graph, ctx, fold=False).graph
    for name in ("c1", "c2", "fc"):
        shift, q = out.node(name).ann[Shift], out.node(name).ann[QuantParams]
        assert shift.fold == "none" and shift.gain == 1.0
        exact = float(numerics.output_scale(q.w_step, q.adc_step, q.a_step)[0])
        assert q.adc_step[0] == graph.node(name).ann[QuantParams].adc_step[0]
        assert shift.relative_error == pytest.approx(abs(2.0 ** -int(shift.k[0]) - exact) / exact, rel=1e-5)
        assert 0 < shift.relative_error < 0.5


def test_per_column_shifts_fold_into_the_adc() -> None:
    graph, ctx = compile_ir(small_cnn(), granularity="column", shift=False)
    out = shifted(graph, ctx).graph
    for name, cout in (("c1", 12), ("c2", 20), ("fc", 5)):
        shift, q = out.node(name).ann[Shift], out.node(name).ann[QuantParams]
        assert shift.k.shape == (cout,) and shift.fold == "adc" and q.adc_step.shape == (cout,)
    q = out.node("c1").ann[QuantParams]
    np.testing.assert_allclose(numerics.output_scale(q.w_step, q.adc_step, q.a_step),
                               numerics.shift_scale(out.node("c1").ann[Shift].k), rtol=1e-6)


def test_idempotent_and_needs_quantize(unshifted) -> None:  # type: ignore[no-untyped-def]
    graph, ctx = unshifted
    once = shifted(graph, ctx).graph
    assert not shifted(once, ctx).modified
    ctx2 = PassContext(macro=SMALL)
    raw, _ = compile_ir(small_cnn(), shift=False)
    for node in raw.nodes:
        node.ann.pop(QuantParams, None)
    with pytest.raises(MappingError, match="needs quantize first"):
        ScaleToShift().requires(raw, ctx2)


def test_sqnr() -> None:
    ref = np.array([1.0, -2.0, 2.0])
    assert sqnr_db(ref, ref) == math.inf
    assert sqnr_db(ref, ref * 1.1) == pytest.approx(20.0, abs=1e-9)
