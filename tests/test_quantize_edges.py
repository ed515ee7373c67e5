"""quantize: its place in a pipeline, and edge cases left unasserted by the other quantize tests
(each found as a surviving mutant of ``scripts/mutate.py``)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from cimc.api import CompileOptions
from cimc.errors import UnsupportedError, UsageError
from cimc.ir.annotations import QuantParams, WeightPool, WordlineTiling
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.macro import MacroSpec
from cimc.passes.manager import PassContext, run_passes
from cimc.passes.pipelines import check_order
from cimc.passes.quantize import (
    EXACT_LIMIT,
    LayerBits,
    Quantize,
    adc_steps,
    calibrate_layer,
    check_bits,
    has_own_bias,
    pooled_bits,
    set_weight,
    with_macro_widths,
)
from cimc.passes.select_cim import SelectCim
from cimc.passes.tile_wordlines import TileWordlines
from cimc.quant.cim_layer import cim_spec, layer_weight
from cimc.quant.step_search import mse_step
from tests.cim_helpers import SMALL, add_gemm, add_node
from tests.ir_builders import add_conv, graph_with_input


def test_a_pipeline_running_quantize_before_tile_wordlines_is_refused() -> None:
    with pytest.raises(UsageError, match="'quantize' needs 'tile-wordlines' before it"):
        check_order(("select-cim", "quantize", "tile-wordlines"))
    check_order(("select-cim", "tile-wordlines", "quantize"))


@pytest.mark.parametrize("option", ["granularity", "weight_method", "weight_digits"])
def test_an_unknown_granularity_or_weight_method_is_refused_before_any_work(option: str) -> None:
    graph = graph_with_input((1, 3, 8, 8))
    with pytest.raises(UsageError, match=option.replace("_", "[-_]")):
        Quantize(**{option: "nonsense"}).requires(graph, PassContext(macro=SMALL))


def test_a_qat_adc_step_folded_from_its_exponent_is_read_only() -> None:
    """The step ``S_ADC·2^−m`` that replaces a one-kind layer's exponent is shared by the
    annotation like every step: it is frozen, so no later pass can change it in place."""
    macro = MacroSpec(name="t", wordlines=32, bitlines=64, adcs=16, cell_bits=4, dac_bits=4, adc_bits=5)
    q = QuantParams(4, 4, 5, np.array([0.1], np.float32), 0.5, np.array([6.0], np.float32), source="qat",
                    adc_shift=np.array([2], np.int64))
    step = with_macro_widths("c", q, macro).adc_step
    assert step.tolist() == [1.5] and not step.flags.writeable


def test_bias_correction_says_which_layer_it_skips(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cimc"):
        assert not has_own_bias(Node("fc", "MatMul", ("x", "w"), ("y",), {}))
    assert "bias correction skips 'fc' (MatMul without a bias of its own)" in caplog.text


@pytest.mark.parametrize(("options", "fold"), [({}, False), ({"equalize": True}, True),
                                               ({"equalize": True, "no_shift": True}, False),
                                               ({"no_shift": True}, False)])
def test_columns_fold_only_with_equalize_and_the_shift(options: dict[str, bool], fold: bool) -> None:
    """``--equalize`` folds column remainders only when scale-to-shift runs (there is no
    remainder to fold without the shift)."""
    assert Quantize.from_options(CompileOptions(**options)).fold_columns is fold


def _trained(w_bits: int = 4, a_bits: int = 4, adc_bits: int = 5) -> QuantParams:
    return QuantParams(w_bits, a_bits, adc_bits, np.array([0.1], np.float32), 0.5, np.array([2.0], np.float32),
                       source="qat")


@pytest.mark.parametrize("width", ["w_bits", "a_bits", "adc_bits"])
def test_qat_steps_are_reused_only_at_the_bits_they_were_trained_at(width: str) -> None:
    """A width asked for the layer (``--bits``) or for every layer (``--w-bits`` …) other than
    the trained one re-quantizes it; the trained width asked, or nothing asked, keeps it."""
    other = {width: getattr(_trained(), width) + 1}
    same = {width: getattr(_trained(), width)}
    assert Quantize(default_bits=LayerBits(**other))._asks_other_bits("c", _trained())
    assert Quantize(bits={"c": LayerBits(**other)})._asks_other_bits("c", _trained())
    assert Quantize(bits={"c": LayerBits(**other)}, default_bits=LayerBits(**same))._asks_other_bits("c", _trained())
    assert not Quantize(default_bits=LayerBits(**same))._asks_other_bits("c", _trained())
    assert not Quantize(bits={"d": LayerBits(**other)})._asks_other_bits("c", _trained())
    assert not Quantize()._asks_other_bits("c", _trained())


def test_pooled_weight_bits_may_equal_the_pool_code_bits_but_not_fall_below() -> None:
    pool = WeightPool(8, np.ones((4, 8), np.int8), np.zeros((1, 2), np.int64), None, np.ones(1, np.float32), 1, 3)
    assert pooled_bits("c", pool, None) == 3
    assert pooled_bits("c", pool, 3) == 3
    assert pooled_bits("c", pool, 5) == 5
    with pytest.raises(UsageError, match="need 3 bits, 2 were asked"):
        pooled_bits("c", pool, 2)


def _fc_layers() -> tuple[Graph, tuple[str, ...]]:
    rng = np.random.default_rng(0)
    g = graph_with_input((2, 7))
    y = add_gemm(g, "x", 5, rng, "t1", trans_b=True)
    y = add_gemm(g, y, 4, rng, "t0", trans_b=False)
    g.set_initializer("m.w", rng.standard_normal((4, 3)).astype(np.float32))
    g.outputs.append(add_node(g, "MatMul", [y, "m.w"], (2, 3), "mm"))
    return g, ("t1", "t0", "mm")


def test_a_rewritten_weight_is_read_back_as_written_for_every_matrix_layout() -> None:
    """``set_weight`` writes ``B`` as each node reads it: a Gemm's as is with ``transB = 1``,
    transposed with ``transB = 0``, a MatMul's transposed."""
    g, names = _fc_layers()
    for name in names:
        node = g.node(name)
        before = g.initializers[node.inputs[1]].shape
        w = np.arange(np.prod(before), dtype=np.float32).reshape(layer_weight(g, node).shape) / 7
        set_weight(g, node, w)
        assert node.inputs[1] == f"{name}.weight_rounded" and g.initializers[node.inputs[1]].shape == before
        np.testing.assert_array_equal(layer_weight(g, node), w, err_msg=name)


