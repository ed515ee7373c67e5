"""The chip's area (``cimc.cost.area``): the formulas of its module doc, the report's ``system``
block and ``report.md`` line, and ``cimc validate`` re-deriving them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cimc.cost.area import chip_area, macro_parts
from cimc.emulator.validate import validate_build
from cimc.errors import UsageError
from cimc.macro import AREA_FIELDS, PRESETS, MacroSpec, load_macro
from tests.map_builds import copy_build, read_json, rehash, write_json


def test_paper_macro_area_from_its_sources() -> None:
    """Hand-computed from the cited figures: NeuroSim's 280 F² SRAM bit at 32 nm, ISAAC's 5-bit
    ADC (476.91 µm²), 1-bit DAC (170/1024 µm², ×8 at 4 bits), shift-add (60 µm²), eDRAM (83,000 µm²
    per 2,048 × 256 bits)."""
    m = PRESETS["paper"]
    parts = macro_parts(m)
    assert parts["cells"] == pytest.approx(256 * 256 * 4 * 280 * 0.032 ** 2)  # 75,161.6 µm²
    assert parts["adc"] == pytest.approx(64 * 476.91)
    assert parts["dac"] == pytest.approx(256 * 170 / 1024 * 8)
    assert parts["adder"] == pytest.approx(64 * 60)
    area = chip_area(m, 16)
    assert area.macro == pytest.approx(sum(parts.values())) and area.macros == pytest.approx(16 * area.macro)
    assert area.psum_buffer == pytest.approx((1 << 20) * 16 * 83000 / (2048 * 256))
    assert area.total == pytest.approx(area.macros + area.psum_buffer)
    isaac = macro_parts(PRESETS["isaac-128"])
    assert isaac["adc"] == pytest.approx(16 * 1200) and isaac["dac"] == pytest.approx(128 * 170 / 1024)


def test_area_fields_are_positive_numbers_and_overridable(tmp_path: Path) -> None:
    for name in AREA_FIELDS:
        with pytest.raises(UsageError, match=f"{name} = 0 must be a number in \\(0, 1,000,000,000\\] µm²"):
            MacroSpec(**{name: 0})
    spec = tmp_path / "m.toml"
    spec.write_text('preset = "paper"\nadc_um2 = 1000\n')
    assert load_macro(spec).adc_um2 == 1000.0
    assert chip_area(load_macro(spec), 1).adc == pytest.approx(64_000)


def test_report_system_block_and_validate(tmp_path: Path) -> None:
    folder = copy_build(tmp_path / "b", "digits_cnn", bitline_budget=512)
    report = json.loads((folder / "report.json").read_text())
    want = chip_area(PRESETS["paper"], 2).to_dict()
    assert report["system"] == pytest.approx(want) and report["system"]["slots"] == 2
    assert f"area: {want['total'] / 1e6:,.3f} mm² = 2 physical macros" in (folder / "report.md").read_text()
    assert validate_build(folder).ok
    doc = read_json(folder, "report.json")
    doc["system"]["adc"] += 1.0  # an area the macro's fields do not give
    write_json(folder, "report.json", doc)
    rehash(folder)
    found = [v for v in validate_build(folder).violations if v.check == "timeline"]
    assert any("system" in v.where for v in found), found
