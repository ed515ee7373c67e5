"""The macro spec as every build document records it (``layout.json``, ``manifest.json``,
``report.json``): the fields of ``cimc.macro.MacroSpec``."""

from __future__ import annotations

from cimc.documents.base import Document, Size


class MacroDoc(Document):
    """One CIM macro: ``wordlines × bitlines`` cells of ``cell_bits``; ``adcs`` converters of
    ``adc_bits`` each serving ``bitlines_per_adc`` bitlines; ``load_cycles`` to load it."""

    name: str
    """The preset or file name of the macro."""
    wordlines: Size
    """Rows of cells (the inputs driven by one DAC each)."""
    bitlines: Size
    """Columns of cells (each sums one column of products)."""
    cell_bits: Size
    """Bits one cell stores."""
    dac_bits: Size
    """Bits one DAC drives onto a wordline per cycle."""
    adcs: Size
    """Analog-to-digital converters of the macro."""
    adc_bits: Size
    """Resolution of each ADC."""
    bitlines_per_adc: Size
    """Bitlines one ADC reads through its multiplexer."""
    load_cycles: Size
    """Cycles to load the whole macro with weights."""