def _conv_layer(cout: int = 4) -> tuple[Graph, Node]:
    g = graph_with_input((1, 3, 6, 6))
    g.outputs.append(add_conv(g, "x", cout, 3, pad=1, rng=np.random.default_rng(1), name="c"))
    g = run_passes(g, [SelectCim(), TileWordlines()], PassContext(macro=SMALL))
    return g, g.node("c")


@pytest.mark.parametrize(("granularity", "w_bits"), [("layer", 4), ("column", 4), ("column", 8)])
def test_calibrated_steps_are_read_only(granularity: str, w_bits: int) -> None:
    """The step arrays (and a sliced layer's ADC exponents) of a calibrated layer are shared by
    the annotation and later passes: they are frozen."""
    g, node = _conv_layer()
    x = np.random.default_rng(2).standard_normal((4, 3, 6, 6)).astype(np.float32)
    macro = MacroSpec(name="t", wordlines=32, bitlines=64, adcs=16, cell_bits=4, dac_bits=4, adc_bits=5)
    q = calibrate_layer(cim_spec(g, node), x, (w_bits, 4, 5), granularity, "mse", macro)
    arrays = [q.w_step, q.adc_step] + ([] if q.adc_shift is None else [q.adc_shift])
    assert len(arrays) == (3 if w_bits == 8 else 2)
    assert not any(a.flags.writeable for a in arrays)


#: 2-bit weights on 2-bit cells (narrow signed digits up to 1), 1-bit unsigned inputs, 16-bit ADC codes.
WIDE_ADC = MacroSpec(name="wide", wordlines=16, bitlines=64, adcs=16, cell_bits=2, dac_bits=1, adc_bits=16)


def _layer_of_segments(segments: int, rows: int, adc_step: float) -> Node:
    node = Node("c", "Conv", ("x", "w"), ("y",), {})
    node.ann.put(WordlineTiling("dense", WIDE_ADC.wordlines, tuple(range(0, rows * segments + 1, rows))))
    node.ann.put(QuantParams(2, 1, 16, np.array([1.0], np.float32), 1.0, np.array([adc_step], np.float32),
                             cell_bits=2, dac_bits=1))
    return node


