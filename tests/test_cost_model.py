"""Cost model figures on layers beyond the paper's (grouped, depthwise, 1×1, 7×7, FC),
each derived by hand from the documented formulas in cimc/cost/model.py."""

from __future__ import annotations

import numpy as np
import pytest

from cimc.cost.model import model_cost
from cimc.ir import Node, TensorInfo
from cimc.macro import MacroSpec
from cimc.passes.manager import PassContext, run_passes
from cimc.passes.place_bitlines import PlaceBitlines
from cimc.passes.select_cim import SelectCim
from cimc.passes.tile_wordlines import TileWordlines
from tests.ir_builders import add_conv, graph_with_input

MACRO = MacroSpec()


def one_conv(cin: int, cout: int, k: int, h: int, *, group: int = 1, stride: int = 1):  # type: ignore[no-untyped-def]
    g = graph_with_input((1, cin, h, h))
    g.outputs.append(add_conv(g, "x", cout, k, group=group, stride=stride, pad=k // 2,
                              rng=np.random.default_rng(0), name="c"))
    ctx = PassContext(macro=MACRO)
    return model_cost(run_passes(g, [SelectCim(), TileWordlines(), PlaceBitlines()], ctx), MACRO)


@pytest.mark.parametrize(
    ("cin", "cout", "k", "h", "group", "stride", "expected"),
    [
        # 1×1: 256 channels per segment → 300 channels = 2 segments; 16×16 pixels; ceil(100/64)+1 = 3 rounds
        (300, 100, 1, 16, 1, 1, dict(segments=2, bitlines=200, adc_conversions=2 * 100 * 256,
                                    computing_cycles=256 * 2 * 3, activated_wordlines=256, macros=1)),
        # 7×7: floor(256/49) = 5 channels per segment → 12 channels = 3 segments (5, 5, 2)
        (12, 64, 7, 8, 1, 2, dict(segments=3, bitlines=192, adc_conversions=3 * 64 * 16,
                                  computing_cycles=16 * 3 * 2, activated_wordlines=245, macros=1)),
        # grouped: 4 groups of 16→32; rows 16·9 = 144 → 1 segment; cycles P·S·G·(ceil(32/64)+1)
        (64, 128, 3, 8, 4, 1, dict(segments=1, bitlines=128, adc_conversions=128 * 64,
                                   computing_cycles=64 * 1 * 4 * 2, activated_wordlines=144, macros=1)),
        # depthwise 3×3 over 300 channels: 9 rows each, 300 columns spill over 2 macros
        (300, 300, 3, 4, 300, 1, dict(segments=1, bitlines=300, adc_conversions=300 * 16,
                                      computing_cycles=16 * 1 * 300 * 2, activated_wordlines=9, macros=2)),
    ],
)
def test_layer_figures(cin: int, cout: int, k: int, h: int, group: int, stride: int, expected: dict) -> None:
    cost = one_conv(cin, cout, k, h, group=group, stride=stride)
    layer = cost.layers[0]
    for key, value in expected.items():
        assert getattr(layer, key) == value, key
    assert layer.params == cout * (cin // group) * k * k
    assert cost.loading_cycles == expected["macros"] * 256
    assert cost.macro_usage == pytest.approx(layer.params / (expected["macros"] * 65536))


def test_fc_mapped_only_with_map_fc() -> None:
    g = graph_with_input((1, 600))
    g.set_initializer("w", np.ones((600, 10), np.float32))
    g.tensors["y"] = TensorInfo("y", (1, 10))
    g.add_node(Node("fc", "Gemm", ("x", "w"), ("y",), {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}))
    g.outputs.append("y")
    passes = [TileWordlines(), PlaceBitlines()]
    digital = model_cost(run_passes(g, [SelectCim(), *passes], PassContext(macro=MACRO)), MACRO)
    assert digital.layers == ()
    cost = model_cost(run_passes(g, [SelectCim(map_fc=True), *passes], PassContext(macro=MACRO)), MACRO)
    # 600 rows on 256 wordlines → 3 segments (256, 256, 88); 10 outputs; 1 pixel
    assert (cost.segments, cost.bitlines, cost.adc_conversions, cost.computing_cycles) == (3, 30, 30, 6)


def test_budget_fit_and_reload() -> None:
    g = graph_with_input((1, 300, 4, 4))
    g.outputs.append(add_conv(g, "x", 300, 3, group=300, pad=1, rng=np.random.default_rng(0), name="c"))
    placed = run_passes(g, [SelectCim(), TileWordlines(), PlaceBitlines()], PassContext(macro=MACRO))
    assert model_cost(placed, MACRO).fits_on_chip  # no budget given: everything fits
    tight = model_cost(placed, MACRO, bitline_budget=256)  # 300 columns need 2 macros
    assert not tight.fits_on_chip
    assert (tight.reload_cycles_per_inference, tight.min_budget_without_reload) == (512, 512)
    assert model_cost(placed, MACRO, bitline_budget=512).fits_on_chip


def test_model_without_cim_layers_has_a_positive_budget() -> None:
    g = graph_with_input((1, 4))
    g.tensors["y"] = TensorInfo("y", (1, 4))
    g.add_node(Node("r", "Relu", ("x",), ("y",)))
    g.outputs.append("y")
    cost = model_cost(run_passes(g, [SelectCim(), TileWordlines(), PlaceBitlines()], PassContext(macro=MACRO)), MACRO)
    assert (cost.macros, cost.bitline_budget, cost.fits_on_chip) == (0, 256, True)
