"""The cost model's slice factors, formula by formula (``cimc.cost.model``'s table): with
``Sw = T = 1`` a factor multiplied or divided gives the same figure, so the mutation run
(docs/mutation.md) needs ``Sw = 2`` and ``T = 3`` to tell them apart."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cimc.cost import model
from cimc.ir import BitlinePlacement, CimLayer, Node, TensorInfo, WordlineTiling
from cimc.macro import MacroSpec
from cimc.passes.manager import PassContext, run_passes
from cimc.passes.place_bitlines import PlaceBitlines
from cimc.passes.select_cim import SelectCim
from cimc.passes.tile_wordlines import TileWordlines
from tests.ir_builders import graph_with_input
from tests.test_tiling_placement import compile_convs

MACRO = MacroSpec()


def test_layer_cost_multiplies_each_figure_by_its_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 3×3 conv, 40 → 70 channels (2 segments of 28 channels on 256 wordlines), 36 pixels,
    ``Sw = 2`` weight digits and ``T = 3`` input digits."""
    g = compile_convs([(40, 70, 3, 1)], MACRO)
    node = g.nodes[0]
    bits = {"w_bits": 8, "a_bits": 6, "adc_bits": 5, "w_slices": 2, "a_slices": 3}
    monkeypatch.setattr(model, "precision", lambda n: dict(bits))
    cost = model.layer_cost(node, MACRO)
    layer, s = node.ann[CimLayer], node.ann[WordlineTiling].num_segments
    macros = len(node.ann[BitlinePlacement].macros_used())
    assert (s, layer.cout, layer.out_pixels) == (2, 70, 36)
    assert cost.bitlines == 2 * 70 * 2
    assert cost.adc_conversions == 2 * 70 * 2 * 3 * 36
    assert cost.partial_sums == 2 * 70 * 2 * 36
    rounds = -(-(70 * 2) // MACRO.adcs)
    assert cost.computing_cycles == 36 * 3 * 2 * 1 * (rounds + 1)
    assert cost.macro_usage == pytest.approx(layer.params * 2 / (macros * MACRO.cells))
    assert (cost.w_slices, cost.a_slices, cost.w_bits) == (2, 3, 8)


def test_model_without_cim_layers_has_zero_figures() -> None:
    g = graph_with_input((1, 4))
    g.tensors["y"] = TensorInfo("y", (1, 4))
    g.add_node(Node("r", "Relu", ("x",), ("y",)))
    g.outputs.append("y")
    cost = model.model_cost(run_passes(g, [SelectCim(), TileWordlines(), PlaceBitlines()], PassContext(macro=MACRO)),
                            MACRO)
    assert (cost.activated_wordlines, cost.partial_sum_storage, cost.macro_usage) == (0, 0, 0.0)


def test_model_figures_take_the_largest_layer_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two layers: wordlines and partial-sum storage are the larger layer's, the rest sums."""
    g = compile_convs([(8, 16, 3, 1), (16, 4, 1, 1)], MACRO)
    per: dict[str, Any] = {n.name: model.layer_cost(n, MACRO) for n in g.nodes}
    cost = model.model_cost(g, MACRO)
    assert cost.activated_wordlines == max(c.activated_wordlines for c in per.values()) == 72
    assert cost.partial_sum_storage == max(c.partial_sums for c in per.values())
    assert cost.adc_conversions == sum(c.adc_conversions for c in per.values())
    assert np.isclose(cost.macro_usage, sum(c.params for c in per.values()) / MACRO.cells)


def test_a_model_that_fits_reloads_nothing() -> None:
    cost = model.model_cost(compile_convs([(8, 16, 3, 1)], MACRO), MACRO)
    assert cost.fits_on_chip and cost.reload_cycles_per_inference == 0 and cost.loading_cycles > 0