def test_sums_of_exactly_2_24_are_refused_and_one_power_of_two_fewer_pass() -> None:
    """Each segment's sum reaches ``p_max = 16·1·1 = 16`` (16 rows, narrow signed 2-bit weights,
    1-bit inputs) and, with ``S_ADC = 2^−10``, an ADC code of ``2^14``; 1,024 segments recombine
    to exactly ``2^24`` (not exact in float32: refused), 512 to ``2^23`` (accepted)."""
    step = 16 / (1 << 14)
    check_bits(_layer_of_segments(512, 16, step), WIDE_ADC)
    with pytest.raises(UnsupportedError, match=f"sums may reach {EXACT_LIMIT:,} ≥ 2\\^24"):
        check_bits(_layer_of_segments(1024, 16, step), WIDE_ADC)


def test_qat_exponents_of_a_layer_sliced_over_its_inputs_are_kept() -> None:
    """4-bit weights, 8-bit inputs on 4-bit DACs: one weight slice, two input cycles, two kinds."""
    macro = MacroSpec(name="t", wordlines=32, bitlines=64, adcs=16, cell_bits=4, dac_bits=4, adc_bits=5)
    q = QuantParams(4, 8, 5, np.array([0.1], np.float32), 0.5, np.array([6.0], np.float32), source="qat",
                    adc_shift=np.array([0, 1], np.int64))
    got = with_macro_widths("c", q, macro)
    assert (got.w_slices, got.a_slices) == (1, 2) and got.adc_shift is not None and got.adc_shift.tolist() == [0, 1]


def test_a_two_kind_layer_without_exponents_recombines_its_codes_at_weights_1_and_16() -> None:
    """8-bit weights on 4-bit cells, no ``adc_shift`` (all 0): each segment's two conversions of up
    to ``Qp = 127`` recombine to ``(1 + 16)·127 = 2,159``; 7,770 segments stay below 2^24, 7,771 reach it."""
    macro = MacroSpec(name="t", wordlines=32, bitlines=64, adcs=16, cell_bits=4, dac_bits=4, adc_bits=8)

    def layer(segments: int) -> Node:
        node = Node("c", "Conv", ("x", "w"), ("y",), {})
        node.ann.put(WordlineTiling("dense", 32, tuple(range(segments + 1))))
        node.ann.put(QuantParams(8, 4, 8, np.array([1.0], np.float32), 1.0, np.array([1e-3], np.float32),
                                 cell_bits=4, dac_bits=4))
        return node

    assert 7770 * 2159 < EXACT_LIMIT <= 7771 * 2159
    check_bits(layer(7770), macro)
    with pytest.raises(UnsupportedError, match="sums may reach 16,777,589"):
        check_bits(layer(7771), macro)


def test_adc_steps_without_kind_weights_take_the_coarsest_kind_as_the_step() -> None:
    """The QAT hook's rule (``kind_weights`` not given): each kind's MSE-optimal step, ``S_ADC``
    the coarsest per column, each kind's ``S_ADC·2^−m`` within a factor √2 of its own step; one
    kind: its step and no exponents."""
    rng = np.random.default_rng(0)
    p = np.round(rng.standard_normal((64, 3 * 2, 4)) * np.array([40.0, 3.0] * 3)[None, :, None])
    step, m = adc_steps(p, 5, 2, True)
    own = np.stack([mse_step(p.reshape(64, 3, 2, 4)[:, :, k], 5, True, axis=2, min_step=1.0) for k in range(2)])
    assert m is not None and m.shape == (2,) and m[0] == 0 and m[1] > 0
    np.testing.assert_array_equal(step, own.max(axis=0))
    ratio = (step[None, :] * 2.0 ** -m[:, None]) / own
    assert np.all((ratio > 2 ** -0.5 - 1e-6) & (ratio < 2 ** 0.5 + 1e-6))
    one, none = adc_steps(p[:, :3], 5, 1, False)
    assert none is None
    np.testing.assert_array_equal(one, mse_step(p[:, :3], 5, True, min_step=1.0))
