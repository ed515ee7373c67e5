"""MacroSpec presets, files and validation."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from cimc.errors import UsageError
from cimc.macro import AREA_FIELDS, ENERGY_FIELDS, FIELD_BOUNDS, PRESETS, MacroSpec, load_macro


def test_default_is_the_papers_macro() -> None:
    m = load_macro(None)
    assert (m.wordlines, m.bitlines, m.cell_bits, m.dac_bits, m.adcs, m.adc_bits, m.bitlines_per_adc,
            m.load_cycles) == (256, 256, 4, 4, 64, 5, 4, 256)
    assert set(PRESETS) >= {"paper", "small-64"}


def test_toml_file_with_preset_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('[macro]\npreset = "small-64"\nadc_bits = 6\n')
    m = load_macro(path)
    assert (m.name, m.wordlines, m.adc_bits) == ("mine", 64, 6)


def test_json_file(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"wordlines": 128, "bitlines": 128, "adcs": 32}')
    assert load_macro(path).wordlines == 128


@pytest.mark.parametrize("text", ['wordlines = 0', 'bogus = 3', 'adcs = 2', 'adc_bits = 40', 'wordlines = "x"'])
def test_bad_specs_are_usage_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError):
        load_macro(path)


def test_unknown_preset() -> None:
    with pytest.raises(UsageError, match="not a preset"):
        load_macro("no-such-macro")
    with pytest.raises(UsageError):
        MacroSpec(bitlines=512)  # 64 ADCs × 4 cannot serve 512 bitlines


def test_every_numeric_field_has_a_declared_range() -> None:
    numeric = {f.name for f in fields(MacroSpec)} - {"name"}
    assert set(FIELD_BOUNDS) == numeric
    assert all(high < float("inf") for _, high in FIELD_BOUNDS.values())


@pytest.mark.parametrize("name", sorted(FIELD_BOUNDS))
def test_a_field_past_its_ceiling_is_a_usage_error_naming_the_range(name: str) -> None:
    high = FIELD_BOUNDS[name][1]
    real = name in ENERGY_FIELDS or name in AREA_FIELDS
    over = high * 2 if real else int(high) + 1
    unit = "pJ" if name in ENERGY_FIELDS else "µm²"
    words = (f"{name} = {over!r} must be a number in (0, {high:,.0f}] {unit}" if real
             else f"{name} = {over!r} must be an integer in 1..{high:,}")
    with pytest.raises(UsageError, match=re.escape(words)):
        MacroSpec(**{name: over})


def test_a_macro_file_beyond_the_ceiling_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    path.write_text("wordlines = 1_000_000_000_000\n")
    with pytest.raises(UsageError, match=r"wordlines = 1000000000000 must be an integer in 1\.\.65,536"):
        load_macro(path)
