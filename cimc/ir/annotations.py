"""Typed, frozen annotations that passes attach to nodes (``node.ann[WordlineTiling]``).

Conventions shared by every annotation of a CIM layer (Conv, or Gemm/MatMul when mapped):

* The weight of group ``g`` is unrolled into a matrix of ``rows = Cin_g·kh·kw`` rows and
  ``Cout_g`` columns; row ``r = c·kh·kw + i·kw + j`` holds input channel ``c`` (within the
  group) at kernel position ``(i, j)``. A Gemm/MatMul is a 1×1 conv with ``Cin`` rows.
* A *segment* is a contiguous row range; all groups share the same segment bounds.
* Layer column ``k = s·Cout + o`` is output channel ``o`` (global) in segment ``s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np

T = TypeVar("T")


class Annotations(dict[type, Any]):
    """A ``dict`` keyed by annotation type whose lookups are typed: ``ann[WordlineTiling]``."""

    def __getitem__(self, key: type[T]) -> T:
        return cast(T, super().__getitem__(key))

    def get_ann(self, key: type[T]) -> T | None:
        return cast("T | None", super().get(key))

    def put(self, value: object) -> None:
        self[type(value)] = value


@dataclass(frozen=True)
class CimLayer:
    """Marks a node that runs on CIM macros and records its unrolled geometry.

    ``rows`` = Cin_g·kh·kw per group, ``cout`` output channels in ``groups`` groups,
    ``out_pixels`` = H_out·W_out positions per image (1 for Gemm/MatMul rows).
    """

    kind: str  # "conv" | "gemm"
    groups: int
    rows: int
    cout: int
    kernel: tuple[int, int]
    out_pixels: int

    @property
    def cout_per_group(self) -> int:
        return self.cout // self.groups

    @property
    def params(self) -> int:
        return self.rows * self.cout


@dataclass(frozen=True)
class ModulePath:
    """The torch module a node comes from (``features.1.conv.0``; set on import from the
    exporter's metadata, ``cimc.frontend.module_paths``); views show it instead of the node name."""

    path: str


@dataclass(frozen=True)
class WordlineTiling:
    """Row segmentation of a CIM layer: segment ``s`` covers rows ``[bounds[s], bounds[s+1])``.

    ``mode`` is ``"channel"`` (whole input channels per segment, ``floor(WL/(kh·kw))`` of
    them; a kernel taller than the array is split inside each channel) or ``"dense"``
    (``WL`` rows per segment regardless of channel boundaries).
    """

    mode: str
    wordlines: int
    bounds: tuple[int, ...]

    @property
    def num_segments(self) -> int:
        return len(self.bounds) - 1

    @property
    def rows(self) -> int:
        return self.bounds[-1]

    def segment_rows(self) -> np.ndarray:
        """Rows per segment, shape ``(S,)``."""
        return np.diff(np.asarray(self.bounds, dtype=np.int64))

    def activated_wordlines(self) -> int:
        """Largest number of wordlines any segment activates at once."""
        return int(self.segment_rows().max())


@dataclass(frozen=True, eq=False)
class BitlinePlacement:
    """Where each layer column lives: ``macro[k]``, ``bitline[k]`` and wordlines
    ``[wordline[k], wordline[k] + rows of its segment)``. Arrays are read-only int64 of
    length ``S·Cout·w_slices`` in layer-column order ``k = (s·Cout + o)·w_slices + j`` (weight
    digit ``j``; ``QuantParams.w_slices``, 1 without it); ``first_column`` is the layer's
    offset in the global column order of the whole model."""

    first_column: int
    macro: np.ndarray
    bitline: np.ndarray
    wordline: np.ndarray

    @property
    def num_columns(self) -> int:
        return int(self.macro.shape[0])

    def macros_used(self) -> tuple[int, ...]:
        return tuple(int(m) for m in np.unique(self.macro))


@dataclass(frozen=True, eq=False)
class QuantParams:
    """Quantization of one CIM layer (docs/build-format.md, 'The numerical contract';
    formulas in ``cimc.quant.numerics``).

    ``w_step`` and ``adc_step`` have shape ``(1,)`` (per layer, the paper) or ``(Cout,)``
    (per output column, ColumnQuant); ``a_step`` is the step of the layer's input codes,
    which are unsigned ``[0, 2^a_bits − 1]`` unless ``a_signed`` (a model input that can be
    negative), then narrow signed. ``source`` is ``"qat"``, ``"calibration"`` or, for a quantized model
    (``cimc.quant.imported``), ``"qdq"``, ``"qdq-weights"`` or ``"qdq-inputs"``.

    ``cell_bits`` / ``dac_bits`` are the widths of the macro's cells and DACs the codes are
    sliced into (``cimc.quant.slicing``): ``w_slices = ceil(w_bits / cell_bits)`` adjacent columns
    per output channel and ``a_slices = ceil(a_bits / dac_bits)`` input cycles. ``None``
    (before the quantize pass sets them) means one slice. ``adc_shift`` (int64, ``(T·S,)`` in
    the order ``(t, j)``, ``None`` = all 0) gives conversion kind ``(t, j)`` the ADC step
    ``S_ADC · 2^−m_{t,j}`` and shift-add weight ``2^(j·cell_bits + t·dac_bits − m_{t,j})``.
    ``w_digits`` is the weight digit scheme of a sliced layer: ``"twos"`` (two's complement,
    lower digits unsigned) or ``"offset"`` (every digit signed; codes within
    ``±slicing.code_max``), ``cimc.quant.slicing``.
    """

    w_bits: int
    a_bits: int
    adc_bits: int
    w_step: np.ndarray
    a_step: float
    adc_step: np.ndarray
    a_signed: bool = False
    source: str = "calibration"
    cell_bits: int | None = None
    dac_bits: int | None = None
    adc_shift: np.ndarray | None = None
    w_digits: str = "twos"

    @property
    def w_slices(self) -> int:
        return 1 if self.cell_bits is None else -(-self.w_bits // self.cell_bits)

    @property
    def a_slices(self) -> int:
        return 1 if self.dac_bits is None else -(-self.a_bits // self.dac_bits)

    @property
    def per_column(self) -> bool:
        return int(self.w_step.shape[0]) > 1 or int(self.adc_step.shape[0]) > 1


@dataclass(frozen=True, eq=False)
class Shift:
    """Output scale of a CIM layer after scale-to-shift: ``y = P · 2^(−k) + b'`` with
    ``k`` of shape ``(1,)`` or ``(Cout,)``; ``exact_scale`` is ``S_W·S_ADC·S_A`` before.

    ``fold`` says where the remaining factor ``r = exact_scale · 2^k`` went: ``"activation"``
    (the readers' input steps were divided by ``r``; the output is the exact one times
    ``gain = 1/r`` and ``b' = b · gain``), ``"lut"`` (the output is likewise ``gain·y``, and
    the activation that reads it, a lookup table in hardware, takes ``r`` as its input scale:
    an ``ActivationScale`` Mul before it), ``"adc"`` (the ADC step was divided by ``r``),
    ``"stream"`` (a residual stream's member: the output is ``gain·y``, ``gain`` the stream's,
    the ADC step was divided by ``r·gain`` and the stream's readers' input steps multiplied by
    ``gain``) or ``"none"`` (the output carries the relative error)."""

    k: np.ndarray
    exact_scale: np.ndarray
    relative_error: float
    sqnr_db: float | None = None
    fold: str = "none"
    gain: float = 1.0


@dataclass(frozen=True)
class ScaledBounds:
    """On a Clip between a CIM layer whose shift folded into its readers (``Shift.fold ==
    "activation"``, ``gain = 1/r``) and those readers: the Clip sees ``gain·y``, so its attrs
    ``min``/``max`` are ``fl32(gain·lo)``, ``fl32(gain·hi)``; ``lo``/``hi`` are the float model's
    bounds (``Clip(lo, hi)(y) = Clip(g·lo, g·hi)(g·y) / g`` for ``g > 0``)."""

    gain: float
    lo: float
    hi: float


@dataclass(frozen=True)
class ActivationScale:
    """On the ``Mul(gain·y, r)`` that scale-to-shift puts between a CIM layer (``Shift.fold ==
    "lut"``, ``gain = 1/r``) and the activation reading it: the input scale ``r`` of that
    activation's lookup table, which gives ``f(r·z)`` for the code ``z``. The engines compute
    the product in float32 (``factor`` is ``fl32(r)``); the float model has no such node."""

    factor: float


@dataclass(frozen=True, eq=False)
class WeightPool:
    """Weight-pool compression of a CIM layer (docs/weight-pool.md; set by pool-weights): the
    model's one ``pool`` ``(P, L)`` of ``±1`` (int8), ``index`` ``(S, Cout)`` int64 into it
    (flattened: layer-column order ``k = s·Cout + o``), ``error`` ``(S, Cout, L)`` int8 in
    ``{−1, 0, 1}`` or ``None``, ``scale`` ``α`` ``(1,)`` or ``(Cout,)`` float32. The layer's
    codes are ``q[o, s·L + t] = multiplier · pool[index[s, o], t] + error[s, o, t]`` (rows past
    the layer's dropped) and its weights ``α · q``; ``code_bits`` narrow signed bits hold them.
    Segment ``s`` of the layer's tiling is vector position ``s`` (``L`` rows). ``trained``: the
    pool came with the model (``cimc qat --weight-pool``) and ``scale`` is its trained ``S_W``."""

    vector_length: int
    pool: np.ndarray
    index: np.ndarray
    error: np.ndarray | None
    scale: np.ndarray
    multiplier: int
    code_bits: int
    trained: bool = False

    @property
    def pool_size(self) -> int:
        return int(self.pool.shape[0])
