"""The macro spec as every build document records it (``layout.json``, ``manifest.json``,
``report.json``): the fields of ``cimc.macro.MacroSpec``."""

from __future__ import annotations

from cimc.documents.base import Document, Positive, Size


class MacroDoc(Document):
    """One CIM macro: ``wordlines × bitlines`` cells of ``cell_bits``; ``adcs`` converters of
    ``adc_bits`` each serving ``bitlines_per_adc`` bitlines; ``load_cycles`` to load it; the
    timeline's load concurrency and partial-sum buffer; per-event energies in pJ and per-component
    areas in µm² (defaults: ISAAC and NeuroSim, 32 nm, docs/build-format.md)."""

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
    concurrent_loads: Size
    """Macro loads that can run at the same time (off-chip bandwidth)."""
    psum_buffer: Size
    """Partial sums (one output channel at one pixel each) kept between the passes of a layer."""
    adc_pj: Positive
    """Energy of one ADC conversion (pJ)."""
    dac_pj: Positive
    """Energy of driving one wordline for one input bit (pJ)."""
    add_pj: Positive
    """Energy of one shift-add of an ADC code (pJ)."""
    psum_pj: Positive
    """Energy of one partial-sum buffer access (pJ)."""
    write_pj: Positive
    """Energy of writing one weight bit into a cell (pJ)."""
    offchip_pj: Positive
    """Energy of reading one byte of weights from off chip (pJ)."""
    cell_um2: Positive
    """Area of one cell (µm²)."""
    adc_um2: Positive
    """Area of one ADC (µm²)."""
    dac_um2: Positive
    """Area of one wordline's DAC (µm²)."""
    add_um2: Positive
    """Area of one shift-add unit, one per ADC (µm²)."""
    psum_um2: Positive
    """Area of one partial-sum buffer entry (µm²)."""
