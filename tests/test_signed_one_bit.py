"""``a_bits = 1`` is fine for unsigned inputs (codes 0/1) but a signed narrow 1-bit code is
always 0: every path that learns a layer's input sign refuses it with a typed error (it was a
bare ZeroDivisionError in QAT and an internal pydantic error in compile)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cimc.api import compile_model
from cimc.check.validate import validate_build
from cimc.errors import InvalidModelError, UsageError
from cimc.quant import numerics
from cimc.quant.qat_metadata import layer_params
from cimc.train.layer import CimQuantLayer, QuantConfig
from cimc.train.phase2 import ConvGeometry
from tests.map_builds import copy_build, read_json, rehash, write_json

pytestmark = pytest.mark.torch


def test_always_zero_only_for_signed_one_bit() -> None:
    assert numerics.always_zero(1, True)
    assert not numerics.always_zero(1, False) and not numerics.always_zero(2, True)
    assert numerics.code_range(1, False) == (0, 1)


def test_compile_quantizes_a_signed_input_unsigned_at_one_bit(tmp_path: Path) -> None:
    """tiny_cnn's first conv reads the (signed) image: at one bit, signed codes are all 0, so the
    calibration's sign choice (``layer_steps.input_signed``: the sign of least squared error)
    takes unsigned codes 0/1, never the always-zero signed ones."""
    compile_model("tiny_cnn", tmp_path / "a", a_bits=1)
    quant = read_json(tmp_path / "a", "quant.json")
    first = next(x for x in quant["layers"] if x["node"] == "node_conv2d")
    assert (first["a_bits"], first["a_signed"]) == (1, False)


def test_calibrate_layer_refuses_chosen_one_bit_signed_inputs() -> None:
    """Steps chosen elsewhere (a quantized model's) with 1-bit signed inputs are refused."""
    from cimc.passes.quantize import calibrate_layer
    from cimc.quant.cim_layer import cim_spec
    from cimc.quant.layer_steps import Chosen
    from tests.cim_helpers import SMALL, small_cnn
    from tests.test_ptq_remedies import tiled

    graph, _ = tiled(small_cnn())
    spec = cim_spec(graph, graph.node("c1"))
    chosen = Chosen(4, np.array([0.1], np.float32), 1, 0.5, True, "qdq")
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    with pytest.raises(UsageError, match="its inputs go negative"):
        calibrate_layer(spec, x, (4, 1, 5), "layer", "mse", SMALL, chosen)


def test_compile_takes_one_bit_unsigned_inputs(tmp_path: Path) -> None:
    compile_model("tiny_cnn", tmp_path / "b", layer_bits={"node_conv2d_1": {"a_bits": 1}})
    quant = read_json(tmp_path / "b", "quant.json")
    layer = next(x for x in quant["layers"] if x["node"] == "node_conv2d_1")
    assert (layer["a_bits"], layer["a_signed"]) == (1, False)


def _layer(a_signed: bool) -> CimQuantLayer:
    geom = ConvGeometry((1, 1), (1, 1, 1, 1), (1, 1), 1)
    return CimQuantLayer("conv", 4, 3, (3, 3), geom, QuantConfig(a_bits=1), a_signed=a_signed)


def test_qat_refuses_one_bit_signed_inputs() -> None:
    with pytest.raises(UsageError, match="layer 'conv': its inputs can be negative"):
        _layer(True)


def test_qat_trains_one_bit_unsigned_inputs() -> None:
    layer = _layer(False)
    layer.w.set_step(torch.tensor([0.1]))
    layer.a.set_step(torch.tensor([0.5]))
    layer.freeze_for_phase("1")
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 1, (2, 3, 5, 5)).astype(np.float32))
    y = layer(x, torch.full((4, 3, 3, 3), 0.2), None, "1")
    y.sum().backward()
    assert layer.a.log_step.grad is not None and torch.isfinite(layer.a.log_step.grad).all()


def test_qat_metadata_with_one_bit_signed_inputs_is_an_invalid_model() -> None:
    entry = {"w_bits": 4, "a_bits": 1, "adc_bits": 5, "w_step": [0.1], "a_step": 0.5, "adc_step": [2.0],
             "a_signed": True}
    with pytest.raises(InvalidModelError, match="signed 1-bit inputs"):
        layer_params("conv", entry, 4)
    assert layer_params("conv", {**entry, "a_signed": False}, 4).a_bits == 1


def test_validate_reports_one_bit_signed_inputs(tmp_path: Path) -> None:
    folder = copy_build(tmp_path / "b", "tiny_cnn")
    quant = read_json(folder, "quant.json")
    quant["layers"][0].update(a_bits=1, a_signed=True)
    write_json(folder, "quant.json", quant)
    rehash(folder)
    found = [v for v in validate_build(folder).violations if v.check == "quant"]
    assert any("signed 1-bit inputs" in v.message for v in found), found
