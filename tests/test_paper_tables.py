"""The paper's Tables III–V baseline rows, reproduced by compiling the zoo models.

Lin & Chang, 'Computing-In-Memory Aware Model Adaption for Edge Devices', Tables III
(VGG9), IV (VGG16) and V (ResNet18), row 'Baseline', on the default 256×256 macro.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cimc.api import CompileResult, compile_model

pytestmark = pytest.mark.torch  # the zoo or the training hook

PAPER_BASELINES = {
    # name: (params, bitlines, ADC conversions, partial-sum storage, loading cycles, computing cycles)
    "vgg9": (9_217_728, 38_592, 724_992, 163_840, 38_656, 14_696),
    "vgg16": (14_710_464, 61_440, 1_443_840, 196_608, 61_440, 31_300),
    "resnet18": (10_987_200, 46_400, 690_176, 65_536, 46_592, 16_860),
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CompileResult]:
    root = tmp_path_factory.mktemp("paper")
    return {name: compile_model(name, root / name) for name in PAPER_BASELINES}


@pytest.mark.parametrize("name", sorted(PAPER_BASELINES))
def test_baseline_row(compiled: dict[str, CompileResult], name: str) -> None:
    cost = compiled[name].cost
    got = (cost.params, cost.bitlines, cost.adc_conversions, cost.partial_sum_storage,
           cost.loading_cycles, cost.computing_cycles)
    assert got == PAPER_BASELINES[name]
    assert cost.activated_wordlines == 252  # 28 channels × 3×3, as in the paper's Fig. 3
    assert cost.fits_on_chip


def test_layer_counts(compiled: dict[str, CompileResult]) -> None:
    assert [len(compiled[n].cost.layers) for n in ("vgg9", "vgg16", "resnet18")] == [8, 13, 17]


def test_budget_smaller_than_model_means_reload(tmp_path: Path) -> None:
    result = compile_model("vgg9", tmp_path / "b", bitline_budget=4096)
    cost = result.cost
    assert not cost.fits_on_chip
    assert cost.reload_cycles_per_inference == 38_656
    assert cost.min_budget_without_reload == 38_656
    assert any("--bl 38656" in note for note in result.report["notes"])
