"""What QAT quantizes for: the macro's geometry and slice widths, and each layer's bits.

The *macro* fixes ``wordlines`` (segments), ``cell_bits`` (weight digits per cell) and
``dac_bits`` (input digits per DAC cycle); the *layers* choose their own ``w_bits``,
``a_bits`` and ``adc_bits``: the defaults of ``QuantConfig`` unless ``layer_bits`` names
the layer (``{layer: {"w_bits": 8, "adc_bits": 4}}``, any subset of the three keys, the
format of ``cimc.cli.quant.read_bits``). A layer whose weights are wider than a cell gets
``S = ⌈w_bits/cell_bits⌉`` weight slices, one whose inputs are wider than the DAC
``T = ⌈a_bits/dac_bits⌉`` input slices (``cimc.quant.slicing``); with ``S = T = 1`` it is the
unsliced contract of docs/build-format.md, 'The numerical contract'. ``cell_bits``/``dac_bits`` of ``None`` never slice.

With ``weight_pool`` (``cimc qat --weight-pool P``, docs/weight-pool.md) every CIM layer is
pooled: its weight codes come from the shared pool (``cimc.train.pool``), its weight bits are
the pool's ``code_bits`` (2, or 3 with an error term; ``w_bits`` and ``layer_bits``' ``w_bits``
do not apply) and its segments are the pool's vectors (dense tiling, ``pool_vector`` rows).

Bits: the ranges of ``cimc.options`` (``w_bits`` and ``adc_bits`` 2..16: a 1-bit narrow signed
code is always 0; ``a_bits`` 1..16) and, when the config knows the macro's ADC
(``macro_adc_bits``), at most that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cimc.errors import UsageError
from cimc.macro import MacroSpec
from cimc.options import BIT_KEYS, OPTIONS, POOL_VECTOR, validate
from cimc.quant import slicing
from cimc.quant.weight_pool import PoolConfig


@dataclass(frozen=True)
class LayerBits:
    """The resolved bits of one layer and the macro's slice widths."""

    w_bits: int
    a_bits: int
    adc_bits: int
    cell_bits: int | None = None
    dac_bits: int | None = None

    @property
    def w_slices(self) -> int:
        return slicing.slice_count(self.w_bits, self.cell_bits)

    @property
    def a_slices(self) -> int:
        return slicing.slice_count(self.a_bits, self.dac_bits)

    @property
    def sliced(self) -> bool:
        return self.w_slices > 1 or self.a_slices > 1


@dataclass(frozen=True)
class QuantConfig:
    """Macro geometry and slice widths, default and per-layer bits, and the QAT options."""

    w_bits: int = 4
    a_bits: int = 4
    adc_bits: int = 5
    wordlines: int = 256
    tiling: str = OPTIONS["tiling"].default
    granularity: str = OPTIONS["granularity"].default  # "layer" (paper) or "column" (ColumnQuant)
    learn_adc_step: bool = False
    map_fc: bool = OPTIONS["map_fc"].default
    cell_bits: int | None = 4
    dac_bits: int | None = 4
    macro_adc_bits: int | None = None
    layer_bits: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    weight_pool: int | None = None
    pool_vector: int = POOL_VECTOR
    pool_error_bits: int = 0
    pool_error_prune: float = 0.0

    def __post_init__(self) -> None:
        for name in ("tiling", "granularity", "map_fc", "weight_pool", "pool_vector", "pool_error_bits",
                     "pool_error_prune"):
            validate(name, getattr(self, name))
        if self.weight_pool is not None and self.pool_vector > self.wordlines:
            raise UsageError(f"--pool-vector {self.pool_vector} is longer than the macro's {self.wordlines} wordlines",
                             hint=f"use at most {self.wordlines}")
        _check("every layer", {"w_bits": self.w_bits, "a_bits": self.a_bits, "adc_bits": self.adc_bits},
               self.macro_adc_bits)
        for layer, entry in self.layer_bits.items():
            unknown = sorted(set(entry) - set(BIT_KEYS))
            if unknown:
                raise UsageError(f"bits of layer '{layer}': unknown key(s) {', '.join(unknown)}",
                                 hint=f"use {', '.join(BIT_KEYS)}")
            _check(f"layer '{layer}'", entry, self.macro_adc_bits)

    @classmethod
    def for_macro(cls, macro: MacroSpec, *, w_bits: int | None = None, a_bits: int | None = None,
                  adc_bits: int | None = None, layer_bits: Mapping[str, Mapping[str, int]] | None = None,
                  **options: Any) -> QuantConfig:
        """The config of ``macro``: its wordlines, cell/DAC widths and ADC limit; layer
        defaults ``w_bits``/``a_bits``/``adc_bits`` (``None``: the macro's cell/DAC/ADC bits)."""
        return cls(w_bits=macro.cell_bits if w_bits is None else w_bits,
                   a_bits=macro.dac_bits if a_bits is None else a_bits,
                   adc_bits=macro.adc_bits if adc_bits is None else adc_bits, wordlines=macro.wordlines,
                   cell_bits=macro.cell_bits,
                   dac_bits=macro.dac_bits, macro_adc_bits=macro.adc_bits, layer_bits=dict(layer_bits or {}),
                   **options)

    def pool_config(self) -> PoolConfig | None:
        """The weight pool's settings (``None`` without ``weight_pool``)."""
        if self.weight_pool is None:
            return None
        return PoolConfig(self.pool_vector, self.weight_pool, self.pool_error_bits, self.pool_error_prune,
                          self.granularity == "column")

    def segment_tiling(self) -> tuple[int, str]:
        """``(wordlines, mode)`` of every layer's segments: the pool's vectors when pooled."""
        return (self.pool_vector, "dense") if self.weight_pool is not None else (self.wordlines, self.tiling)

    def bits_of(self, layer: str) -> LayerBits:
        """``layer``'s bits (its ``layer_bits`` entry over the defaults) and the slice widths; a
        pooled layer's weight bits are the pool's ``code_bits``."""
        entry = self.layer_bits.get(layer, {})
        pool = self.pool_config()
        w_bits = entry.get("w_bits", self.w_bits) if pool is None else pool.code_bits
        return LayerBits(w_bits, entry.get("a_bits", self.a_bits),
                         entry.get("adc_bits", self.adc_bits), self.cell_bits, self.dac_bits)

    def check_layers(self, layers: list[str]) -> None:
        """Every ``layer_bits`` entry must name one of ``layers`` (the model's CIM layers)."""
        unknown = sorted(set(self.layer_bits) - set(layers))
        if unknown:
            raise UsageError(f"bits given for layer(s) that are not CIM layers: {', '.join(unknown)}",
                             hint=f"CIM layers: {', '.join(layers[:8])}{' …' if len(layers) > 8 else ''}")


def _check(where: str, bits: Mapping[str, Any], macro_adc: int | None) -> None:
    for key, value in bits.items():
        validate(key, value, f"{where}: {key}")
    adc = bits.get("adc_bits")
    if macro_adc is not None and adc is not None and adc > macro_adc:
        raise UsageError(f"{where}: {adc}-bit ADC codes but the macro's ADCs have {macro_adc} bits",
                         hint=f"use adc_bits ≤ {macro_adc} or a macro with wider ADCs")
