"""``quant.json``: per CIM layer (in ``layout.json``'s layer order) how it computes: bits,
quantization steps, output scale and bias, shift, and bit-slicing. The emulator reads it."""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import ConfigDict, Field

from cimc.documents.base import Absent, Bits, Count, Decibels, Document, NonNegative, Positive, Real

QUANT_FORMAT: Final = "cimc-quant"
VERSION: Final = 1

Fold = Literal["none", "activation", "lut", "adc", "stream"]
Source = Literal["qat", "calibration", "qdq", "qdq-weights", "qdq-inputs"]
Granularity = Literal["layer", "column", "mixed"]
Positives = Annotated[list[Positive], Field(min_length=1)]


class ShiftDoc(Document):
    """The power-of-two output scale ``2^−k`` that replaces the exact scale."""

    k: Annotated[list[int], Field(min_length=1)]
    """Shift per output channel (one value for the layer, or Cout)."""
    exact_scale: Positives
    """The scale ``S_W·S_ADC·S_A`` the shift replaces."""
    relative_error: NonNegative
    """Largest ``|2^−k − s| / s``."""
    fold: Fold
    """Where the remainder ``s / 2^−k`` was folded: nowhere, into the next activation step, into the activation's
    lookup table (a Mul by it before the activation), the ADC step, or the ADC step relative to the gain its
    residual stream shares (the layer outputs ``gain·y``)."""
    gain: Positive
    """The folded factor."""
    sqnr_db: Decibels
    """SQNR of the layer output, shifted vs exact (dB; ``"inf"`` when identical; ``null`` not measured)."""


class QuantLayer(Document):
    """How one CIM layer computes."""

    index: Count
    """Position of the layer (``layout.json``'s layer index)."""
    node: str
    """Name of the IR node."""
    source: Source
    """Where the steps came from: QAT, calibration, or a quantized model's quantizers (``qdq``: weights
    and inputs, ``qdq-weights`` / ``qdq-inputs``: one of them, the other calibrated)."""
    w_bits: Annotated[int, Field(ge=2, le=16)]
    """Weight bits (signed codes)."""
    a_bits: Bits
    """Activation (input) bits."""
    adc_bits: Bits
    """ADC bits."""
    w_step: Positives
    """Weight step ``S_W`` (1 or Cout values)."""
    a_step: Positive
    """Activation step ``S_A``."""
    a_signed: bool
    """Whether the activation codes are signed."""
    adc_step: Positives
    """ADC step ``S_ADC`` (1 or Cout values)."""
    scale: Positives
    """Output scale the layer applies: ``2^−k``, or ``S_W·S_ADC·S_A``."""
    bias: Annotated[list[Real], Field(min_length=1)]
    """Bias ``b'`` added after scaling (Cout values)."""
    shift: ShiftDoc | None
    """The shift, or ``null`` (exact scales)."""
    cell_bits: Bits | None
    """The macro's bits per cell (``null``: not sliced)."""
    dac_bits: Bits | None
    """The macro's DAC bits (``null``: not sliced)."""
    w_slices: Bits
    """Weight digit columns per output channel: ceil(w_bits / cell_bits)."""
    a_slices: Bits
    """DAC cycles per input vector: ceil(a_bits / dac_bits)."""
    adc_shift: Annotated[list[Annotated[int, Field(ge=0, le=24)]], Field(min_length=1)] | None
    """``m_{t,j}`` per kind of conversion in the order ``(t, j)`` (ADC step ``S_ADC·2^−m``,
    shift-add weight ``2^(j·cell_bits + t·dac_bits − m)``), or ``null`` (all 0)."""
    w_digits: Literal["offset"] | Absent = None
    """``offset``: the weight digits are all signed (``--weight-digits offset``,
    ``cimc.quant.slicing``); absent: two's complement (lower digits unsigned)."""


class Quant(Document):
    """The quantization parameters of a build."""

    model_config = ConfigDict(title="cimc quantization parameters")

    format: Literal["cimc-quant"]
    """Always ``cimc-quant``."""
    version: Literal[1]
    """Version of the format."""
    granularity: Granularity
    """Steps per layer, per output column, or both across layers."""
    layers: list[QuantLayer]
    """One entry per CIM layer, in layout order."""
