"""``report.json``: every figure of a compile — totals, per-layer costs with precision and
bit-slicing, the digital ops, notes, and for a quantized build its quantization and
(with evaluation data) accuracy sections."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict

from cimc.documents.base import Absent, Bits, Count, Decibels, Document, Fraction, NonNegative, Positive, Real, Size
from cimc.documents.macro import MacroDoc
from cimc.documents.quant import Fold, Source
from cimc.documents.schedule import ConversionModel, TimingModel


class Totals(Document):
    """The model's totals (partial sums: the largest layer's, buffers are reused)."""

    params: Count
    """Weights of the CIM layers."""
    bitlines: Count
    """Bitlines used (digit columns included)."""
    segments: Count
    """Row segments of all layers."""
    activated_wordlines: Count
    """Wordline activations per inference."""
    adc_conversions: Count
    """ADC conversions per inference."""
    partial_sum_storage: Count
    """Partial sums buffered at once (the largest layer's)."""
    computing_cycles: Count
    """Computing cycles per inference."""
    macros: Count
    """Macros used."""
    loading_cycles: Count
    """Cycles to load all macros once."""
    bitline_budget: Count
    """Bitlines available on chip."""
    reload_cycles_per_inference: Count
    """Load cycles each inference adds when the model does not fit the budget."""
    min_budget_without_reload: Count
    """Smallest bitline budget that avoids reloads."""
    macro_usage: Fraction
    """Fraction of the used macros' cells holding weights."""
    fits_on_chip: bool
    """Whether all macros fit the budget (weights load once)."""


class LayerRow(Document):
    """The costs, precision and bit-slicing of one CIM layer."""

    name: str
    """Name of the IR node."""
    op: str
    """ONNX op."""
    params: Count
    """Weights of the layer."""
    bitlines: Count
    """Bitlines it uses."""
    segments: Count
    """Row segments."""
    activated_wordlines: Count
    """Wordline activations per inference."""
    adc_conversions: Count
    """ADC conversions per inference."""
    partial_sums: Count
    """Partial sums it buffers."""
    computing_cycles: Count
    """Computing cycles per inference."""
    macros: Count
    """Macros it uses."""
    loading_cycles: Count
    """Cycles to load its macros."""
    macro_usage: Fraction
    """Fraction of its macros' cells holding its weights."""
    w_bits: Bits | None
    """Weight bits (``null`` in a mapping-only compile)."""
    a_bits: Bits | None
    """Activation bits (``null`` in a mapping-only compile)."""
    adc_bits: Bits | None
    """ADC bits (``null`` in a mapping-only compile)."""
    w_slices: Size
    """Weight digit columns per output channel."""
    a_slices: Size
    """DAC cycles per input vector."""


class DigitalOp(Document):
    """A node executed digitally."""

    node: str
    """Name of the IR node."""
    op: str
    """ONNX op."""


class Span(Document):
    """The smallest and largest of a layer's per-column steps."""

    min: Positive
    """Smallest step."""
    max: Positive
    """Largest step."""


class Calibration(Document):
    """The data the steps were calibrated on."""

    source: str
    """Data set name."""
    samples: Size
    """Samples used."""


class QuantRow(Document):
    """The quantization of one CIM layer."""

    name: str
    """Name of the IR node."""
    source: Source
    """Where the steps came from."""
    w_bits: Bits
    """Weight bits."""
    a_bits: Bits
    """Activation bits."""
    adc_bits: Bits
    """ADC bits."""
    a_signed: bool
    """Whether activations are signed."""
    a_step: Positive
    """Activation step."""
    w_step: Span
    """Weight steps over the columns."""
    adc_step: Span
    """ADC steps over the columns."""
    shift_k: list[int] | Absent = None
    """Distinct shift values ``k`` (present with a shift)."""
    scale_error: NonNegative | Absent = None
    """Relative scale error ``|2^−k − s|/s`` (present with a shift)."""
    fold: Fold | Absent = None
    """Where the remainder was folded (present with a shift)."""
    sqnr_db: Decibels = None
    """SQNR of the layer output against the unshifted model (dB; ``"inf"`` when identical)."""


class Quantization(Document):
    """How the steps were obtained, and per layer its bits, steps and shift."""

    calibration: Calibration | None
    """The calibration data, or ``null`` (all from QAT)."""
    granularity: Literal["layer", "column"]
    """Steps per layer or per output column."""
    weight_method: Literal["mse", "aware", "lsq"]
    """How weight steps were chosen."""
    qat_layers: list[str]
    """Layers whose steps came from QAT."""
    shift: bool
    """Whether power-of-two shifts replace the output scales."""
    output_sqnr_db: Decibels
    """SQNR of the model output, shifted vs exact scales (dB)."""
    layers: list[QuantRow]
    """One row per CIM layer."""


#: A source of quantization loss, in the order the hardware applies them.
LossSource = Literal["weights", "dac", "adc", "shift"]


class LayerLoss(Document):
    """The SQNR of one CIM layer's output against the float model, and its own loss split by
    source (``cimc.quant.loss``): each source switched on in the hardware's order, its noise the
    change it makes."""

    name: str
    """Name of the IR node."""
    sqnr_db: Decibels
    """End to end: the compiled model's output of this layer against the float model's (dB)."""
    local_sqnr_db: Decibels
    """This layer alone, fed the float model's input, every source on (dB)."""
    weights_db: Decibels
    """Loss of the weight codes alone (dB)."""
    dac_db: Decibels
    """Loss of the input (DAC) codes (dB)."""
    adc_db: Decibels
    """Loss of the ADC codes of the partial sums, at the calibrated step (dB)."""
    shift_db: Decibels
    """Loss of the power-of-two shift, an ADC fold included (dB; ``null`` without a shift)."""
    dominant: LossSource
    """The source of the lowest SQNR."""


class Accuracy(Document):
    """Float vs compiled model on the same samples: top-1 of each (with labels), how often their
    top-1 agree, the SQNR of the output, per layer the loss by source, and the warning when the
    drop exceeds the threshold."""

    dataset: str
    """Evaluation data set."""
    split: str
    """Its split."""
    samples: Size
    """Samples evaluated."""
    labelled: bool
    """Whether the samples have labels (else only agreement and SQNR are measured)."""
    float_top1: Fraction | None
    """Top-1 accuracy of the float model (``null`` without labels)."""
    compiled_top1: Fraction | None
    """Top-1 accuracy of ``model.cim.onnx`` (``null`` without labels)."""
    agreement: Fraction
    """How often the two models' top-1 agree."""
    output_sqnr_db: Decibels
    """SQNR of the compiled model's output against the float model's (dB)."""
    drop: Real | None
    """Float minus compiled top-1, in percentage points (``null`` without labels)."""
    max_drop: NonNegative
    """The threshold of the warning, in percentage points (``--max-acc-drop``)."""
    layer_samples: Count
    """Samples of the per-layer measurement (0: not measured)."""
    layers: list[LayerLoss]
    """One row per CIM layer (empty when not measured)."""
    warning: str | None
    """Why and where accuracy is lost, with the fix, when the drop (without labels: the
    disagreement) exceeds ``max_drop``; ``null`` otherwise."""


class PoolLayerRow(Document):
    """A pooled layer's weight-pool figures (docs/weight-pool.md, "What the cost model counts")."""

    name: str
    """IR node name."""
    weights: Count
    """Weights of the layer: ``rows · Cout``."""
    positions: Count
    """Vector positions ``S · Cout`` (one index each)."""
    logical_bitlines: Count
    """Bitlines an unpooled layer of the same codes places: ``S · Cout · Sw``."""
    pool_columns_read: Count
    """``Σ_s`` distinct pool columns (per group) that segment ``s`` reads."""
    adc_conversions: Count
    """Conversions per inference: ``Σ_s (U'_s + K_s) · Sw · T · Npix`` — a pool column shared by
    the positions without an error term (``U'_s`` distinct) once, each of the ``K_s`` positions
    with a kept error vector its own."""
    unpooled_adc_conversions: Count
    """Conversions of the logical columns: ``S · Cout · Sw · T · Npix``."""
    permutation_steps: Count
    """Routed codes per inference: ``S · Cout · Npix``."""
    index_bits: Count
    """Index table: ``S · Cout · ⌈log2 P⌉`` bits."""
    error_bits: Count
    """Error vectors kept × ``L`` (+ one kept bit per position when some were pruned)."""
    scale_bits: Count
    """32 bits per scale."""
    effective_bits_per_weight: NonNegative
    """``(index + error + scale bits) / weights``."""


class WeightPoolSection(Document):
    """Weight-pool compression of the build (``--weight-pool``)."""

    pool_size: Count
    """``P``: vectors in the pool."""
    vector_length: Count
    """``L``: weights per vector (rows per segment of a pooled layer)."""
    multiplier: Count
    """``A``: 1 without an error term, 2 with one (codes ``A·p + e``)."""
    layers: list[PoolLayerRow]
    """One row per pooled layer, in layout order."""
    pool_bitlines: Count
    """Bitlines the pool occupies once: ``P · Sw``."""
    pool_bits: Count
    """Bits of the pool: ``P · L``."""
    logical_bitlines: Count
    """Sum of the pooled layers' logical bitlines."""
    pool_macros: Count
    """Macros the pool needs: ``⌈pool_bitlines / BL⌉``."""
    logical_macros: Count
    """Macros the logical bitlines would need: ``⌈logical_bitlines / BL⌉``."""
    effective_bits_per_weight: NonNegative
    """All index, error, scale and pool bits over all pooled weights."""
class Latency(Document):
    """Latency and throughput of the timeline (``schedule.json`` ``timeline``) at its batch size."""

    timing: TimingModel
    """The timing model."""
    batch: Size
    """Inputs per batch."""
    slots: Size
    """Physical macros."""
    first_batch_cycles: Count
    """Cycles of the first batch, weights loaded from an empty chip."""
    steady_batch_cycles: Count
    """Cycles of every later batch."""
    cycles_per_inference: NonNegative
    """``steady_batch_cycles / batch``."""
    inferences_per_mcycle: NonNegative
    """Throughput: inferences per million cycles in the steady state."""
    load_cycles: Count
    """Load cycles of a batch (summed over concurrent loads)."""
    compute_cycles: Count
    """Compute cycles of a batch."""
    overlap_cycles: Count
    """Cycles of a batch in which loading and computing overlap."""
    stall_cycles: Count
    """Cycles of a batch without computing."""
    loads: Count
    """Macro loads of a batch."""
    resident: bool
    """Whether the weights stay on chip between batches."""
    conversion: ConversionModel | Absent = None
    """``macro-parallel`` when every macro's ADCs convert its own columns at once (absent: ``serial``)."""


class EnergyReport(Document):
    """Energy per inference by component (pJ), from the timeline's events and the macro's
    per-event energies (``cimc.cost.energy``)."""

    adc: NonNegative
    """ADC conversions."""
    dac: NonNegative
    """Wordline drives (DACs)."""
    adder: NonNegative
    """Shift-adds of ADC codes."""
    psum_buffer: NonNegative
    """Partial-sum buffer accesses."""
    offchip: NonNegative
    """Off-chip weight reads (0 when the weights stay on chip)."""
    cell_write: NonNegative
    """Weight cell writes (0 when the weights stay on chip)."""
    total: NonNegative
    """Sum of the components."""
    initial_load: NonNegative
    """The one-time load of resident weights (pJ; 0 when they are reloaded every batch)."""
    macs: Count
    """Multiply-accumulates per inference."""
    tops_per_w: NonNegative
    """``2 · macs / total`` (operations per pJ)."""


class System(Document):
    """The chip's area (µm², ``cimc.cost.area``): per physical macro by component, the
    ``slots`` macros, the partial-sum buffer and the total."""

    slots: Size
    """Physical macros (``floor(budget / BL)``, at least 1)."""
    cells: NonNegative
    """Cell array of one macro: ``WL · BL · cell_um2``."""
    adc: NonNegative
    """ADCs of one macro: ``A · adc_um2``."""
    dac: NonNegative
    """Wordline DACs of one macro: ``WL · dac_um2``."""
    adder: NonNegative
    """Shift-add units of one macro: ``A · add_um2``."""
    macro: NonNegative
    """One macro: the sum of its components."""
    macros: NonNegative
    """``slots · macro``."""
    psum_buffer: NonNegative
    """The partial-sum buffer: ``psum_buffer · psum_um2``."""
    total: NonNegative
    """``macros + psum_buffer``."""


class Report(Document):
    """All figures of a compile."""

    model_config = ConfigDict(title="cimc report")

    model: str
    """Model name."""
    macro: MacroDoc
    """The macro compiled for."""
    totals: Totals
    """Totals of the model."""
    layers: list[LayerRow]
    """One row per CIM layer."""
    digital_ops: list[DigitalOp]
    """Nodes executed digitally."""
    notes: list[str]
    """Budget and bit-slicing notes."""
    latency: Latency
    """Latency and throughput of the timeline."""
    energy: EnergyReport
    """Energy per inference."""
    system: System
    """The chip's area by component."""
    quantization: Quantization | Absent = None
    """Quantization section (quantized builds)."""
    accuracy: Accuracy | Absent = None
    """Accuracy section (with evaluation data)."""
    accuracy_unknown: str | Absent = None
    """Why the accuracy is unknown (a quantized build compiled without evaluation data)."""
    weight_pool: WeightPoolSection | Absent = None
    """Weight-pool figures (builds compiled with ``--weight-pool``)."""
