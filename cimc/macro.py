"""``MacroSpec``: the geometry and converters of one CIM macro, from a preset or a file.

The default preset is the paper's macro (Lin & Chang, Section II.A): 256 wordlines ×
256 bitlines of 4-bit cells, a 4-bit DAC per wordline, 64 ADCs of 5 bits each shared by
4 bitlines through a multiplexer, and 256 cycles to load a whole macro. Nothing else in
cimc hard-codes these numbers.

The timeline (``cimc.cost.timeline``) adds how many macro loads run at once
(``concurrent_loads``) and how many partial sums a layer split over passes may keep between
them (``psum_buffer``, entries of one output channel at one pixel). ``psum_buffer``'s default
is not a hardware figure: it is large enough that no zoo model is constrained; set your chip's.

Per-event energies (pJ, ``cimc.cost.energy``), defaults from the component figures of ISAAC
(Shafiee et al., ISCA 2016, 32 nm CMOS) as tabulated in Accelergy's ``hwcomponents-library``
(``library/isaac.py``): ``adc_pj`` one ADC conversion (0.99 pJ: the table's 5-bit SAR ADC,
Kull et al. ISSCC 2013 scaled by Saberi et al. 2011; 1.67 pJ at 8 bits); ``dac_pj`` one
wordline driven for one input bit (ISAAC's 1-bit DAC, 0.41667 pJ; a ``d``-bit DAC cycle costs
``d`` of them); ``add_pj`` one shift-add of an ADC code (ISAAC's 16-bit shift-and-add,
0.021 pJ); ``psum_pj`` one partial-sum buffer access of a 16-bit entry (ISAAC's eDRAM buffer,
20.45 pJ per 256-bit access, /16); ``write_pj`` one weight bit written into a cell (the same
eDRAM's write per bit, 20.45/256 pJ: an on-chip write standing in for the SRAM cell write,
which ISAAC does not give); ``offchip_pj`` one byte of weights read from off chip (ISAAC's
chip-to-chip link, 26 pJ per 128 bits at 65 nm: a lower bound, a DRAM read costs more).
The analog array itself (cell read / MAC) has no figure there and is not counted.

Per-component areas (µm², ``cimc.cost.area``), at the same 32 nm node: ``adc_um2`` one ADC
(476.91 µm²: the same table's 5-bit SAR ADC; 1,200 µm² at 8 bits, ISAAC's own, 9,600 µm² / 8);
``dac_um2`` one wordline's DAC (ISAAC's 1-bit DAC, 170 µm² / 1,024 = 0.166 µm², scaled by
``2^(d−1)`` to ``d`` bits as Accelergy scales a DAC's resolution: 1.328 µm² at 4 bits);
``add_um2`` one shift-add unit, one per ADC (ISAAC's 16-bit shift-and-add, 60 µm²);
``psum_um2`` one 16-bit partial-sum buffer entry (ISAAC's 64 KB eDRAM, 83,000 µm² for
2,048 × 256 bits: 16 bits of it); ``cell_um2`` one cell of ``cell_bits`` bits (NeuroSim V1.4's
8T SRAM bit, 10 F × 28 F = 280 F², at F = 32 nm: 0.28672 µm² a bit, ×4 for the 4-bit cell;
ISAAC's cells are memristors, far smaller, and not what this macro stores).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from cimc.errors import UsageError
from cimc.limits import OPTIONS_FILE_BYTES
from cimc.untrusted import load_json, load_toml, read_regular


@dataclass(frozen=True)
class MacroSpec:
    """One macro: ``wordlines × bitlines`` cells of ``cell_bits``; ``adcs`` converters of
    ``adc_bits`` each serving ``bitlines_per_adc`` bitlines; ``load_cycles`` to load it,
    ``concurrent_loads`` loads at once, ``psum_buffer`` partial sums kept between passes; the
    ``*_pj`` fields are per-event energies in pJ, the ``*_um2`` fields per-component areas in µm²
    (module doc)."""

    name: str = "paper"
    wordlines: int = 256
    bitlines: int = 256
    cell_bits: int = 4
    dac_bits: int = 4
    adcs: int = 64
    adc_bits: int = 5
    bitlines_per_adc: int = 4
    load_cycles: int = 256
    concurrent_loads: int = 1
    psum_buffer: int = 1 << 20
    adc_pj: float = 0.99
    dac_pj: float = 0.41667
    add_pj: float = 0.021
    psum_pj: float = 20.45 / 16
    write_pj: float = 20.45 / 256
    offchip_pj: float = 26.0 / 16
    cell_um2: float = 4 * 280 * 0.032 ** 2
    adc_um2: float = 476.91
    dac_um2: float = 170 / 1024 * 2 ** 3
    add_um2: float = 60.0
    psum_um2: float = 83000 / (2048 * 256) * 16

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name != "name":
                value = check_field(f.name, getattr(self, f.name), f"macro spec '{self.name}'")
                object.__setattr__(self, f.name, value)
        if self.adcs * self.bitlines_per_adc < self.bitlines:
            raise UsageError(f"macro spec '{self.name}': {self.adcs} ADCs × {self.bitlines_per_adc} bitlines "
                             f"each cannot serve {self.bitlines} bitlines")
        if self.adc_bits < 2:
            raise UsageError(f"macro spec '{self.name}': adc_bits={self.adc_bits}: an ADC of signed partial sums "
                             "needs at least 2 bits")

    @property
    def cells(self) -> int:
        return self.wordlines * self.bitlines

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_options(self, **overrides: Any) -> MacroSpec:
        """A copy with some fields replaced (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


#: The per-event energies (pJ): positive numbers, every other field but ``name`` a positive integer.
ENERGY_FIELDS = ("adc_pj", "dac_pj", "add_pj", "psum_pj", "write_pj", "offchip_pj")
#: The per-component areas (µm²): positive numbers.
AREA_FIELDS = ("cell_um2", "adc_um2", "dac_um2", "add_um2", "psum_um2")
#: Every numeric field's range, ``low..high`` inclusive (an energy's or an area's ``low`` is
#: exclusive: it is positive): the one declaration that a ``MacroSpec`` from a preset, a ``--macro``
#: file, a build's ``layout.json`` or a sweep config is held to. The ceilings are far beyond any
#: chip (a 65,536 × 65,536 array, 16-bit converters, a microjoule per event, 1,000 mm² per
#: component) and keep an untrusted value from sizing arrays or loops without bound.
FIELD_BOUNDS: dict[str, tuple[int | float, int | float]] = {
    "wordlines": (1, 1 << 16), "bitlines": (1, 1 << 16), "cell_bits": (1, 16), "dac_bits": (1, 16),
    "adcs": (1, 1 << 16), "adc_bits": (1, 16), "bitlines_per_adc": (1, 1 << 16), "load_cycles": (1, 1 << 32),
    "concurrent_loads": (1, 1 << 16), "psum_buffer": (1, 1 << 40),
    **dict.fromkeys(ENERGY_FIELDS, (0.0, 1e6)), **dict.fromkeys(AREA_FIELDS, (0.0, 1e9)),
}


def check_field(name: str, value: Any, where: str, key: str | None = None) -> int | float:
    """``value`` of the numeric field ``name`` if within ``FIELD_BOUNDS`` (an energy or an area as a float),
    else a ``UsageError`` naming ``where``, the ``key`` it was given as (default ``name``) and
    the range."""
    low, high = FIELD_BOUNDS[name]
    given = f"{where}: {key or name} = {value!r}"
    if name in ENERGY_FIELDS or name in AREA_FIELDS:
        unit = "pJ" if name in ENERGY_FIELDS else "µm²"
        if isinstance(value, bool) or not isinstance(value, int | float) or not low < value <= high:  # NaN too
            raise UsageError(f"{given} must be a number in ({low:g}, {high:,.0f}] {unit}")
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UsageError(f"{given} must be an integer in {low:,}..{high:,}")
    return value


PRESETS: dict[str, MacroSpec] = {
    "paper": MacroSpec(),
    "paper-512": MacroSpec(name="paper-512", wordlines=512, bitlines=512, adcs=128, load_cycles=512),
    "small-64": MacroSpec(name="small-64", wordlines=64, bitlines=64, adcs=16, load_cycles=64),
    "isaac-128": MacroSpec(name="isaac-128", wordlines=128, bitlines=128, cell_bits=2, dac_bits=1,
                           adcs=16, adc_bits=8, bitlines_per_adc=8, load_cycles=128, adc_pj=1.67,
                           cell_um2=2 * 280 * 0.032 ** 2, adc_um2=1200.0, dac_um2=170 / 1024),
}


def load_macro(spec: str | Path | None) -> MacroSpec:
    """A preset name, or a ``.toml``/``.json`` file with MacroSpec fields (all optional)."""
    if spec is None:
        return PRESETS["paper"]
    if str(spec) in PRESETS:
        return PRESETS[str(spec)]
    path = Path(spec)
    if not os.path.lexists(path):
        raise UsageError(f"unknown macro '{spec}': not a preset ({', '.join(PRESETS)}) nor a file")
    return _from_mapping(_read_table(path), default_name=path.stem)


def _read_table(path: Path) -> dict[str, Any]:
    raw = read_regular(path, limit=OPTIONS_FILE_BYTES, what=f"macro spec {path.name}")
    name = f"macro spec {path.name}"
    data = load_json(raw, name) if path.suffix == ".json" else load_toml(raw, name)
    if not isinstance(data, dict):
        raise UsageError(f"macro spec {path.name} must hold a table of fields")
    return dict(data.get("macro", data))


def _from_mapping(data: dict[str, Any], default_name: str) -> MacroSpec:
    """Fields over a base preset (``preset = "paper"`` by default)."""
    data = dict(data)
    preset = str(data.pop("preset", "paper"))
    if preset not in PRESETS:
        raise UsageError(f"macro spec names unknown preset '{preset}'; presets: {', '.join(PRESETS)}")
    known = {f.name for f in fields(MacroSpec)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"macro spec has unknown field(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return replace(PRESETS[preset], **{"name": default_name, **data})
