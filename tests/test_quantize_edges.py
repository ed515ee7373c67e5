"""quantize: its place in a pipeline, and edge cases left unasserted by the other quantize tests
(each found as a surviving mutant of ``scripts/mutate.py``)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from cimc.errors import UsageError
from cimc.ir.annotations import QuantParams
from cimc.ir.node import Node
from cimc.macro import MacroSpec
from cimc.passes.manager import PassContext
from cimc.passes.pipelines import check_order
from cimc.passes.quantize import Quantize, has_own_bias, with_macro_widths
from tests.cim_helpers import SMALL
from tests.ir_builders import graph_with_input


def test_a_pipeline_running_quantize_before_tile_wordlines_is_refused() -> None:
    with pytest.raises(UsageError, match="'quantize' needs 'tile-wordlines' before it"):
        check_order(("select-cim", "quantize", "tile-wordlines"))
    check_order(("select-cim", "tile-wordlines", "quantize"))


@pytest.mark.parametrize("option", ["granularity", "weight_method"])
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
