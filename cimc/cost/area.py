"""The chip's area: ``N`` physical macros and one partial-sum buffer, from the macro's
per-component areas (``MacroSpec.*_um2``, µm²; defaults and their sources in ``cimc.macro``).

With ``WL × BL`` cells, ``A`` ADCs and ``N = slot_count(budget)`` physical macros:

===============  ==============================================================
component        area
===============  ==============================================================
``cells``        ``WL · BL · cell_um2`` per macro
``adc``          ``A · adc_um2`` per macro
``dac``          ``WL · dac_um2`` per macro (one DAC per wordline)
``adder``        ``A · add_um2`` per macro (one shift-add unit per ADC)
``macro``        the sum of the four above
``macros``       ``N · macro``
``psum_buffer``  ``psum_buffer · psum_um2``, once for the chip
``total``        ``macros + psum_buffer``
===============  ==============================================================

Digital logic outside the macros (the digital ops, control, I/O) is not counted. The default
``psum_buffer`` (2^20 entries) is a "never constrains" value, not a hardware figure: its area
(2.66 mm² at the default ``psum_um2``) is then larger than 16 paper macros'; set your chip's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cimc.macro import MacroSpec

#: The per-macro components, in report order.
MACRO_PARTS = ("cells", "adc", "dac", "adder")


@dataclass(frozen=True)
class Area:
    """The areas of the module doc (µm²) and the slot count they are for."""

    slots: int
    cells: float
    adc: float
    dac: float
    adder: float
    macro: float
    macros: float
    psum_buffer: float
    total: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def macro_parts(macro: MacroSpec) -> dict[str, float]:
    """Per-macro area by component (µm²; module doc)."""
    return {"cells": macro.wordlines * macro.bitlines * macro.cell_um2, "adc": macro.adcs * macro.adc_um2,
            "dac": macro.wordlines * macro.dac_um2, "adder": macro.adcs * macro.add_um2}


def chip_area(macro: MacroSpec, slots: int) -> Area:
    """The area of ``slots`` physical macros and the partial-sum buffer (module doc)."""
    parts = macro_parts(macro)
    one = sum(parts[k] for k in MACRO_PARTS)
    psum = macro.psum_buffer * macro.psum_um2
    return Area(slots=slots, **parts, macro=one, macros=slots * one, psum_buffer=psum, total=slots * one + psum)
